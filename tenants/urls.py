"""The management API's routes for tenants, API keys, members and the audit trail, mounted at
/api/ by config/urls.py."""

from django.urls import path

from tenants import api

urlpatterns = [
    path("tenants", api.TenantListAPI.as_view(), name="api-tenants"),
    path("tenants/<int:tenant_id>", api.TenantDetailAPI.as_view(), name="api-tenant"),
    path("keys", api.ApiKeyListAPI.as_view(), name="api-keys"),
    path("keys/<int:key_id>", api.ApiKeyDetailAPI.as_view(), name="api-key"),
    path("members", api.MemberListAPI.as_view(), name="api-members"),
    path("members/<int:member_id>", api.MemberDetailAPI.as_view(), name="api-member"),
    path("audit", api.AuditListAPI.as_view(), name="api-audit"),
]
