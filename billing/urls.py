"""The management API's routes for budgets, their status and their alerts, and for limit rules,
mounted at /api/ by config/urls.py."""

from django.urls import path

from billing import api, limit_api

urlpatterns = [
    path("budgets", api.BudgetListAPI.as_view(), name="api-budgets"),
    path("budgets/alerts", api.TenantAlertListAPI.as_view(), name="api-budget-alerts-all"),
    path("budgets/<int:budget_id>", api.BudgetDetailAPI.as_view(), name="api-budget"),
    path("budgets/<int:budget_id>/status", api.BudgetStatusAPI.as_view(), name="api-budget-status"),
    path("budgets/<int:budget_id>/alerts", api.BudgetAlertListAPI.as_view(), name="api-budget-alerts"),
    path("limits", limit_api.LimitRuleListAPI.as_view(), name="api-limits"),
    path("limits/<int:rule_id>", limit_api.LimitRuleDetailAPI.as_view(), name="api-limit"),
]
