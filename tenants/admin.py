"""The Django admin for tenants, members, keys and the audit trail. The tenant pages' cost
columns are support's (support/admin.py re-registers Tenant with them)."""

from django import forms
from django.contrib import admin

from core.errors import InvalidInput
from tenants.access import Principal
from tenants.models import ApiKey, AuditEvent, Membership, Project, ProjectMembership, Tenant
from tenants.services import TENANT_DEFAULT_MODEL_CHECKS, api_key_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class TenantAdminForm(forms.ModelForm):
    """A new default model or default embeddings model must resolve for every key, as tenant_update
    checks them (the admin supplies the model and fields)."""

    def _default_checked(self, field: str) -> str:
        name = (self.cleaned_data.get(field) or "").strip()
        if name and self.instance.pk and name != getattr(self.instance, field):
            try:
                for check in TENANT_DEFAULT_MODEL_CHECKS:
                    check(tenant=self.instance, name=name, field=field)
            except InvalidInput as exc:
                raise forms.ValidationError(exc.message) from None
        return name

    def clean_default_model(self):
        return self._default_checked("default_model")

    def clean_default_embedding_model(self):
        return self._default_checked("default_embedding_model")


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ["slug", "name", "is_active", "default_model", "requests_per_minute", "created_at"]
    list_filter = ["is_active", "cache_enabled", "redis_outage", "timezone"]
    search_fields = ["slug", "name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "source", "created_at"]
    list_filter = ["role", "source"]
    search_fields = ["user__username", "user__email", "tenant__slug", "tenant__name"]
    list_select_related = ["user", "tenant"]
    autocomplete_fields = ["user", "tenant"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created through the API, the console or `createtenant` (where the full key is
    shown once); the admin shows only the masked prefix and can revoke."""

    list_display = ["masked", "name", "tenant", "project", "scope", "status", "created_at", "expires_at",
                    "last_used_at"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["name", "prefix", "tenant__slug", "tenant__name"]
    list_select_related = ["tenant", "project"]
    fields = ["tenant", "project", "name", "scope", "masked", "created_by", "created_at", "expires_at",
              "revoked_at", "last_used_at", "allowed_models", "requests_per_minute",
              "tokens_per_minute", "tokens_per_day"]
    readonly_fields = ["tenant", "project", "masked", "created_by", "created_at", "revoked_at", "last_used_at"]
    actions = ["revoke_selected"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="key")
    def masked(self, obj: ApiKey) -> str:
        return obj.masked

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        principal = Principal(user=request.user)
        count = 0
        for key in queryset.select_related("tenant"):
            api_key_revoke(key=key, actor=principal)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).")


class ProjectMembershipInline(admin.TabularInline):
    model = ProjectMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Read-only here: projects are created, changed and deleted through the API (audited, and a
    project with active keys is never deleted); members' project roles can be edited."""

    list_display = ["slug", "name", "tenant", "default_model", "created_at"]
    search_fields = ["slug", "name", "tenant__slug", "tenant__name"]
    list_select_related = ["tenant"]
    readonly_fields = ["tenant", "slug", "name", "default_model", "requests_per_minute", "tokens_per_minute",
                       "tokens_per_day", "created_at", "updated_at"]
    inlines = [ProjectMembershipInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "actor", "action", "target"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor", "action", "target", "tenant__slug"]
    list_select_related = ["tenant"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
