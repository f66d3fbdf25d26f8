"""The management API's routes for usage: the ledger's rows, the summary and the CSV export,
mounted at /api/ by config/urls.py."""

from django.urls import path

from billing import usage_api

urlpatterns = [
    path("usage", usage_api.UsageListAPI.as_view(), name="api-usage"),
    path("usage/summary", usage_api.UsageSummaryAPI.as_view(), name="api-usage-summary"),
    path("usage/export.csv", usage_api.UsageExportAPI.as_view(), name="api-usage-export"),
]
