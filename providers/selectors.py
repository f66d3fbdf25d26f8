"""Reads for providers and models. ``tenant=None`` means the platform scope (staff): only
platform providers. A tenant sees its own providers and the platform's."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from core.errors import InvalidInput, NotFound
from core.redis import REDIS_DOWN, get_redis
from providers.models import (
    AliasTarget,
    ModelAlias,
    ModelMode,
    Provider,
    ProviderModel,
    ProviderType,
    SyncStatus,
    TenantModel,
)
from providers.traffic import Traffic, traffic_read
from tenants.models import Tenant

log = logging.getLogger(__name__)


def provider_list(*, tenant: Tenant | None) -> QuerySet[Provider]:
    scope = Q(owner__isnull=True) if tenant is None else Q(owner=tenant) | Q(owner__isnull=True)
    return (
        Provider.objects.filter(scope)
        .select_related("owner")
        .annotate(model_count=Count("models", filter=Q(models__stale=False)))
        .order_by("-priority", "name", "pk")
    )


def provider_get(*, tenant: Tenant | None, provider_id: int) -> Provider:
    provider = provider_list(tenant=tenant).filter(pk=provider_id).first()
    if provider is None:
        raise NotFound(f"Provider {provider_id} not found.")
    return provider


def provider_model_list(*, provider: Provider, tenant: Tenant | None) -> QuerySet[ProviderModel]:
    """The provider's models; ``tenant_enabled`` says whether this tenant has chosen each one
    (platform providers) and mirrors ``enabled`` for the tenant's own providers."""
    models = ProviderModel.objects.filter(provider=provider).order_by("model_id")
    if tenant is not None and provider.owner_id is None:
        chosen = TenantModel.objects.filter(tenant=tenant, provider_model=OuterRef("pk"), enabled=True)
        return models.annotate(tenant_enabled=Exists(chosen))
    return models.annotate(tenant_enabled=Q(enabled=True))


def provider_model_get(*, provider: Provider, tenant: Tenant | None, model_id: str) -> ProviderModel:
    model = provider_model_list(provider=provider, tenant=tenant).filter(model_id=model_id).first()
    if model is None:
        raise NotFound(
            f"Model '{model_id}' not found on provider '{provider.name}'. "
            f"GET /api/providers/{provider.pk}/models lists its models."
        )
    return model


def models_available(*, tenant: Tenant, excluding: Q | None = None) -> QuerySet[ProviderModel]:
    """Every model this tenant may use now: enabled and current models of enabled providers
    it owns, and of platform providers whose model it has chosen; ``excluding``: as if the models
    it matches were not there (what a change that disables them would leave)."""
    chosen = TenantModel.objects.filter(tenant=tenant, provider_model=OuterRef("pk"), enabled=True)
    models = ProviderModel.objects.exclude(excluding) if excluding is not None else ProviderModel.objects
    return (
        models.filter(enabled=True, stale=False, provider__enabled=True)
        .filter(Q(provider__owner=tenant) | Q(provider__owner__isnull=True, pk__in=chosen.values("provider_model")))
        .select_related("provider")
        .order_by("-provider__priority", "provider__name", "model_id")
    )


def providers_due_for_sync(*, now: datetime, stale_after: timedelta) -> list[int]:
    """Ids of enabled auto-sync providers whose interval has passed (or that never synced),
    skipping ones whose sync is running unless it has run so long it must have died.
    Filtered in Python: portable to SQLite, and there are few providers per platform."""
    rows = Provider.objects.filter(enabled=True, auto_sync=True).values_list(
        "pk", "sync_interval_minutes", "last_sync_at", "sync_status", "sync_started_at"
    )
    due = []
    for pk, minutes, last, status, started in rows.order_by("pk"):
        if status == SyncStatus.RUNNING and started and started > now - stale_after:
            continue
        if last is None or last <= now - timedelta(minutes=minutes):
            due.append(pk)
    return due


def alias_list(*, tenant: Tenant, project_ids: frozenset[int] | None = None) -> QuerySet[ModelAlias]:
    """The tenant's aliases, tenant-wide and of every project; ``project_ids`` (a project-scoped
    caller's): those projects' aliases only."""
    aliases = (ModelAlias.objects.filter(tenant=tenant).select_related("project")
               .prefetch_related("targets__provider_model__provider"))
    return aliases if project_ids is None else aliases.filter(project_id__in=project_ids)


