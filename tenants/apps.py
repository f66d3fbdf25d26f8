"""The tenants app's configuration: it registers the OpenAPI description of bearer-key auth, and
a change to a tenant, one of its keys or projects replaces the tenant's configuration version
(tenants/config_version.py), so the data plane reloads them on its next request."""

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from tenants import auth  # noqa: F401  (registers the OpenAPI bearer-key extension)
        from tenants.config_version import changed_on_save, config_changed
        from tenants.models import ApiKey, Project, Tenant

        def tenant_changed(sender, instance, **kwargs):
            config_changed(tenant_id=instance.pk)

        # Every change the data plane must see on its next request (tenants/config_version.py).
        for signal in (post_save, post_delete):
            signal.connect(tenant_changed, sender=Tenant, dispatch_uid=f"cfgv-tenant-{signal}")
            signal.connect(changed_on_save, sender=ApiKey, dispatch_uid=f"cfgv-key-{signal}")
            # A project's limits and default model apply to its keys' requests.
            signal.connect(changed_on_save, sender=Project, dispatch_uid=f"cfgv-project-{signal}")
