"""Management REST API for providers and their models.

A caller acts in a tenant (members, admin keys, support staff with ?tenant=) or, for staff
who may change providers and name no tenant, in the platform scope, where the platform-wide
providers are managed."""

import re
from dataclasses import dataclass

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from core.drf import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
    paged,
    validated,
)
from core.errors import Forbidden, Unavailable
from core.redis import QUEUE_DOWN
from core.schema import UPSTREAM_ERROR
from providers import selectors, services
from providers.base_urls import detect_provider_type, normalize_base_url
from providers.crypto import MAX_KEY_CHARS, mask
from providers.models import (
    MAX_PRICE,
    PRICE_MAX_MESSAGE,
    ModelAlias,
    ModelMode,
    Provider,
    ProviderModel,
    ProviderType,
    RoutingStrategy,
)
from providers.options import options_clean
from providers.presets import preset_names, provider_preset
from providers.sync import connection_test, provider_sync
from providers.tasks import provider_sync_task
from tenants.access import Principal, TenantAccess
from tenants.api import ProjectRefField
from tenants.auth import principal_of
from tenants.drf import TENANT_PARAM, TenantAPIView
from tenants.models import Project, Role, Tenant
from tenants.selectors import project_get

MANAGE_PLATFORM_PERM = "providers.change_provider"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CONNECTION_TEST_TIMEOUT = 10.0  # seconds


@dataclass(frozen=True)
class Scope:
    tenant: Tenant | None  # None: the platform scope
    access: TenantAccess | None
    principal: Principal
    platform_admin: bool

    @property
    def context(self) -> dict:
        """What the provider serializers need: the tenant, and whether platform providers show
        their operational details (staff only; a tenant sees their name, type and models)."""
        staff = self.tenant is None or self.platform_admin or self.principal.is_support
        return {"tenant": self.tenant, "platform_details": staff}

    def require_change(self, provider_owner_id: int | None, *, doing: str) -> None:
        if provider_owner_id is None:
            if not self.platform_admin:
                raise Forbidden(f"Platform providers are managed by Tollgate staff; {doing} is not yours to do.")
            return
        if self.access is None:
            raise Forbidden(f"{doing} on a tenant's provider needs ?tenant=<id or slug>.")
        self.access.require(Role.ADMIN, doing=doing)


class ProviderAPIView(TenantAPIView):
    def scope(self, request) -> Scope:
        principal = principal_of(request)
        user = principal.user
        platform_admin = bool(
            user is not None and user.is_active and user.is_staff and user.has_perm(MANAGE_PLATFORM_PERM)
        )
        hint = request.query_params.get("tenant") or request.headers.get("X-Tollgate-Tenant")
        if platform_admin and not hint and principal.api_key is None:
            return Scope(tenant=None, access=None, principal=principal, platform_admin=True)
        access = self.access(request)
        return Scope(tenant=access.tenant, access=access, principal=principal, platform_admin=platform_admin)


# --- serializers ---------------------------------------------------------------------------


