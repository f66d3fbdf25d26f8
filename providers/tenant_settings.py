"""The seed's tenant-settings dialect (README "The seed's tenant-settings dialect"): a tenant's
``settings.llm`` / ``settings.embeddings`` naming a provider by type, its key and a model, turned
into what Tollgate has — the tenant's own provider of that type (key encrypted), or a provider
already there, and the model as the tenant's default ``provider:model``. Also the platform's
default models for new tenants (LLM_PROVIDER, EMBEDDINGS_PROVIDER), a step of tenant_create."""

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from core.errors import InvalidInput, TollgateError
from core.redis import QUEUE_DOWN
from core.validation import text_check
from providers.catalog import CATALOG_FIELDS, entry_from_name
from providers.crypto import mask
from providers.models import ModelMode, Provider, ProviderModel, ProviderType, SyncStatus, TenantModel
from providers.presets import preset_get, preset_names
from providers.selectors import provider_find
from providers.services import provider_create, provider_model_set_enabled, provider_update
from tenants.access import Principal
from tenants.models import Tenant
from tenants.services import audit_record, tenant_update

log = logging.getLogger(__name__)

# Provider types whose API needs no key: the dialect may set one up without ``apiKey``.
KEYLESS_TYPES = (ProviderType.OLLAMA, ProviderType.MOCK)
# section -> (the Tenant field its model goes to, the model mode it takes)
SECTIONS = {"llm": ("default_model", ModelMode.CHAT), "embeddings": ("default_embedding_model", ModelMode.EMBEDDING)}
# The service's own field names -> the dialect's, for errors that name the field sent.
_SENT_AS = {"api_key": "apiKey", "base_url": "baseUrl", "name": "provider", "provider_type": "provider",
            "options": "provider", "extra_headers": "provider"}


@dataclass(frozen=True)
class SectionIn:
    """One section as sent (``None``: not sent)."""

    section: str  # "llm" or "embeddings"
    provider: str | None
    model: str | None
    model_sent: bool
    api_key: str | None
    base_url: str | None

    def field(self, name: str) -> str:
        return f"settings.{self.section}.{name}"


def section_in(section: str, data: dict[str, Any]) -> SectionIn:
    return SectionIn(section=section, provider=(data.get("provider") or "").strip() or None,
                     model=(data.get("model") or "").strip() or None, model_sent="model" in data,
                     api_key=data.get("apiKey") or None, base_url=data.get("baseUrl"))


def _types_text() -> str:
    return ", ".join(t for t in ProviderType.values)


def _service_error(exc: TollgateError, part: SectionIn) -> InvalidInput:
    """An error of the provider services, said about the dialect's fields."""
    field = part.field(_SENT_AS.get(exc.field or "", "provider"))
    return InvalidInput(f"{field}: {exc.message}", field=field)


def _own_provider(*, tenant: Tenant, part: SectionIn, actor: Principal) -> tuple[Provider, bool]:
    """The tenant's own provider of ``part.provider`` with the key (and base URL) sent, created when
    it has none; and whether its credentials or URL changed (a sync is then queued)."""
    provider = provider_find(tenant=tenant, name=part.provider, own_only=True)
    data: dict[str, Any] = {}
    if part.api_key is not None:
        data["api_key"] = part.api_key
    if part.base_url is not None:
        data["base_url"] = part.base_url
    try:
        if provider is not None:
            changed = (data.get("api_key", provider.api_key) != provider.api_key
                       or ("base_url" in data and data["base_url"].rstrip("/") != provider.base_url.rstrip("/")))
            return (provider_update(provider=provider, data=data, actor=actor) if changed else provider), changed
        if part.provider in ProviderType.values:
            kind = {"provider_type": part.provider}
        elif preset_get(part.provider) is not None:  # an OpenAI-compatible service by name: groq, mistral, …
            kind = {"preset": preset_get(part.provider).name}
        else:
            raise InvalidInput(
                f"{part.field('provider')}: '{part.provider}' is neither a provider type ({_types_text()}), a "
                f"preset ({', '.join(preset_names())}) nor one of this tenant's providers; to create one, name its "
                "type or preset.", field=part.field("provider"))
        taken = set(Provider.objects.filter(owner=tenant).values_list("name", flat=True))
        name = next(n for n in (part.provider, *(f"{part.provider}-{i}" for i in range(2, 100))) if n not in taken)
        provider = provider_create(owner=tenant, data={"name": name, **kind, **data}, actor=actor)
        return provider, True
    except InvalidInput as exc:
        if exc.field and exc.field.startswith("settings."):
            raise
        raise _service_error(exc, part) from None