def alias_get(*, tenant: Tenant, alias_id: int, project_ids: frozenset[int] | None = None) -> ModelAlias:
    alias = alias_list(tenant=tenant, project_ids=project_ids).filter(pk=alias_id).first()
    if alias is None:
        raise NotFound(f"Alias {alias_id} not found in tenant '{tenant.slug}'.")
    return alias


@dataclass(frozen=True)
class UsableNames:
    """What a key may send as ``model``: alias names and model names ("provider:model" and bare
    ids), each with the modes (chat, embedding) of the models it reaches."""

    aliases: dict[str, frozenset[str]]
    models: dict[str, frozenset[str]]

    def modes(self, name: str) -> frozenset[str] | None:
        """The modes ``name`` reaches (None: no such name)."""
        found = self.aliases.get(name)
        return found if found is not None else self.models.get(name)

    def listing(self, mode: str | None = None, limit: int = 20) -> str:
        names = sorted(a for a, modes in self.aliases.items() if mode is None or mode in modes)
        names += sorted(m for m, modes in self.models.items() if ":" in m and (mode is None or mode in modes))
        more = f" and {len(names) - limit} more" if len(names) > limit else ""
        return (", ".join(names[:limit]) + more) if names else "none"


def names_usable(*, tenant: Tenant, project_id: int | None = None, excluding: Q | None = None) -> UsableNames:
    """The names a key of ``project_id`` may send (None: what every key may: tenant-wide aliases and
    models): its project's aliases, the tenant-wide ones, and the models the tenant may use
    (``excluding``: as models_available)."""
    models: dict[str, set[str]] = {}
    available: dict[int, str] = {}
    for m in models_available(tenant=tenant, excluding=excluding):
        available[m.pk] = m.mode
        for name in (f"{m.provider.name}:{m.model_id}", m.model_id):
            models.setdefault(name, set()).add(m.mode)
    scope = Q(project__isnull=True) | (Q(project_id=project_id) if project_id is not None else Q(pk__in=[]))
    found: dict[bool, dict[str, set[str]]] = {False: {}, True: {}}  # of the project?: name -> modes
    rows = ModelAlias.objects.filter(scope, tenant=tenant).values_list("project_id", "name", "targets__provider_model")
    for owner, name, pm in rows:
        modes = found[owner is not None].setdefault(name, set())
        if pm in available:
            modes.add(available[pm])
    aliases = {**found[False], **found[True]}  # the project's shadow the tenant-wide ones
    return UsableNames(aliases={k: frozenset(v) for k, v in aliases.items()},
                       models={k: frozenset(v) for k, v in models.items()})


@dataclass(frozen=True)
class DeploymentTraffic:
    """The traffic of a tenant's deployments by provider model id, or why it is unknown:
    ``"no-redis"`` (the embedded default: each worker keeps its own counters) or
    ``"redis-down"``."""

    by_model: dict[int, Traffic] = field(default_factory=dict)
    unknown: str = ""


def deployment_traffic(*, tenant: Tenant, provider_model_ids: list[int]) -> DeploymentTraffic:
    """Requests, tokens, in-flight count, latency and cooldown of the tenant's provider models
    now (providers.traffic), in one Redis pipeline."""
    client = get_redis()
    if client is None:
        return DeploymentTraffic(unknown="no-redis")
    if not provider_model_ids:
        return DeploymentTraffic()
    try:
        return DeploymentTraffic(by_model=traffic_read(client, tenant_id=tenant.pk,
                                                       provider_model_ids=provider_model_ids))
    except REDIS_DOWN as exc:
        log.warning("deployment traffic unknown: Redis is unreachable: %s", exc)
        return DeploymentTraffic(unknown="redis-down")


def provider_find(*, tenant: Tenant, name: str, own_only: bool = False) -> Provider | None:
    """The provider ``name`` means to this tenant: its own provider of that name, else its own of
    that type, else (unless ``own_only``) the platform's of that name, else of that type. Among
    several of one type, the one named as the type, then the highest priority, then the oldest."""
    scopes = [Q(owner=tenant)] if own_only else [Q(owner=tenant), Q(owner__isnull=True)]
    for scope in scopes:
        named = Provider.objects.filter(scope, name=name).first()
        if named is not None:
            return named
        if name in ProviderType.values:
            of_type = sorted(Provider.objects.filter(scope, provider_type=name),
                             key=lambda p: (p.name != name, -p.priority, p.pk))
            if of_type:
                return of_type[0]
    return None