class ProviderIn(StrictSerializer):
    name = StrictCharField(max_length=64, required=False, help_text="Required unless a preset names it.")
    display_name = StrictCharField(required=False, allow_blank=True, max_length=200)
    preset = StrictCharField(
        required=False, allow_blank=True, max_length=64,
        help_text=f"An OpenAI-compatible service by name ({', '.join(preset_names())}): fills provider_type, "
                  "base_url, name and display_name where they are not given.",
    )
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)
    base_url = StrictCharField(required=False, allow_blank=True, max_length=500)
    api_key = StrictCharField(required=False, allow_blank=True, max_length=MAX_KEY_CHARS, write_only=True,
                              trim_whitespace=True,
                              help_text="The key, or the credential that mints tokens: an Entra ID client secret "
                                        "(azure, options.auth 'entra-client') or a service account's JSON key "
                                        "(Vertex AI). Never returned.")
    extra_headers = serializers.DictField(
        child=StrictCharField(max_length=2000), required=False,
        help_text="Sent upstream with every request. Names are HTTP tokens; values printable "
                  "ASCII.",
    )
    options = serializers.JSONField(
        required=False,
        help_text="Non-secret settings of the provider type. Azure: api_version (default "
                  "2024-10-21), auth ('api-key'; 'entra-client': api_key is a client secret that mints "
                  "Entra ID tokens, with tenant_id, client_id and optional authority; 'entra': api_key is an "
                  "access token), deployments ({deployment: model}). Gemini: auth ('api-key' or 'vertex': "
                  "api_key is a service account's JSON key, which mints tokens, or an access token), project, "
                  "location.",
    )
    enabled = StrictBooleanField(required=False)
    priority = StrictIntegerField(required=False, min_value=-1000, max_value=1000)
    timeout_seconds = StrictFloatField(required=False, min_value=0.5, max_value=600)
    max_retries = StrictIntegerField(required=False, min_value=0, max_value=10)
    auto_sync = StrictBooleanField(required=False)
    sync_interval_minutes = StrictIntegerField(required=False, min_value=5, max_value=43_200)

    def validate_name(self, value: str) -> str:
        if not NAME_RE.match(value):
            raise serializers.ValidationError(
                "Use 1-64 lowercase letters, digits, '.', '_' or '-' (no ':'; the name prefixes "
                "model ids as <name>:<model>)."
            )
        return value


class ProviderUpdateIn(ProviderIn):
    name = StrictCharField(max_length=64, required=False)


# What a tenant does not see of a platform provider (null, or an empty list); staff do.
PLATFORM_DETAILS = {"base_url": None, "api_key_hint": None, "extra_header_names": [],
                    "options": {}, "last_sync_error": None}
HIDDEN_FROM_TENANTS = "null on a platform provider seen by a tenant."


class ProviderOut(serializers.ModelSerializer):
    scope = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    base_url = serializers.CharField(allow_null=True, help_text=HIDDEN_FROM_TENANTS)
    api_key_hint = serializers.SerializerMethodField(help_text="Masked: sk-…abcd. The key itself is never returned.")
    last_sync_error = serializers.CharField(allow_null=True, help_text=HIDDEN_FROM_TENANTS)
    extra_header_names = serializers.SerializerMethodField()
    model_count = serializers.IntegerField(read_only=True, required=False)
    preset = serializers.SerializerMethodField(
        help_text="The OpenAI-compatible service preset the provider was created with or its base URL matches.")

    class Meta:
        model = Provider
        fields = [
            "id", "name", "display_name", "provider_type", "preset", "base_url", "scope", "owner", "api_key_hint",
            "extra_header_names", "options", "enabled", "priority", "timeout_seconds", "max_retries", "auto_sync",
            "sync_interval_minutes", "sync_status", "last_sync_at", "last_sync_error", "model_count",
            "created_at", "updated_at",
        ]

    def get_scope(self, provider) -> str:
        return "platform" if provider.owner_id is None else "tenant"

    def get_owner(self, provider) -> str | None:
        return provider.owner.slug if provider.owner_id else None

    def get_preset(self, provider) -> str | None:
        preset = provider_preset(provider)
        return preset.name if preset is not None else None

    def get_api_key_hint(self, provider) -> str | None:
        return mask(provider.api_key) or None

    def get_extra_header_names(self, provider) -> list[str]:
        return sorted(provider.extra_headers or {})

    def to_representation(self, provider):
        data = super().to_representation(provider)
        if provider.owner_id is None and not self.context.get("platform_details"):
            data.update(PLATFORM_DETAILS)
        return data


class PricesOut(serializers.Serializer):
    input = serializers.DecimalField(source="input_price", max_digits=24, decimal_places=12, allow_null=True,
                                     help_text="USD per million input tokens; null = unknown.")
    output = serializers.DecimalField(source="output_price", max_digits=24, decimal_places=12, allow_null=True)
    cached_input = serializers.DecimalField(source="cached_input_price", max_digits=24, decimal_places=12,
                                            allow_null=True)
    cache_write = serializers.DecimalField(source="cache_write_price", max_digits=24, decimal_places=12,
                                           allow_null=True,
                                           help_text="USD per million prompt-cache write tokens; null = input price.")
    source = serializers.CharField(source="price_source")
    known = serializers.SerializerMethodField()

    def get_known(self, model) -> bool:
        return model.input_price is not None and model.output_price is not None


