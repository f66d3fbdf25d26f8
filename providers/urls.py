"""The management API's routes for one tenant (its settings name providers), providers, their
models (sync, enable, price), aliases and the connection test, mounted at /api/ by config/urls.py."""

from django.urls import path, re_path

from providers import api, tenant_api

urlpatterns = [
    path("tenants/<int:tenant_id>", tenant_api.TenantDetailAPI.as_view(), name="api-tenant"),
    path("aliases", api.AliasListAPI.as_view(), name="api-aliases"),
    path("aliases/<int:alias_id>", api.AliasDetailAPI.as_view(), name="api-alias"),
    path("providers", api.ProviderListAPI.as_view(), name="api-providers"),
    path("providers/sync-all", api.ProviderSyncAllAPI.as_view(), name="api-providers-sync-all"),
    path("providers/test", api.ProviderTestAPI.as_view(), name="api-providers-test"),
    path("providers/available/models", api.AvailableModelsAPI.as_view(), name="api-models-available"),
    path("providers/<int:provider_id>", api.ProviderDetailAPI.as_view(), name="api-provider"),
    path("providers/<int:provider_id>/sync", api.ProviderSyncAPI.as_view(), name="api-provider-sync"),
    path("providers/<int:provider_id>/models", api.ProviderModelsAPI.as_view(), name="api-provider-models"),
    # Model ids contain "/" and ":" (meta-llama/llama-3.1-8b-instruct, llama3:70b).
    re_path(r"^providers/(?P<provider_id>\d+)/models/(?P<model_id>.+)/enable$",
            api.ProviderModelEnableAPI.as_view(), name="api-provider-model-enable"),
    re_path(r"^providers/(?P<provider_id>\d+)/models/(?P<model_id>.+)/price$",
            api.ProviderModelPriceAPI.as_view(), name="api-provider-model-price"),
]