def provider_for_section(*, tenant: Tenant, part: SectionIn, actor: Principal) -> tuple[Provider, bool]:
    """The provider a section names: with ``apiKey`` (or ``baseUrl``) the tenant's own, created or
    updated; without, one already there (the tenant's, else the platform's); a keyless type
    (ollama, mock) is created when there is none. Returns it and whether it needs a sync."""
    if part.api_key is not None or part.base_url is not None:
        return _own_provider(tenant=tenant, part=part, actor=actor)
    provider = provider_find(tenant=tenant, name=part.provider)
    if provider is not None:
        return provider, False
    if part.provider in KEYLESS_TYPES:
        return _own_provider(tenant=tenant, part=part, actor=actor)
    if part.provider in ProviderType.values or preset_get(part.provider) is not None:
        label = ProviderType(part.provider).label if part.provider in ProviderType.values else (
            preset_get(part.provider).display_name)
        raise InvalidInput(
            f"{part.field('apiKey')}: neither this tenant nor the platform has a provider of type '{part.provider}'. "
            f"Send {part.field('apiKey')} (your {label} key) to create the tenant's own, or ask Tollgate staff to "
            "add a platform one.", field=part.field("apiKey"))
    names = sorted(set(Provider.objects.filter(Q(owner=tenant) | Q(owner__isnull=True)).values_list("name", flat=True)))
    raise InvalidInput(
        f"{part.field('provider')}: unknown provider '{part.provider}'; use a provider type ({_types_text()}) or "
        f"the name of one of this tenant's providers ({', '.join(names) or 'none yet'}).",
        field=part.field("provider"))


def _model_ids(provider: Provider, mode: str, limit: int = 20) -> str:
    ids = list(ProviderModel.objects.filter(provider=provider, mode=mode, enabled=True, stale=False)
               .order_by("model_id").values_list("model_id", flat=True)[:limit + 1])
    more = ", …" if len(ids) > limit else ""
    return (", ".join(ids[:limit]) + more) or "none"


def model_for_section(*, tenant: Tenant, provider: Provider, part: SectionIn, actor: Principal) -> str:
    """``part.model`` on ``provider`` made usable by the tenant; its ``provider:model`` id. A model the
    tenant's own provider has not listed yet (never synced, or its sync failed) is added, priced
    from the catalog like a synced one; the next sync keeps it only if the provider lists it."""
    _, mode = SECTIONS[part.section]
    model_id = part.model.removeprefix(f"{provider.name}:")
    field = part.field("model")
    row = ProviderModel.objects.filter(provider=provider, model_id=model_id).first()
    own = provider.owner_id == tenant.pk
    if row is None and own and provider.sync_status != SyncStatus.OK:
        text_check(model_id, field=field, what="model")  # it goes out in the x-tollgate-model header
        entry = entry_from_name(provider, model_id, mode=mode)
        row = ProviderModel.objects.create(provider=provider, model_id=model_id,
                                           **{f: getattr(entry, f) for f in CATALOG_FIELDS})
        audit_record(actor=actor, action="model.add", tenant=tenant, target=f"model:{provider.name}:{model_id}",
                     after={"mode": row.mode, "price_source": row.price_source})
    kind = "an embeddings" if mode == ModelMode.EMBEDDING else "a chat"
    if row is None or row.stale or (not own and not row.enabled):
        raise InvalidInput(
            f"{field}: '{model_id}' is not offered by provider '{provider.name}'; its {kind.split()[1]} models: "
            f"{_model_ids(provider, mode)}.", field=field)
    if row.mode != mode:
        raise InvalidInput(f"{field}: '{model_id}' is not {kind} model; {provider.name}'s {kind.split()[1]} models: "
                           f"{_model_ids(provider, mode)}.", field=field)
    chosen = row.enabled if own else TenantModel.objects.filter(tenant=tenant, provider_model=row,
                                                                 enabled=True).exists()
    if not chosen:
        provider_model_set_enabled(provider_model=row, tenant=tenant, enabled=True, actor=actor)
    return f"{provider.name}:{model_id}"