class ModelOut(serializers.ModelSerializer):
    prices = PricesOut(source="*")
    tenant_enabled = serializers.BooleanField(read_only=True, help_text="Usable by the caller's tenant.")

    class Meta:
        model = ProviderModel
        fields = [
            "model_id", "display_name", "mode", "context_length", "supports_tools", "supports_vision",
            "prices", "enabled", "stale", "tenant_enabled", "updated_at",
        ]


class AvailableModelOut(ModelOut):
    id = serializers.SerializerMethodField(help_text="What to send as `model`: <provider>:<model>.")
    provider = serializers.CharField(source="provider.name")
    provider_id = serializers.IntegerField()

    class Meta(ModelOut.Meta):
        fields = ["id", "provider", "provider_id", *[f for f in ModelOut.Meta.fields
                                                     if f not in ("enabled", "stale", "tenant_enabled")]]

    def get_id(self, model) -> str:
        return f"{model.provider.name}:{model.model_id}"


class ProviderDetailOut(ProviderOut):
    models = serializers.SerializerMethodField()

    class Meta(ProviderOut.Meta):
        fields = [*ProviderOut.Meta.fields, "models"]

    def get_models(self, provider) -> list[dict]:
        models = selectors.provider_model_list(provider=provider, tenant=self.context.get("tenant"))
        return ModelOut(models, many=True).data


class EnableIn(StrictSerializer):
    enabled = StrictBooleanField()


def _price_in(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=24, decimal_places=12, min_value=0, max_value=MAX_PRICE, allow_null=True,
        error_messages={"max_value": PRICE_MAX_MESSAGE}, **kwargs,
    )


class PriceIn(StrictSerializer):
    input = _price_in()
    output = _price_in()
    cached_input = _price_in(required=False)
    cache_write = _price_in(required=False)

    def validate(self, data):
        if (data["input"] is None) != (data["output"] is None):
            raise serializers.ValidationError(
                "Give both input and output prices, or null for both to drop the manual price."
            )
        return data


class ConnectionTestIn(StrictSerializer):
    base_url = StrictCharField(max_length=500, required=False, allow_blank=True)
    api_key = StrictCharField(required=False, allow_blank=True, max_length=MAX_KEY_CHARS)
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)
    preset = StrictCharField(required=False, allow_blank=True, max_length=64)
    options = serializers.JSONField(
        required=False,
        help_text="Non-secret settings of the provider type. Azure: api_version (default "
                  "2024-10-21), auth ('api-key'; 'entra-client': api_key is a client secret that mints "
                  "Entra ID tokens, with tenant_id, client_id and optional authority; 'entra': api_key is an "
                  "access token), deployments ({deployment: model}). Gemini: auth ('api-key' or 'vertex': "
                  "api_key is a service account's JSON key, which mints tokens, or an access token), project, "
                  "location.",
    )


SYNC_OUT = inline_serializer(
    "SyncResult",
    {
        "provider_id": serializers.IntegerField(),
        "sync_status": serializers.CharField(),
        "added": serializers.IntegerField(),
        "updated": serializers.IntegerField(),
        "stale": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(),
    },
)


# --- views ---------------------------------------------------------------------------------


class ProviderListAPI(ProviderAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=ProviderOut(many=True),
                   summary="Providers: the tenant's own and the platform's")
    def get(self, request):
        scope = self.scope(request)
        providers = selectors.provider_list(tenant=scope.tenant)
        return paged(self, request, providers, ProviderOut, **scope.context)

    @extend_schema(parameters=[TENANT_PARAM], request=ProviderIn, responses={201: ProviderDetailOut},
                   summary="Add a provider (the type is detected from base_url when not given, or a preset names it)")
    def post(self, request):
        scope = self.scope(request)
        scope.require_change(scope.tenant.pk if scope.tenant else None, doing="adding a provider")
        data = validated(ProviderIn, request.data)
        provider = services.provider_create(owner=scope.tenant, data=data, actor=scope.principal)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider.pk)
        return Response(ProviderDetailOut(provider, context=scope.context).data, status=201)


