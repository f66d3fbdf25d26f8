"""The tenantconfig app's configuration: a tenant's configuration as one file (no models)."""

from django.apps import AppConfig


class TenantConfigConfig(AppConfig):
    name = "tenantconfig"
    default_auto_field = "django.db.models.BigAutoField"
