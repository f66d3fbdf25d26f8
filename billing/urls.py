"""The management API's routes for budgets, their status and their alerts, mounted at /api/ by
config/urls.py."""

from django.urls import path

from billing import api

urlpatterns = [
    path("budgets", api.BudgetListAPI.as_view(), name="api-budgets"),
    path("budgets/alerts", api.TenantAlertListAPI.as_view(), name="api-budget-alerts-all"),
    path("budgets/<int:budget_id>", api.BudgetDetailAPI.as_view(), name="api-budget"),
    path("budgets/<int:budget_id>/status", api.BudgetStatusAPI.as_view(), name="api-budget-status"),
    path("budgets/<int:budget_id>/alerts", api.BudgetAlertListAPI.as_view(), name="api-budget-alerts"),
]