class ProviderDetailAPI(ProviderAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=ProviderDetailOut, summary="A provider with its models")
    def get(self, request, provider_id: int):
        scope = self.scope(request)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        return Response(ProviderDetailOut(provider, context=scope.context).data)

    @extend_schema(parameters=[TENANT_PARAM], request=ProviderUpdateIn, responses=ProviderDetailOut,
                   summary="Change a provider (api_key: a new key replaces it, \"\" removes it, absent keeps it)")
    def put(self, request, provider_id: int):
        scope = self.scope(request)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        scope.require_change(provider.owner_id, doing="changing a provider")
        data = validated(ProviderUpdateIn, request.data)
        services.provider_update(provider=provider, data=data, actor=scope.principal)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        return Response(ProviderDetailOut(provider, context=scope.context).data)

    patch = put

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None}, summary="Delete a provider and its models")
    def delete(self, request, provider_id: int):
        scope = self.scope(request)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        scope.require_change(provider.owner_id, doing="deleting a provider")
        services.provider_delete(provider=provider, actor=scope.principal)
        return Response(status=204)


class ProviderSyncAPI(ProviderAPIView):
    @extend_schema(parameters=[TENANT_PARAM], request=None,
                   responses={200: SYNC_OUT, 502: UPSTREAM_ERROR},
                   summary="Sync the provider's model catalog now")
    def post(self, request, provider_id: int):
        scope = self.scope(request)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        scope.require_change(provider.owner_id, doing="syncing a provider")
        result = provider_sync(provider=provider)
        provider.refresh_from_db(fields=["sync_status"])
        return Response({"provider_id": provider.pk, "sync_status": provider.sync_status, **result.as_dict()})


class ProviderSyncAllAPI(ProviderAPIView):
    @extend_schema(
        parameters=[TENANT_PARAM], request=None,
        responses={202: inline_serializer("SyncQueued", {"queued": serializers.ListField(
            child=serializers.IntegerField())})},
        summary="Queue a sync of every enabled provider the caller manages",
    )
    def post(self, request):
        scope = self.scope(request)
        if scope.tenant is not None:
            scope.access.require(Role.ADMIN, doing="syncing providers")
        providers = selectors.provider_list(tenant=scope.tenant).filter(enabled=True)
        providers = providers.filter(owner=scope.tenant) if scope.tenant else providers
        ids = list(providers.values_list("pk", flat=True))
        try:
            for provider_id in ids:
                provider_sync_task.delay(provider_id)
        except QUEUE_DOWN as exc:
            raise Unavailable("The task queue (Redis) is unreachable, so the syncs could not be queued; retry once "
                              "it is back (GET /healthz names the failed dependency).") from exc
        return Response({"queued": ids}, status=202)


class ProviderTestAPI(ProviderAPIView):
    @extend_schema(
        parameters=[TENANT_PARAM], request=ConnectionTestIn,
        responses=inline_serializer("ConnectionTest", {
            "reachable": serializers.BooleanField(), "detected_type": serializers.CharField(),
            "base_url": serializers.CharField(), "model_count": serializers.IntegerField(allow_null=True),
            "latency_ms": serializers.FloatField(allow_null=True), "error": serializers.CharField(allow_null=True),
            "sample_models": serializers.ListField(child=serializers.CharField()),
        }),
        summary="Try a base URL and key without saving anything",
    )
    def post(self, request):
        scope = self.scope(request)
        if scope.tenant is not None:
            scope.access.require(Role.ADMIN, doing="testing provider connections")
        data = validated(ConnectionTestIn, request.data)
        services.provider_credentials_check(api_key=data.get("api_key"))
        base_url = (data.get("base_url") or "").strip()
        preset = services.preset_named(data)
        provider_type = data.get("provider_type") or (
            ProviderType.OPENAI_COMPATIBLE if preset is not None
            else detect_provider_type(base_url) if base_url else ProviderType.OPENAI
        )
        options = data.get("options")
        base_url = normalize_base_url(base_url, provider_type, preset=preset,
                                      region=options.get("region", "") if isinstance(options, dict) else "")
        services.base_url_vet(base_url)
        probe = Provider(name="test", provider_type=provider_type, base_url=base_url,
                         api_key=data.get("api_key") or "", timeout_seconds=CONNECTION_TEST_TIMEOUT,
                         options={**options_clean(provider_type, data.get("options")),
                                  **({"preset": preset.name} if preset is not None else {})})
        return Response(connection_test(provider=probe).as_dict())


