"""``GET`` / ``PUT`` / ``PATCH /api/tenants/{id}``: a tenant and its settings. Served from this app
because the settings may name providers — the seed's dialect, ``settings.llm`` /
``settings.embeddings`` with ``provider`` and ``apiKey`` (providers/tenant_settings.py) — which the
tenants app below cannot import. The tenant-level fields are tenants/api.py's."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.drf import StrictCharField, StrictSerializer, validated
from core.errors import InvalidInput
from providers.tenant_settings import section_apply, section_in, section_view
from tenants import services as tenant_services
from tenants.api import (
    EmbeddingsSettingsIn,
    EmbeddingsSettingsOut,
    LlmSettingsIn,
    LlmSettingsOut,
    SettingsIn,
    SettingsOut,
    TenantIn,
    TenantOut,
    tenant_changes,
)
from tenants.drf import TenantAPIView
from tenants.models import Role


class ProviderFieldsIn(StrictSerializer):
    """The seed dialect's fields of a settings section."""

    provider = StrictCharField(
        required=False, allow_null=True, max_length=64,
        help_text="The seed's dialect: a provider type (openai, anthropic, ollama, …) or the name of one of the "
                  "tenant's providers; with apiKey, the tenant's own provider of that type is created or updated. "
                  "model then is that provider's model.")
    apiKey = StrictCharField(  # noqa: N815
        required=False, allow_null=True, max_length=4000, write_only=True,
        help_text="The provider's key: stored encrypted in the tenant's own provider, never returned (GET shows it "
                  "masked).")
    baseUrl = StrictCharField(  # noqa: N815
        required=False, allow_null=True, max_length=500,
        help_text="Tollgate's addition to the dialect: the base URL of the tenant's own provider (default: the "
                  "type's well-known URL). A new URL needs apiKey sent again.")


class LlmSeedIn(LlmSettingsIn, ProviderFieldsIn):
    pass


class EmbeddingsSeedIn(EmbeddingsSettingsIn, ProviderFieldsIn):
    pass


class SettingsSeedIn(SettingsIn):
    llm = LlmSeedIn(required=False)
    embeddings = EmbeddingsSeedIn(required=False)


class TenantSeedIn(TenantIn):
    settings = SettingsSeedIn(required=False)
    tenantId = StrictCharField(  # noqa: N815
        required=False, max_length=64,
        help_text="The seed's documents carry the tenant they configure: accepted when it is this tenant's slug or id.")


def _section_out(section: str, base: type[serializers.Serializer], model_field: str) -> type[serializers.Serializer]:
    class Out(base):
        provider = serializers.SerializerMethodField(
            help_text="The provider the default model names (provider:model); null for an alias, a bare id or none.")
        apiKey = serializers.SerializerMethodField(  # noqa: N815
            help_text="That provider's key, masked (sk-…abcd), when it is the tenant's own; null otherwise.")

        def to_representation(self, tenant):
            self._view = section_view(tenant=tenant, model=getattr(tenant, model_field))  # read once for both
            return super().to_representation(tenant)

        def get_provider(self, tenant) -> str | None:
            return self._view["provider"]

        def get_apiKey(self, tenant) -> str | None:  # noqa: N802
            return self._view["apiKey"]

    Out.__name__ = Out.__qualname__ = f"{section.capitalize()}SettingsDetailOut"
    return Out


class SettingsDetailOut(SettingsOut):
    llm = _section_out("llm", LlmSettingsOut, "default_model")(source="*")
    embeddings = _section_out("embeddings", EmbeddingsSettingsOut, "default_embedding_model")(source="*")


class TenantDetailOut(TenantOut):
    settings = SettingsDetailOut(source="*")


class TenantDetailAPI(TenantAPIView):
    @extend_schema(responses=TenantDetailOut, summary="A tenant and its settings")
    def get(self, request, tenant_id: int):
        access = self.access(request, tenant_id=tenant_id)
        return Response(TenantDetailOut(access.tenant, context={"roles": {tenant_id: access.role}}).data)

    @extend_schema(
        request=TenantSeedIn,
        responses=TenantDetailOut,
        summary="Change a tenant's name, time zone or settings",
        description="Fields that are sent are changed; fields left out keep their value; null clears an optional "
        "setting. settings.llm and settings.embeddings also take the seed's dialect: provider (a type or a "
        "provider's name), apiKey (creates or updates the tenant's own provider of that type), model (that "
        "provider's), maxTokens / topP beside max_tokens / top_p. PATCH behaves the same.",
    )
    def put(self, request, tenant_id: int):
        access = self.access_for_change(
            request, tenant_id=tenant_id, needed=Role.ADMIN, doing="changing tenant settings"
        )
        data = validated(TenantSeedIn, request.data)
        tenant = access.tenant
        named = data.get("tenantId")
        if named is not None and named not in (tenant.slug, str(tenant.pk)):
            raise InvalidInput(f"tenantId '{named}' is not this tenant ('{tenant.slug}', id {tenant.pk}); send the "
                               "document to its own tenant's URL, or leave tenantId out.", field="tenantId")
        changes = tenant_changes(data)
        with transaction.atomic():  # providers, models and the tenant's fields change together or not at all
            for section in ("llm", "embeddings"):
                sent = data.get("settings", {}).get(section)
                if sent is not None:
                    changes.update(section_apply(tenant=tenant, part=section_in(section, sent),
                                                 actor=access.principal))
            try:
                tenant = tenant_services.tenant_update(tenant=tenant, changes=changes, actor=access.principal)
            except InvalidInput as exc:
                sent = {"default_model": "settings.llm.model",
                        "default_embedding_model": "settings.embeddings.model"}.get(exc.field or "")
                if sent is None:
                    raise
                raise InvalidInput(f"{sent}: {exc.message}", field=sent) from None
        return Response(TenantDetailOut(tenant, context={"roles": {tenant_id: access.role}}).data)

    patch = put
