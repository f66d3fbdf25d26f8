"""Server-rendered pages: the tenant console (/app/), login, and the support pages (/support/).

Console pages live under /app/<tenant slug>/ so links can be shared; /app/ picks the caller's
only tenant or shows a chooser."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from billing import end_users_views
from billing import views as billing_views
from providers import views as provider_views
from tenants import project_views
from tenants import views as tenant_views

console = [
    path("", billing_views.overview_page, name="console-overview"),
    path("settings/", provider_views.settings_page, name="console-settings"),
    path("providers/", provider_views.providers_page, name="console-providers"),
    path("providers/new/", provider_views.provider_new, name="console-provider-new"),
    path("providers/test/", provider_views.provider_test, name="console-provider-test"),
    path("providers/<int:provider_id>/", provider_views.provider_edit, name="console-provider-edit"),
    path("providers/<int:provider_id>/test/", provider_views.provider_test, name="console-provider-test-saved"),
    path("providers/<int:provider_id>/sync/", provider_views.provider_sync_now, name="console-provider-sync"),
    path("providers/<int:provider_id>/delete/", provider_views.provider_delete, name="console-provider-delete"),
    path("models/", provider_views.models_page, name="console-models"),
    # Model ids contain "/" and ":" (meta-llama/llama-3.1-8b-instruct, llama3:70b): last, as a path.
    path("models/<int:provider_id>/toggle/<path:model_id>", provider_views.model_toggle, name="console-model-toggle"),
    path("aliases/", provider_views.aliases_page, name="console-aliases"),
    path("aliases/new/", provider_views.alias_new, name="console-alias-new"),
    path("aliases/<int:alias_id>/", provider_views.alias_edit, name="console-alias-edit"),
    path("aliases/<int:alias_id>/delete/", provider_views.alias_delete, name="console-alias-delete"),
    path("keys/", tenant_views.keys_page, name="console-keys"),
    path("keys/<int:key_id>/", project_views.key_page, name="console-key"),
    path("keys/<int:key_id>/revoke/", tenant_views.key_revoke, name="console-key-revoke"),
    path("projects/", project_views.projects_page, name="console-projects"),
    path("projects/<slug:project_slug>/", project_views.project_page, name="console-project"),
    path("projects/<slug:project_slug>/delete/", project_views.project_delete, name="console-project-delete"),
    path("projects/<slug:project_slug>/members/", project_views.project_member_add, name="console-project-member-add"),
    path("projects/<slug:project_slug>/members/<int:member_id>/role/", project_views.project_member_role,
         name="console-project-member-role"),
    path("projects/<slug:project_slug>/members/<int:member_id>/remove/", project_views.project_member_remove,
         name="console-project-member-remove"),
    path("budgets/", billing_views.budgets_page, name="console-budgets"),
    path("budgets/new/", billing_views.budget_new, name="console-budget-new"),
    path("budgets/<int:budget_id>/", billing_views.budget_edit, name="console-budget-edit"),
    path("budgets/<int:budget_id>/delete/", billing_views.budget_delete, name="console-budget-delete"),
    path("limits/", billing_views.limits_page, name="console-limits"),
    path("limits/new/", billing_views.limit_new, name="console-limit-new"),
    path("limits/<int:rule_id>/", billing_views.limit_edit, name="console-limit-edit"),
    path("limits/<int:rule_id>/delete/", billing_views.limit_delete, name="console-limit-delete"),
    path("usage/", billing_views.usage_page, name="console-usage"),
    path("usage/export.csv", billing_views.usage_export, name="console-usage-export"),
    path("end-users/", end_users_views.end_users_page, name="console-end-users"),
    path("end-users/block/", end_users_views.end_user_block_add, name="console-end-user-block"),
    path("end-users/blocks/<int:block_id>/unblock/", end_users_views.end_user_block_remove,
         name="console-end-user-unblock"),
    path("members/", tenant_views.members_page, name="console-members"),
    path("members/<int:member_id>/role/", tenant_views.member_role, name="console-member-role"),
    path("members/<int:member_id>/remove/", tenant_views.member_remove, name="console-member-remove"),
]

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(
        template_name="registration/login.html", redirect_authenticated_user=True, next_page="/app/",
    ), name="login"),
    path("accounts/oidc/", include("sso.urls")),  # single sign-on (404 while off)
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("app/", tenant_views.console_home, name="console-home"),
    path("app/<slug:tenant_slug>/", include(console)),
    path("support/", include("support.urls")),
]