class ProviderModelsAPI(ProviderAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=ModelOut(many=True), summary="A provider's models")
    def get(self, request, provider_id: int):
        scope = self.scope(request)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        models = selectors.provider_model_list(provider=provider, tenant=scope.tenant)
        search = request.query_params.get("search")
        if search:
            models = models.filter(model_id__icontains=search)
        return paged(self, request, models, ModelOut)


class ProviderModelEnableAPI(ProviderAPIView):
    @extend_schema(parameters=[TENANT_PARAM], request=EnableIn, responses=ModelOut,
                   summary="Choose whether the tenant may use a model (model ids may contain / and :)")
    def put(self, request, provider_id: int, model_id: str):
        scope = self.scope(request)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        model = selectors.provider_model_get(provider=provider, tenant=scope.tenant, model_id=model_id)
        if scope.tenant is not None and provider.owner_id is None:
            scope.access.require(Role.ADMIN, doing="choosing models")
        else:
            scope.require_change(provider.owner_id, doing="enabling models")
        data = validated(EnableIn, request.data)
        services.provider_model_set_enabled(
            provider_model=model, tenant=scope.tenant, enabled=data["enabled"], actor=scope.principal
        )
        model = selectors.provider_model_get(provider=provider, tenant=scope.tenant, model_id=model_id)
        return Response(ModelOut(model).data)


class ProviderModelPriceAPI(ProviderAPIView):
    @extend_schema(parameters=[TENANT_PARAM], request=PriceIn, responses=ModelOut,
                   summary="Set a manual price (USD per million tokens) that syncs keep; nulls drop it")
    def put(self, request, provider_id: int, model_id: str):
        scope = self.scope(request)
        provider = selectors.provider_get(tenant=scope.tenant, provider_id=provider_id)
        model = selectors.provider_model_get(provider=provider, tenant=scope.tenant, model_id=model_id)
        scope.require_change(provider.owner_id, doing="setting model prices")
        data = validated(PriceIn, request.data)
        prices = None if data["input"] is None else data
        services.provider_model_set_price(provider_model=model, prices=prices, actor=scope.principal,
                                          tenant=scope.tenant)
        model = selectors.provider_model_get(provider=provider, tenant=scope.tenant, model_id=model_id)
        return Response(ModelOut(model).data)


class AvailableModelsAPI(ProviderAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=AvailableModelOut(many=True),
                   summary="Every model the tenant may use now, across providers")
    def get(self, request):
        access = self.access(request)
        models = selectors.models_available(tenant=access.tenant)
        mode = request.query_params.get("mode")
        if mode in ModelMode.values:
            models = models.filter(mode=mode)
        return paged(self, request, models, AvailableModelOut)


# --- aliases ---------------------------------------------------------------------------------

ALIAS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class OverridesIn(StrictSerializer):
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    top_p = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=1)