def provider_default_model(*, tenant: Tenant, name: str, model: str | None = None, field: str = "provider") -> str:
    """The ``provider:model`` to try a provider with (POST /api/test/llm ``provider``): the provider
    ``name`` means to this tenant (provider_find), and ``model`` of it when given, else the tenant's
    default model when it is that provider's, else its first chat model the tenant may use.
    InvalidInput naming ``field`` when there is no such provider (listing the tenant's) or it has
    no usable chat model."""
    provider = provider_find(tenant=tenant, name=name)
    if provider is None:
        names = [f"{p.name} ({p.provider_type})" for p in provider_list(tenant=tenant)]
        raise InvalidInput(f"{field}: this tenant has no provider named or of type '{name}'; its providers: "
                           f"{', '.join(names) or 'none yet (POST /api/providers)'}.", field=field)
    if model:
        return model if model.startswith(f"{provider.name}:") else f"{provider.name}:{model}"
    if tenant.default_model.startswith(f"{provider.name}:"):
        return tenant.default_model
    first = models_available(tenant=tenant).filter(provider=provider, mode=ModelMode.CHAT).order_by("model_id").first()
    if first is None:
        raise InvalidInput(
            f"{field}: provider '{provider.name}' has no chat model this tenant may use; enable one (PUT "
            f"/api/providers/{provider.pk}/models/<model_id>/enable) or send 'model'.", field=field)
    return f"{provider.name}:{first.model_id}"


# --- model names (budgets' and limit rules' model filter) --------------------------------------


def model_names_hint(*, tenant: Tenant, limit: int = 8) -> str:
    """A few names the tenant can use: its aliases, then its models as provider:model."""
    names = list(ModelAlias.objects.filter(tenant=tenant).order_by("name").values_list("name", flat=True)[:limit])
    if len(names) < limit:
        names += [f"{pm.provider.name}:{pm.model_id}" for pm in models_available(tenant=tenant)[:limit - len(names)]]
    if not names:
        return f"tenant '{tenant.slug}' has no aliases or models yet (GET /api/providers/available/models)."
    return (f"some of tenant '{tenant.slug}': {', '.join(names)} (GET /api/aliases and "
            "GET /api/providers/available/models list them all).")


def _public_id_parts(*, tenant: Tenant, name: str) -> tuple[str, str] | None:
    """``(provider, model_id)`` when ``name`` is ``provider:model`` with a provider the tenant sees
    (its own or the platform's), as the gateway reads names; None for a bare id or an alias."""
    prefix, sep, rest = name.partition(":")
    if not sep or not rest:
        return None
    visible = Provider.objects.filter(Q(owner=tenant) | Q(owner__isnull=True), name=prefix)
    return (prefix, rest) if visible.exists() else None


def model_name_check(*, tenant: Tenant, name: str, field: str = "model") -> str:
    """``name`` stripped when it is an alias of the tenant, a ``provider:model`` or a bare model id
    it may use now; InvalidInput naming ``field`` (with a few names it has) otherwise."""
    name = (name or "").strip()
    if ModelAlias.objects.filter(tenant=tenant, name=name).exists():
        return name
    available = models_available(tenant=tenant)
    parts = _public_id_parts(tenant=tenant, name=name)
    if parts is not None and available.filter(provider__name=parts[0], model_id=parts[1]).exists():
        return name
    if parts is None and available.filter(model_id=name).exists():
        return name
    raise InvalidInput(f"{field} '{name}' is not an alias or model of this tenant; {model_names_hint(tenant=tenant)}",
                       field=field)


def provider_model_ids_named(*, tenant: Tenant, name: str, project_id: int | None = None) -> frozenset[int]:
    """The provider models a name stands for, to count their usage: an alias's deployments — the
    alias of that name of project ``project_id`` when it has one (it shadows the tenant-wide one
    for the project's keys), else the tenant-wide one —, or every model of the tenant's or the
    platform's providers with that ``provider:model`` or bare id (disabled ones too: what they
    served still counts)."""
    aliases = ModelAlias.objects.none()
    if project_id is not None:
        aliases = ModelAlias.objects.filter(tenant=tenant, name=name, project_id=project_id)
    if not aliases.exists():
        aliases = ModelAlias.objects.filter(tenant=tenant, name=name, project__isnull=True)
    if aliases.exists():
        return frozenset(AliasTarget.objects.filter(alias__in=aliases).values_list("provider_model_id", flat=True))
    models = ProviderModel.objects.filter(Q(provider__owner=tenant) | Q(provider__owner__isnull=True))
    parts = _public_id_parts(tenant=tenant, name=name)
    if parts is not None:
        models = models.filter(provider__name=parts[0], model_id=parts[1])
    else:
        models = models.filter(model_id=name)
    return frozenset(models.values_list("pk", flat=True))
