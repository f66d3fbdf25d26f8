"""The routes of a tenant's configuration as one file, mounted at /api/ by config/urls.py."""

from django.urls import path

from tenantconfig import api

urlpatterns = [
    path("config", api.ConfigAPI.as_view(), name="api-config"),
    path("config/plan", api.ConfigPlanAPI.as_view(), name="api-config-plan"),
    path("config/apply", api.ConfigApplyAPI.as_view(), name="api-config-apply"),
    path("config/schema", api.ConfigSchemaAPI.as_view(), name="api-config-schema"),
]