class AliasTargetIn(StrictSerializer):
    model = StrictCharField(max_length=400,
                            help_text="provider:model, e.g. openrouter:meta-llama/llama-3.1-8b-instruct")
    overrides = OverridesIn(required=False)
    priority = StrictIntegerField(
        required=False, min_value=0, max_value=1000,
        help_text="Priority group, lower first; deployments sharing it split its traffic by the alias's strategy. "
        "Omitted: the deployment's position in the list (a plain list stays an ordered fallback chain).",
    )
    weight = StrictIntegerField(required=False, min_value=0, max_value=1_000_000,
                                help_text="Share of its group's traffic under the weighted strategy (default 1; "
                                "0: used only when the others of its group are not).")
    rpm_limit = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=100_000_000,
                                   help_text="Requests per minute this deployment may take (the provider "
                                   "account's limit); over it, it is skipped, not called.")
    tpm_limit = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000_000,
                                   help_text="Tokens per minute this deployment may take; over it, it is skipped.")


def _fallback_names(error_class: str) -> serializers.ListField:
    return serializers.ListField(
        child=StrictCharField(max_length=400), required=False, max_length=10,
        help_text=f"Aliases or models tried, in order, when every deployment fails with a {error_class} error.",
    )


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "maxLength": 50}]})
class AliasProjectField(ProjectRefField):
    """A project by id or slug; "" (like null) for none: a tenant-wide alias."""

    def to_internal_value(self, data):
        return None if data == "" else super().to_internal_value(data)


class AliasIn(StrictSerializer):
    name = StrictCharField(max_length=100)
    project = AliasProjectField(
        required=False, allow_null=True,
        help_text="The project (id or slug) whose keys alone may send this alias; for them it shadows a "
                  "tenant-wide alias of the same name. Empty, null or absent: tenant-wide (every key).")
    description = StrictCharField(required=False, allow_blank=True, max_length=300)
    targets = AliasTargetIn(many=True, allow_empty=False, max_length=20,
                            help_text="The alias's deployments (also accepted as 'deployments').")
    retries = StrictIntegerField(required=False, min_value=0, max_value=10)
    timeout_seconds = StrictFloatField(required=False, allow_null=True, min_value=0.5, max_value=600)
    allowed_fails = StrictIntegerField(required=False, min_value=0, max_value=1000)
    cooldown_seconds = StrictIntegerField(required=False, min_value=1, max_value=86_400)
    strategy = serializers.ChoiceField(choices=RoutingStrategy.choices, required=False)
    session_affinity = StrictBooleanField(required=False)
    context_window_fallbacks = _fallback_names("context-window")
    content_policy_fallbacks = _fallback_names("content-policy")

    def to_internal_value(self, data):
        if isinstance(data, dict) and "deployments" in data:  # the same list under its other name
            if "targets" in data:
                raise serializers.ValidationError({"deployments": ["Send 'targets' or 'deployments', not both."]})
            data = {("targets" if k == "deployments" else k): v for k, v in data.items()}
        return super().to_internal_value(data)

    def validate_name(self, value: str) -> str:
        if not ALIAS_NAME_RE.match(value):
            raise serializers.ValidationError(
                "Use letters, digits, '.', '_' or '-' (no ':', which marks provider:model ids)."
            )
        return value


class AliasUpdateIn(AliasIn):
    name = StrictCharField(max_length=100, required=False)
    targets = AliasTargetIn(many=True, allow_empty=False, max_length=20, required=False)


class AliasTargetOut(serializers.Serializer):
    model = serializers.SerializerMethodField()
    overrides = serializers.JSONField()
    priority = serializers.IntegerField()
    weight = serializers.IntegerField()
    rpm_limit = serializers.IntegerField(allow_null=True)
    tpm_limit = serializers.IntegerField(allow_null=True)
    available = serializers.SerializerMethodField(help_text="False when the model is disabled or stale now.")

    def get_model(self, target) -> str:
        return f"{target.provider_model.provider.name}:{target.provider_model.model_id}"

    def get_available(self, target) -> bool:
        pm = target.provider_model
        return pm.enabled and not pm.stale and pm.provider.enabled


