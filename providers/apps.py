"""The providers app's configuration: a change to a provider, its models, a tenant's model choices
or an alias replaces the owning tenant's configuration version (tenants/config_version.py; the
platform's, which every tenant follows, for a platform provider), so the data plane reloads its
routing table. It also adds the platform's default models to what tenant_create sets up
(providers/tenant_settings.py) and the checks of a project's and the tenant's default model to the
tenants' services (tenants/ cannot import this app)."""

from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from providers.models import AliasTarget, ModelAlias, Provider, ProviderModel, TenantModel
        from providers.services import project_default_model_check, tenant_default_model_check
        from providers.tenant_settings import tenant_platform_defaults
        from tenants.config_version import changed_on_save, config_changed
        from tenants.services import PROJECT_DEFAULT_MODEL_CHECKS, TENANT_CREATE_STEPS, TENANT_DEFAULT_MODEL_CHECKS

        if tenant_platform_defaults not in TENANT_CREATE_STEPS:
            TENANT_CREATE_STEPS.append(tenant_platform_defaults)
        if project_default_model_check not in PROJECT_DEFAULT_MODEL_CHECKS:
            PROJECT_DEFAULT_MODEL_CHECKS.append(project_default_model_check)
        if tenant_default_model_check not in TENANT_DEFAULT_MODEL_CHECKS:
            TENANT_DEFAULT_MODEL_CHECKS.append(tenant_default_model_check)

        def provider_changed(sender, instance, **kwargs):
            config_changed(tenant_id=instance.owner_id)  # None: a platform provider, every tenant

        def model_changed(sender, instance, **kwargs):
            owner = Provider.objects.filter(pk=instance.provider_id).values_list("owner_id", flat=True).first()
            config_changed(tenant_id=owner)

        def target_changed(sender, instance, **kwargs):
            tenant_id = ModelAlias.objects.filter(pk=instance.alias_id).values_list("tenant_id", flat=True).first()
            if tenant_id is not None:
                config_changed(tenant_id=tenant_id)

        # Every change the data plane must see on its next request (tenants/config_version.py).
        for signal in (post_save, post_delete):
            signal.connect(provider_changed, sender=Provider, dispatch_uid=f"cfgv-provider-{signal}")
            signal.connect(model_changed, sender=ProviderModel, dispatch_uid=f"cfgv-model-{signal}")
            signal.connect(changed_on_save, sender=TenantModel, dispatch_uid=f"cfgv-choice-{signal}")
            signal.connect(changed_on_save, sender=ModelAlias, dispatch_uid=f"cfgv-alias-{signal}")
            signal.connect(target_changed, sender=AliasTarget, dispatch_uid=f"cfgv-target-{signal}")
