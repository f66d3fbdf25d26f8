"""SSO identities in the Django admin: read-only (they are made by sign-ins); staff delete one
to let the next sign-in of that subject link by email again."""

from django.contrib import admin

from sso.models import Identity


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("user", "email", "subject", "issuer", "created_at", "last_login_at")
    search_fields = ("user__username", "email", "subject")
    readonly_fields = ("user", "issuer", "subject", "email", "created_at", "last_login_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