def _sync_soon(provider: Provider) -> None:
    """Queue a catalog sync of a provider whose key or URL just changed (after commit); beat
    syncs it within a minute anyway (a provider never synced is due)."""
    from providers.tasks import provider_sync_task  # tasks import the sync, which imports services

    def queue():
        try:
            provider_sync_task.delay(provider.pk)
        except QUEUE_DOWN:
            log.warning("provider %s: sync not queued (the queue is unreachable); beat will sync it", provider.pk)

    transaction.on_commit(queue)


def section_apply(*, tenant: Tenant, part: SectionIn, actor: Principal) -> dict[str, Any]:
    """Set up what one section names; the tenant field changes it makes (its default model), for
    tenant_update. A section without ``provider`` is Tollgate's own shape (``model`` as it is)."""
    field, _ = SECTIONS[part.section]
    if part.provider is None:
        if part.api_key is not None or part.base_url is not None:
            sent = "apiKey" if part.api_key is not None else "baseUrl"
            raise InvalidInput(
                f"{part.field(sent)} needs {part.field('provider')}: the provider type it is for "
                f"({_types_text()}) or the name of one of this tenant's providers.", field=part.field("provider"))
        return {field: part.model or ""} if part.model_sent else {}
    provider, changed = provider_for_section(tenant=tenant, part=part, actor=actor)
    if changed:
        _sync_soon(provider)
    if not part.model_sent:
        return {}
    if part.model is None:
        return {field: ""}
    return {field: model_for_section(tenant=tenant, provider=provider, part=part, actor=actor)}


# --- reading back -------------------------------------------------------------------------------


def default_provider(*, tenant: Tenant, model: str) -> Provider | None:
    """The provider a ``provider:model`` default names (the tenant's own before the platform's of
    the same name, as /v1 resolves it); None for an alias, a bare id or nothing."""
    name, sep, _ = model.partition(":")
    if not sep:
        return None
    found = Provider.objects.filter(Q(owner=tenant) | Q(owner__isnull=True), name=name)
    return sorted(found, key=lambda p: p.owner_id is None)[0] if found else None


def section_view(*, tenant: Tenant, model: str) -> dict[str, Any]:
    """``provider`` and ``apiKey`` of a section, for GET: the provider its default names and that
    provider's key masked (only a tenant's own: a platform provider's key is not the tenant's)."""
    provider = default_provider(tenant=tenant, model=model)
    if provider is None:
        return {"provider": None, "apiKey": None}
    own = provider.owner_id == tenant.pk
    return {"provider": provider.name, "apiKey": (mask(provider.api_key) or None) if own else None}


# --- the platform's defaults for new tenants ------------------------------------------------------


def tenant_platform_defaults(*, tenant: Tenant, actor: Principal) -> None:
    """A step of tenant_create (registered in providers/apps.py): the default model from
    LLM_PROVIDER + <PROVIDER>_MODEL and the default embeddings model from EMBEDDINGS_PROVIDER +
    EMBEDDINGS_MODEL, each on the platform provider of that name (else type), enabled for the new
    tenant. A provider or model the platform does not have is logged and skipped: the tenant is
    created without that default."""
    changes: dict[str, Any] = {}
    for section, name, model in (("llm", settings.LLM_PROVIDER, settings.LLM_MODEL),
                                 ("embeddings", settings.EMBEDDINGS_PROVIDER, settings.EMBEDDINGS_MODEL)):
        if not name or not model:
            continue
        part = SectionIn(section=section, provider=name, model=model, model_sent=True, api_key=None, base_url=None)
        provider = Provider.objects.filter(owner__isnull=True, name=name).first() or next(
            iter(sorted(Provider.objects.filter(owner__isnull=True, provider_type=name),
                        key=lambda p: (p.name != name, -p.priority, p.pk))), None)
        if provider is None:
            log.warning("new tenant %s: no platform provider '%s' (run manage.py discover_providers); no default "
                        "%s model", tenant.slug, name, section)
            continue
        try:
            with transaction.atomic():
                changes[SECTIONS[section][0]] = model_for_section(tenant=tenant, provider=provider, part=part,
                                                                  actor=actor)
        except InvalidInput as exc:
            log.warning("new tenant %s: no default %s model: %s", tenant.slug, section, exc.message)
    if changes:
        tenant_update(tenant=tenant, changes=changes, actor=actor)
