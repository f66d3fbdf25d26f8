"""The management API's routes for the tenant list, API keys, projects, members and the audit trail, mounted
at /api/ by config/urls.py. One tenant (GET / PUT /api/tenants/{id}) is served by
providers/tenant_api.py: its settings name providers, which this app cannot import."""

from django.urls import path

from tenants import api

urlpatterns = [
    path("tenants", api.TenantListAPI.as_view(), name="api-tenants"),
    path("keys", api.ApiKeyListAPI.as_view(), name="api-keys"),
    path("keys/<int:key_id>", api.ApiKeyDetailAPI.as_view(), name="api-key"),
    path("projects", api.ProjectListAPI.as_view(), name="api-projects"),
    path("projects/<str:project>", api.ProjectDetailAPI.as_view(), name="api-project"),
    path("projects/<str:project>/members", api.ProjectMemberListAPI.as_view(), name="api-project-members"),
    path("projects/<str:project>/members/<int:project_member_id>", api.ProjectMemberDetailAPI.as_view(),
         name="api-project-member"),
    path("members", api.MemberListAPI.as_view(), name="api-members"),
    path("members/<int:member_id>", api.MemberDetailAPI.as_view(), name="api-member"),
    path("audit", api.AuditListAPI.as_view(), name="api-audit"),
]