class AliasOut(serializers.ModelSerializer):
    project = serializers.SerializerMethodField(help_text="The project's slug; null for a tenant-wide alias.")
    targets = serializers.SerializerMethodField()

    class Meta:
        model = ModelAlias
        fields = ["id", "name", "project", "description", "targets", "strategy", "session_affinity",
                  "context_window_fallbacks", "content_policy_fallbacks", "retries", "timeout_seconds",
                  "allowed_fails", "cooldown_seconds", "created_at", "updated_at"]

    def get_project(self, alias) -> str | None:
        return alias.project.slug if alias.project_id else None

    @extend_schema_field(AliasTargetOut(many=True))
    def get_targets(self, alias) -> list[dict]:
        return AliasTargetOut(sorted(alias.targets.all(), key=lambda t: t.position), many=True).data


ALIAS_PROJECT_PARAM = OpenApiParameter(
    "project", str, required=False,
    description="Only this project's aliases (id or slug); '-': only the tenant-wide ones.")
TENANT_WIDE = "-"


def _alias_project(access: TenantAccess, wanted: int | str | None) -> Project | None:
    """The project an alias is to belong to: ``wanted`` (id or slug; one the caller may see), or
    None (tenant-wide)."""
    if wanted is None:
        return None
    return project_get(tenant=access.tenant, project=wanted, project_ids=access.project_ids)


class AliasListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM, ALIAS_PROJECT_PARAM], responses=AliasOut(many=True),
                   summary="Aliases and fallback chains (a project member: their projects' aliases)")
    def get(self, request):
        access = self.access(request, projects=True)
        aliases = selectors.alias_list(tenant=access.tenant, project_ids=access.project_ids)
        wanted = request.query_params.get("project")
        if wanted == TENANT_WIDE:
            aliases = aliases.filter(project__isnull=True)
        elif wanted:
            aliases = aliases.filter(project=_alias_project(access, wanted))
        return paged(self, request, aliases, AliasOut)

    @extend_schema(parameters=[TENANT_PARAM], request=AliasIn, responses={201: AliasOut},
                   summary="Create an alias: deployments in priority groups, with router settings")
    def post(self, request):
        access = self.access(request, projects=True)
        data = validated(AliasIn, request.data)
        data["project"] = _alias_project(access, data.get("project"))
        access.require_in_scope(data["project"], Role.ADMIN, doing="creating {}", what="aliases")
        alias = services.alias_create(tenant=access.tenant, data=data, actor=access.principal)
        return Response(AliasOut(selectors.alias_get(tenant=access.tenant, alias_id=alias.pk)).data, status=201)


class AliasDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=AliasOut, summary="One alias")
    def get(self, request, alias_id: int):
        access = self.access(request, projects=True)
        alias = selectors.alias_get(tenant=access.tenant, alias_id=alias_id, project_ids=access.project_ids)
        return Response(AliasOut(alias).data)

    @extend_schema(parameters=[TENANT_PARAM], request=AliasUpdateIn, responses=AliasOut,
                   summary="Change an alias (targets, when sent, replace its deployments; project moves it)")
    def put(self, request, alias_id: int):
        access = self.access(request, projects=True)
        alias = selectors.alias_get(tenant=access.tenant, alias_id=alias_id, project_ids=access.project_ids)
        access.require_in_scope(alias.project, Role.ADMIN, doing="changing {}", what="aliases")
        data = validated(AliasUpdateIn, request.data)
        if "project" in data:
            data["project"] = _alias_project(access, data["project"])
            access.require_in_scope(data["project"], Role.ADMIN, doing="making an alias one of the {}", what="aliases")
        services.alias_update(alias=alias, data=data, actor=access.principal)
        return Response(AliasOut(selectors.alias_get(tenant=access.tenant, alias_id=alias_id)).data)

    patch = put

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None}, summary="Delete an alias")
    def delete(self, request, alias_id: int):
        access = self.access(request, projects=True)
        alias = selectors.alias_get(tenant=access.tenant, alias_id=alias_id, project_ids=access.project_ids)
        access.require_in_scope(alias.project, Role.ADMIN, doing="deleting {}", what="aliases")
        services.alias_delete(alias=alias, actor=access.principal)
        return Response(status=204)
