"""Writes for providers and their model catalogs."""

import logging
from collections.abc import Collection
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone

from core.errors import Conflict, InvalidInput
from core.net import UnsafeURL, UpstreamUnreachable, check_url
from core.validation import control_character, header_value_check, headers_check, text_check
from providers.adapters.credentials import (
    ENTRA_CLIENT,
    CredentialError,
    looks_like_service_account,
    service_account_parse,
    token_source,
)
from providers.adapters.sigv4 import KEY_FORMAT, aws_credentials
from providers.base_urls import (
    bedrock_runtime_url,
    detect_provider_type,
    gemini_base_url,
    normalize_base_url,
    vertex_base_url,
)
from providers.catalog import CATALOG_FIELDS, PRICE_FIELDS, CatalogEntry, entry_from_name
from providers.crypto import mask
from providers.default_models import (
    HOW_TO_CHANGE,
    MODES,
    DefaultRef,
    defaults_lost,
    defaults_lost_refusal,
    defaults_naming,
)
from providers.models import (
    MAX_PRICE,
    PRICE_MAX_MESSAGE,
    AliasTarget,
    ModelAlias,
    ModelMode,
    PriceSource,
    Provider,
    ProviderModel,
    ProviderType,
    RoutingStrategy,
    SyncStatus,
    TenantModel,
)
from providers.options import options_clean
from providers.presets import Preset, preset_get, preset_names
from providers.selectors import models_available, names_usable
from tenants.access import SYSTEM, Principal
from tenants.config_version import config_changed
from tenants.models import Project, Tenant
from tenants.services import audit_record

log = logging.getLogger(__name__)
MAX_MODEL_ID = ProviderModel._meta.get_field("model_id").max_length

# Fields a caller may set, besides name / provider_type / base_url / secrets.
PROVIDER_PLAIN_FIELDS = (
    "display_name", "enabled", "priority", "timeout_seconds", "max_retries", "auto_sync",
    "sync_interval_minutes",
)


def provider_audit_view(provider: Provider) -> dict[str, Any]:
    """What the audit trail keeps of a provider: everything but secrets, which are masked."""
    return {
        "name": provider.name,
        "provider_type": provider.provider_type,
        "preset": (provider.options or {}).get("preset"),
        "base_url": provider.base_url,
        "api_key": mask(provider.api_key) or None,
        "extra_headers": sorted(provider.extra_headers or {}),
        "options": provider.options or {},
        **{f: getattr(provider, f) for f in PROVIDER_PLAIN_FIELDS},
    }


def provider_credentials_check(*, api_key: str | None = None, extra_headers: Any = None) -> None:
    """What a provider sends upstream besides the request: its key (in an Authorization or
    x-api-key header) and its extra headers. For saves and for connection tests alike."""
    if api_key and looks_like_service_account(api_key):
        try:  # a JSON key signs token requests; it is not sent in a header
            service_account_parse(api_key)
        except CredentialError as exc:
            raise InvalidInput(str(exc), field="api_key") from None
    elif api_key:
        header_value_check(api_key, field="api_key", what="api_key")
    if extra_headers:
        headers_check(extra_headers, field="extra_headers")


def provider_key_format_check(*, provider_type: str, options: dict[str, Any], api_key: str | None,
                              base_url: str) -> None:
    """A key in the form its provider type needs: a bedrock provider signing with SigV4 holds an
    AWS access key pair (providers/adapters/sigv4.py); a service account's JSON key is a Vertex AI
    provider's (it mints tokens: providers/adapters/credentials.py)."""
    source = token_source(provider_type, api_key or "", options, base_url)
    if source is not None and source.token_url:
        try:  # the credential goes there: the same address policy as a base URL
            base_url_vet(source.token_url)
        except UnsafeURL as exc:
            raise InvalidInput(f"Access tokens would be requested from {source.token_url}: {exc.message}",
                               field="options" if source.kind == ENTRA_CLIENT else "api_key") from None
    if api_key and looks_like_service_account(api_key) and source is None:
        raise InvalidInput(
            "A service account's JSON key is for a Vertex AI provider (provider_type gemini with options.auth "
            "'vertex'), which mints access tokens with it; other providers take their API key as it is.",
            field="api_key",
        )
    if (api_key and provider_type == ProviderType.BEDROCK and options.get("auth", "sigv4") == "sigv4"
            and aws_credentials(api_key) is None):
        raise InvalidInput(
            f"A Bedrock provider signing with SigV4 takes its api_key as {KEY_FORMAT}; for a Bedrock API key "
            'set options.auth to "bearer".',
            field="api_key",
        )


def base_url_vet(url: str) -> None:
    """Refuse unsafe destinations when saving. A name that does not resolve right now is
    accepted: it cannot be reached either, and every connection is vetted again at connect
    time, so a later DNS answer pointing somewhere unsafe is still refused."""
    if not url:
        return
    try:
        check_url(url)
    except UpstreamUnreachable:
        pass


def _owner_label(owner: Tenant | None) -> str:
    return "the platform" if owner is None else f"tenant '{owner.slug}'"


def preset_named(data: dict[str, Any]) -> Preset | None:
    """The preset ``data`` names (its ``preset``), or None when it names none; an unknown name or
    a provider type other than openai_compatible is an InvalidInput listing what is possible."""
    name = data.get("preset")
    if not name:
        return None
    preset = preset_get(name)
    if preset is None:
        raise InvalidInput(f"Unknown preset '{name}'; use one of {', '.join(preset_names())}.", field="preset")
    if data.get("provider_type") not in (None, "", ProviderType.OPENAI_COMPATIBLE):
        raise InvalidInput(
            f"Preset '{preset.name}' is an {ProviderType.OPENAI_COMPATIBLE.label} service; leave provider_type "
            f"out or set it to {ProviderType.OPENAI_COMPATIBLE.value}.",
            field="provider_type",
        )
    return preset


def _provider_target(*, data: dict[str, Any], provider: Provider | None) -> tuple[str, str]:
    """The provider type and the normalized, vetted base URL that ``data`` asks for (a preset's
    own base URL when it names a preset and no URL); on a change (``provider`` given) the
    provider's own where ``data`` names none of them."""
    preset = preset_named(data)
    if preset is not None:
        base_url = normalize_base_url((data.get("base_url") or "").strip(), ProviderType.OPENAI_COMPATIBLE,
                                      preset=preset)
        base_url_vet(base_url)
        return ProviderType.OPENAI_COMPATIBLE.value, base_url
    follows = provider is not None and _vertex_url_follows(data=data, provider=provider)
    region = _region(data=data, provider=provider)
    keeps = provider is not None and "base_url" not in data and "provider_type" not in data
    if keeps and not (provider.provider_type == ProviderType.GEMINI and "options" in data):
        saved_region = (provider.options or {}).get("region")
        if (provider.provider_type == ProviderType.BEDROCK and region != saved_region
                and provider.base_url == bedrock_runtime_url(saved_region)):
            # the region's default endpoint follows the region
            base_url = normalize_base_url("", provider.provider_type, region=region)
            base_url_vet(base_url)
            return provider.provider_type, base_url
        return provider.provider_type, provider.base_url  # (a gemini URL is checked against new options)
    if provider is None:
        base_url = (data.get("base_url") or "").strip()
        provider_type = data.get("provider_type") or (
            detect_provider_type(base_url) if base_url else "")
        if not provider_type:
            raise InvalidInput("Give a base_url or a provider_type.", field="base_url")
    else:
        base_url = (data.get("base_url", "" if follows else provider.base_url) or "").strip()
        provider_type = data.get("provider_type") or provider.provider_type
    if provider_type not in ProviderType.values:
        raise InvalidInput(
            f"Unknown provider type '{provider_type}'; use one of "
            f"{', '.join(ProviderType.values)}.",
            field="provider_type",
        )
    if provider_type == ProviderType.GEMINI:  # Vertex AI's root may come from options.project / location
        base_url = gemini_base_url(base_url, _options_for(data=data, provider=provider, provider_type=provider_type))
    else:
        base_url = normalize_base_url(base_url, provider_type, region=region)
    base_url_vet(base_url)
    return provider_type, base_url


def _vertex_url_follows(*, data: dict[str, Any], provider: Provider) -> bool:
    """Whether a change that sends a gemini provider's ``options.project`` / ``location`` (with
    ``auth`` vertex, and no base_url) rebuilds its base URL from them: when the saved URL was
    built from the saved options, or is not a Vertex AI one (the Gemini API's, going Vertex)."""
    sent = data.get("options")
    if (provider.provider_type != ProviderType.GEMINI or "base_url" in data or not isinstance(sent, dict)
            or not ({"project", "location"} & set(sent))):
        return False
    saved = provider.options or {}
    if {**saved, **sent}.get("auth") != "vertex":
        return False
    url = _saved_url(provider)
    if "/projects/" not in url:
        return True
    try:
        return url == vertex_base_url(str(saved.get("project") or ""), str(saved.get("location") or ""))
    except InvalidInput:
        return False


def _region(*, data: dict[str, Any], provider: Provider | None) -> str:
    """The AWS region (a bedrock provider's ``options.region``) that ``data`` sends, else the saved one."""
    sent = data.get("options")
    region = sent.get("region") if isinstance(sent, dict) else None
    if region is None and provider is not None:
        region = (provider.options or {}).get("region")
    return region if isinstance(region, str) else ""


def _options_for(*, data: dict[str, Any], provider: Provider | None, provider_type: str) -> dict[str, Any]:
    """The options a create or update leaves the provider with, checked for its type: on a change
    that keeps the type, the keys sent replace those keys of the saved options (sending
    ``{"auth": "entra"}`` keeps the deployments); else those sent, else the saved ones, else the
    type's defaults."""
    sent = data.get("options")
    if provider is not None and provider.provider_type == provider_type and isinstance(sent, dict):
        return options_clean(provider_type, {**(provider.options or {}), **sent})
    if "options" in data:
        return options_clean(provider_type, sent)
    if provider is not None and provider.provider_type == provider_type:
        return provider.options or {}
    return options_clean(provider_type, {})


def _saved_url(provider: Provider) -> str:
    """The provider's base URL as it would be saved today (older rows may predate normalizing)."""
    try:
        return normalize_base_url(provider.base_url, provider.provider_type)
    except InvalidInput:
        return provider.base_url


def _unsent_secrets(*, provider: Provider, base_url: str, sent: Collection[str]) -> list[str]:
    """The saved secrets (``api_key``, ``extra_headers``) not in ``sent`` that would go to
    ``base_url``, another URL than the one they were saved for. A provider's secrets only ever
    go to the URL they were given with, so whoever points it elsewhere must know them."""
    if base_url == _saved_url(provider):
        return []
    return [f for f in ("api_key", "extra_headers") if getattr(provider, f) and f not in sent]


def _base_url_change_check(*, provider: Provider, base_url: str, data: dict[str, Any]) -> None:
    unsent = _unsent_secrets(provider=provider, base_url=base_url, sent=data)
    if unsent:
        fields = " and ".join(unsent)
        raise InvalidInput(
            f"base_url changes to '{base_url}', where the saved {fields} would be sent: send "
            f"{fields} again with the new base_url (an empty value removes "
            f"{'it' if len(unsent) == 1 else 'them'}).",
            field=unsent[0],
        )


def _token_url_change_check(*, provider: Provider, provider_type: str, options: dict[str, Any], base_url: str,
                            data: dict[str, Any]) -> None:
    """A saved key that would start going to another token endpoint (a new options.authority or
    tenant_id, or auth switched to 'entra-client') must be sent again, as with a new base_url."""
    if "api_key" in data or not provider.api_key:
        return
    before = token_source(provider.provider_type, provider.api_key, provider.options or {}, provider.base_url)
    after = token_source(provider_type, provider.api_key, options, base_url)
    if after is not None and after.token_url and (before is None or before.token_url != after.token_url):
        raise InvalidInput(
            f"With this change the saved api_key would be sent to {after.token_url} to get access tokens: send "
            "api_key again with it (the client secret, for options.auth 'entra-client').",
            field="api_key",
        )


def provider_validate(
    *, owner: Tenant | None, data: dict[str, Any], provider: Provider | None = None
) -> None:
    """Check ``data`` as provider_create (``provider`` None) or provider_update would, without
    writing, so a form can show the error next to its field."""
    provider_type, base_url = _provider_target(data=data, provider=provider)
    options = _options_for(data=data, provider=provider, provider_type=provider_type)
    provider_key_format_check(provider_type=provider_type, options=options, api_key=data.get("api_key"),
                              base_url=base_url)
    if "name" in data:
        text_check(data["name"], field="name", what="name")  # model ids go out as <name>:<model>
    provider_credentials_check(api_key=data.get("api_key"), extra_headers=data.get("extra_headers"))
    if provider is not None:
        _base_url_change_check(provider=provider, base_url=base_url, data=data)
        _token_url_change_check(provider=provider, provider_type=provider_type, options=options, base_url=base_url,
                                data=data)
    name = data.get("name", provider.name if provider else "")
    taken = Provider.objects.filter(owner=owner, name=name)
    if provider is not None:
        taken = taken.exclude(pk=provider.pk)
    if taken.exists():
        raise Conflict(f"{_owner_label(owner).capitalize()} already has a provider named '{name}'.",
                       field="name")


def provider_settings_normalized(*, data: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The provider type, base URL and options that provider_create would save for ``data``
    (a preset, a detected type, the type's default URL and options filled in), without writing:
    for comparing a wanted provider with a saved one (tenantconfig/)."""
    preset = preset_named(data)
    provider_type, base_url = _provider_target(data=data, provider=None)
    options = _options_for(data=data, provider=None, provider_type=provider_type)
    if preset is not None:
        options = {**options, "preset": preset.name}
    return provider_type, base_url, options


def provider_probe(
    *, saved: Provider | None, base_url: str, provider_type: str, api_key: str,
    extra_headers: dict[str, str], timeout_seconds: float, preset: str = "",
    options: dict[str, Any] | None = None,
) -> Provider:
    """An unsaved provider for a connection test of what a form holds. A saved provider lends
    its key and headers when none are typed, but only to its own base URL: to test another
    URL they must be typed (as provider_update asks for them with a new base URL)."""
    base_url = base_url.strip()
    named = preset_named({"preset": preset, "provider_type": provider_type})
    if named is not None:
        provider_type = ProviderType.OPENAI_COMPATIBLE
    elif not provider_type:
        fallback = saved.provider_type if saved else ProviderType.OPENAI
        provider_type = detect_provider_type(base_url) if base_url else fallback
    if provider_type == ProviderType.GEMINI:
        typed = options if options is not None else (
            saved.options if saved is not None and saved.provider_type == provider_type else None)
        base_url = gemini_base_url(base_url, options_clean(provider_type, typed))
    else:
        region_from = options if options is not None else (saved.options if saved is not None else None)
        base_url = normalize_base_url(base_url, provider_type, preset=named,
                                      region=_region(data={"options": region_from}, provider=None))
    base_url_vet(base_url)
    provider_credentials_check(api_key=api_key, extra_headers=extra_headers)
    if saved is not None:
        typed = [f for f, value in (("api_key", api_key), ("extra_headers", extra_headers))
                 if value]
        unsent = _unsent_secrets(provider=saved, base_url=base_url, sent=typed)
        if unsent:
            what = " and the ".join(
                {"api_key": "key", "extra_headers": "extra headers"}[f] for f in unsent)
            raise InvalidInput(
                f"The saved {what} {'is' if unsent == ['api_key'] else 'are'} only sent to this "
                f"provider's saved base URL ({saved.base_url}); to test {base_url}, type the "
                f"{what} again.",
                field=unsent[0],
            )
        api_key = api_key or saved.api_key
        extra_headers = extra_headers or saved.extra_headers
    if options is None and saved is not None and saved.provider_type == provider_type:
        options = saved.options
    options = options_clean(provider_type, options)
    return Provider(
        name=saved.name if saved else "test", display_name=saved.display_name if saved else "",
        provider_type=provider_type, base_url=base_url, api_key=api_key,
        extra_headers=extra_headers, timeout_seconds=timeout_seconds,
        options={**options, **_probe_options(saved=saved, base_url=base_url, preset=named)},
    )


def _probe_options(*, saved: Provider | None, base_url: str, preset: Preset | None) -> dict[str, Any]:
    """A probe's options: the saved provider's, whose preset holds for its own base URL only (as
    provider_update drops it with a new URL), and the preset the form names."""
    options = dict(saved.options or {}) if saved is not None else {}
    if preset is not None:
        options["preset"] = preset.name
    elif saved is not None and base_url != saved.base_url:
        options.pop("preset", None)
    return options


def provider_create(*, owner: Tenant | None, data: dict[str, Any], actor: Principal = SYSTEM) -> Provider:
    """A provider owned by ``owner`` (None = platform-wide). ``data`` is validated input:
    name, base_url, provider_type (detected from the URL when missing), api_key,
    extra_headers and PROVIDER_PLAIN_FIELDS, or a ``preset`` (providers/presets.py), which fills
    the type, the base URL, the name and the display name that are not given, and is kept in
    ``options`` so that the provider keeps its preset's prices and catalog quirks behind any URL.
    A timeout or retry count not given is the platform's (LLM_TIMEOUT, LLM_MAX_RETRIES), else the
    model's default."""
    preset = preset_named(data)
    if preset is not None:
        data = {"name": preset.name, "display_name": preset.display_name, **data}
    provider_type, base_url = _provider_target(data=data, provider=None)
    if not data.get("name"):
        raise InvalidInput("Give the provider a name (or a preset, whose name it takes).", field="name")
    options = _options_for(data=data, provider=None, provider_type=provider_type)
    if preset is not None:
        options = {**options, "preset": preset.name}
    provider_key_format_check(provider_type=provider_type, options=options, api_key=data.get("api_key"),
                              base_url=base_url)
    text_check(data["name"], field="name", what="name")  # model ids go out as <name>:<model>
    provider_credentials_check(api_key=data.get("api_key"), extra_headers=data.get("extra_headers"))
    provider = Provider(
        owner=owner,
        name=data["name"],
        provider_type=provider_type,
        base_url=base_url,
        options=options,
        api_key=data.get("api_key") or "",
        extra_headers=data.get("extra_headers") or {},
    )
    # The platform's defaults (LLM_TIMEOUT, LLM_MAX_RETRIES) for a provider created without its own.
    platform = {"timeout_seconds": settings.LLM_TIMEOUT_SECONDS, "max_retries": settings.LLM_MAX_RETRIES}
    for field in PROVIDER_PLAIN_FIELDS:
        if field in data:
            setattr(provider, field, data[field])
        elif platform.get(field) is not None:
            setattr(provider, field, platform[field])
    provider.display_name = provider.display_name or data["name"]
    try:
        with transaction.atomic():
            provider.save()
            audit_record(actor=actor, action="provider.create", tenant=owner,
                         target=f"provider:{provider.name}", after=provider_audit_view(provider))
    except IntegrityError as exc:
        raise Conflict(
            f"{_owner_label(owner).capitalize()} already has a provider named '{data['name']}'.", field="name"
        ) from exc
    return provider


def provider_update(*, provider: Provider, data: dict[str, Any], actor: Principal) -> Provider:
    """Change what ``data`` holds. ``api_key``: a string replaces the key, "" removes it, absent
    keeps it. The same for ``extra_headers``. A ``preset`` sets it (and its base URL unless one is
    given); a new base URL without one drops the saved preset. A new base URL needs the saved key and headers
    sent again (or removed): they are never sent to a URL other than the one they came with."""
    if "name" in data:
        text_check(data["name"], field="name", what="name")
    provider_credentials_check(api_key=data.get("api_key"), extra_headers=data.get("extra_headers"))
    with transaction.atomic():
        locked = Provider.objects.select_for_update().get(pk=provider.pk)
        before = provider_audit_view(locked)
        provider_type, base_url = _provider_target(data=data, provider=locked)
        options = _options_for(data=data, provider=locked, provider_type=provider_type)
        provider_key_format_check(provider_type=provider_type, options=options, api_key=data.get("api_key"),
                                  base_url=base_url)
        _base_url_change_check(provider=locked, base_url=base_url, data=data)
        _token_url_change_check(provider=locked, provider_type=provider_type, options=options, base_url=base_url,
                                data=data)
        if locked.enabled and data.get("enabled") is False:
            provider_defaults_check(provider=locked, doing="disabling it")
        if "name" in data:
            locked.name = data["name"]
        url_changed = base_url != locked.base_url
        locked.provider_type, locked.base_url, locked.options = provider_type, base_url, options
        preset = preset_named(data)
        if preset is not None or url_changed:  # a new URL without a preset: the URL says which it is
            locked.options = {k: v for k, v in (locked.options or {}).items() if k != "preset"}
            if preset is not None:
                locked.options["preset"] = preset.name
        if "api_key" in data:
            locked.api_key = data["api_key"] or ""
        if "extra_headers" in data:
            locked.extra_headers = data["extra_headers"] or {}
        for field in PROVIDER_PLAIN_FIELDS:
            if field in data:
                setattr(locked, field, data[field])
        after = provider_audit_view(locked)
        if before == after and "api_key" not in data and "extra_headers" not in data:
            return locked
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError as exc:
            raise Conflict(
                f"{_owner_label(locked.owner).capitalize()} already has a provider named '{locked.name}'.",
                field="name",
            ) from exc
        changed = {k for k in after if before[k] != after[k]}
        if "api_key" in data:
            changed.add("api_key")
        audit_record(
            actor=actor, action="provider.update", tenant=locked.owner, target=f"provider:{locked.name}",
            before={k: before[k] for k in sorted(changed)}, after={k: after[k] for k in sorted(changed)},
        )
    return locked


def provider_defaults_check(*, provider: Provider, doing: str) -> None:
    """Refuse (409, naming them) disabling or deleting ``provider`` while a default model names one of
    its models directly and would then name nothing (providers.default_models)."""
    lost = defaults_lost(models=ProviderModel.objects.filter(provider=provider), tenant=provider.owner)
    if lost:
        raise defaults_lost_refusal(f"Provider '{provider.name}'", lost, doing=doing, field="enabled")


def provider_delete(*, provider: Provider, actor: Principal) -> None:
    """Delete a provider and its models, unless the ledger points at them (usage history is
    never orphaned, so such a provider can only be disabled) or a default model names one of them
    (provider_defaults_check)."""
    try:
        with transaction.atomic():
            provider_defaults_check(provider=provider, doing="deleting it")
            audit_record(actor=actor, action="provider.delete", tenant=provider.owner,
                         target=f"provider:{provider.name}", before=provider_audit_view(provider))
            provider.delete()
    except ProtectedError as exc:
        raise Conflict(
            f"Provider '{provider.name}' has usage records, which keep pointing at it; disable it "
            "instead (PUT {\"enabled\": false}).",
        ) from exc


def provider_get_or_create(
    *, name: str, provider_type: str, owner: Tenant | None = None, base_url: str = "",
    display_name: str = "", actor: Principal = SYSTEM,
) -> tuple[Provider, bool]:
    existing = Provider.objects.filter(owner=owner, name=name).first()
    if existing is not None:
        if existing.provider_type != provider_type:
            raise Conflict(f"Provider '{name}' already exists with type {existing.provider_type}.", field="name")
        return existing, False
    data = {"name": name, "provider_type": provider_type, "base_url": base_url, "display_name": display_name}
    return provider_create(owner=owner, data=data, actor=actor), True


def provider_model_set_enabled(
    *, provider_model: ProviderModel, tenant: Tenant | None, enabled: bool, actor: Principal
) -> None:
    """For a tenant and a platform model: the tenant's own choice. Otherwise (the tenant's own
    provider, or staff on a platform provider) the model itself is switched. Disabling a model a
    default model names directly is refused while that default would then name nothing."""
    with transaction.atomic():
        if not enabled:
            provider_model_defaults_check(provider_model=provider_model, tenant=tenant, doing="disabling it")
        if tenant is not None and provider_model.provider.owner_id is None:
            TenantModel.objects.update_or_create(
                tenant=tenant, provider_model=provider_model, defaults={"enabled": enabled}
            )
        else:
            if enabled and provider_model.stale:
                raise InvalidInput(
                    f"Model '{provider_model.model_id}' is no longer offered by "
                    f"'{provider_model.provider.name}' (stale); it cannot be enabled.",
                    field="enabled",
                )
            ProviderModel.objects.filter(pk=provider_model.pk).update(enabled=enabled, updated_at=timezone.now())
            config_changed(tenant_id=provider_model.provider.owner_id)
        audit_record(
            actor=actor, action="model.enable" if enabled else "model.disable", tenant=tenant,
            target=f"model:{provider_model.provider.name}:{provider_model.model_id}",
        )


def provider_model_defaults_check(*, provider_model: ProviderModel, tenant: Tenant | None, doing: str) -> None:
    """Refuse (409, naming them) disabling or deleting ``provider_model`` (for ``tenant``: its own
    choice of a platform model) while a default model names it directly and would then name nothing."""
    owner = provider_model.provider.owner
    scope = tenant if tenant is not None and owner is None else owner
    lost = defaults_lost(models=ProviderModel.objects.filter(pk=provider_model.pk), tenant=scope)
    if lost:
        raise defaults_lost_refusal(f"Model '{provider_model.provider.name}:{provider_model.model_id}'", lost,
                                    doing=doing, field="enabled")


def provider_models_declare(*, provider: Provider, model_ids: Collection[str], actor: Principal) -> list[str]:
    """Rows for the models of ``provider`` named in ``model_ids`` that it has no row for yet, as a
    sync that reported only their names would make them (capabilities from name patterns,
    prices from the genai-prices catalog): a configuration file names the models its aliases
    use before the provider was ever synced. Models already there are left alone; the next sync
    fills in what the provider reports (and marks stale what it no longer offers). The ids added."""
    wanted = []
    for model_id in dict.fromkeys(model_ids):
        text_check(model_id, field="model_id", what="model id")
        if not 0 < len(model_id) <= MAX_MODEL_ID:
            raise InvalidInput(f"Model id '{model_id[:40]}…' is longer than {MAX_MODEL_ID} characters.",
                               field="model_id")
        wanted.append(model_id)
    with transaction.atomic():
        have = set(ProviderModel.objects.filter(provider=provider, model_id__in=wanted)
                   .values_list("model_id", flat=True))
        added = [m for m in wanted if m not in have]
        if not added:
            return []
        entries = [_price_bounded(provider, entry_from_name(provider, m)) for m in added]
        ProviderModel.objects.bulk_create(
            [ProviderModel(provider=provider, model_id=e.model_id, **_values(e)) for e in entries])
        config_changed(tenant_id=provider.owner_id)
        audit_record(actor=actor, action="model.declare", tenant=provider.owner, target=f"provider:{provider.name}",
                     after={"models": added})
    return added


def provider_model_set_price(
    *, provider_model: ProviderModel, prices: dict[str, Decimal | None] | None, actor: Principal,
    tenant: Tenant | None,
) -> ProviderModel:
    """A manual price (USD per million tokens) that later syncs keep; ``None`` drops it so the
    next sync fills the price from the provider or the catalog again."""
    for name, price in (prices or {}).items():
        if price is not None and not 0 <= price <= MAX_PRICE:
            raise InvalidInput(f"{name}: {PRICE_MAX_MESSAGE if price > 0 else 'A price cannot be negative.'}",
                               field=name)
    with transaction.atomic():
        locked = ProviderModel.objects.select_for_update().get(pk=provider_model.pk)
        before = {f: str(getattr(locked, f)) for f in PRICE_FIELDS}
        if prices is None:
            locked.price_source = PriceSource.UNKNOWN
            locked.input_price = locked.output_price = locked.cached_input_price = locked.cache_write_price = None
        else:
            locked.input_price = prices["input"]
            locked.output_price = prices["output"]
            locked.cached_input_price = prices.get("cached_input")
            locked.cache_write_price = prices.get("cache_write")
            locked.price_source = PriceSource.MANUAL
        locked.save(update_fields=[*PRICE_FIELDS, "updated_at"])
        audit_record(
            actor=actor, action="model.price", tenant=tenant,
            target=f"model:{locked.provider.name}:{locked.model_id}",
            before=before, after={f: str(getattr(locked, f)) for f in PRICE_FIELDS},
        )
    return locked


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    stale: int
    unchanged: int

    def as_dict(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "stale": self.stale, "unchanged": self.unchanged}


def provider_sync_claim(*, provider: Provider) -> bool:
    """Mark ``provider`` as syncing unless a live sync holds it. One conditional UPDATE, so
    two workers can never both win (a sync older than PROVIDER_SYNC_STALE_SECONDS is
    presumed dead and may be taken over)."""
    now = timezone.now()
    stale_before = now - timezone.timedelta(seconds=settings.PROVIDER_SYNC_STALE_SECONDS)
    claimed = (
        Provider.objects.filter(pk=provider.pk)
        .filter(~Q(sync_status=SyncStatus.RUNNING) | Q(sync_started_at__lt=stale_before)
                | Q(sync_started_at__isnull=True))
        .update(sync_status=SyncStatus.RUNNING, sync_started_at=now)
    )
    return claimed == 1


def provider_sync_finish(*, provider: Provider, error: str = "") -> None:
    Provider.objects.filter(pk=provider.pk).update(
        sync_status=SyncStatus.ERROR if error else SyncStatus.OK,
        last_sync_at=timezone.now(),
        last_sync_error=error[:2000],
    )


def provider_models_upsert(*, provider: Provider, catalog: list[CatalogEntry]) -> SyncResult:
    """Bring ProviderModel rows in line with ``catalog`` in a bounded number of queries:
    one read, bulk inserts, bulk updates, one stale update. Models that disappeared are
    marked stale and disabled (usage rows keep pointing at them); a manual price survives.
    An id no client could use is left out: empty, over 255 characters, or with a line break or
    other control character (it would break the x-tollgate-model response header)."""
    by_id = {}
    for entry in catalog:
        if 0 < len(entry.model_id) <= MAX_MODEL_ID and not control_character(entry.model_id):
            by_id[entry.model_id] = _price_bounded(provider, entry)
        else:
            log.warning("provider %s: model id %r left out of the catalog", provider.pk,
                        entry.model_id[:300])
    with transaction.atomic():
        existing = {m.model_id: m for m in ProviderModel.objects.filter(provider=provider)}
        to_create, to_update, changed_fields = [], [], set()
        for model_id, entry in by_id.items():
            row = existing.get(model_id)
            if row is None:
                to_create.append(ProviderModel(provider=provider, model_id=model_id, **_values(entry)))
                continue
            changed = _apply(row, entry)
            if changed:
                to_update.append(row)
                changed_fields.update(changed)
        gone = [m.pk for model_id, m in existing.items() if model_id not in by_id and not m.stale]
        if to_create:
            ProviderModel.objects.bulk_create(to_create, batch_size=500, ignore_conflicts=True)
        if to_update:
            ProviderModel.objects.bulk_update(to_update, sorted(changed_fields | {"updated_at"}), batch_size=500)
        if gone:
            ProviderModel.objects.filter(pk__in=gone).update(stale=True, enabled=False, updated_at=timezone.now())
        if to_create or to_update or gone:  # bulk writes send no signals
            config_changed(tenant_id=provider.owner_id)
    return SyncResult(
        added=len(to_create),
        updated=len(to_update),
        stale=len(gone),
        unchanged=len(by_id) - len(to_create) - len(to_update),
    )


def _price_bounded(provider: Provider, entry: CatalogEntry) -> CatalogEntry:
    """A catalog price above MAX_PRICE (or below 0) is not believed: the model's price is
    unknown (its requests are flagged unpriced) until an admin sets one."""
    prices = [getattr(entry, name) for name in PRICE_FIELDS if name != "price_source"]
    if all(price is None or 0 <= price <= MAX_PRICE for price in prices):
        return entry
    log.warning("%s reports prices %s for %s, outside 0..%s USD per million tokens; kept as unknown",
                provider.name, [str(p) for p in prices], entry.model_id, MAX_PRICE)
    return replace(entry, input_price=None, output_price=None, cached_input_price=None, cache_write_price=None,
                   price_source=PriceSource.UNKNOWN)


def _values(entry: CatalogEntry) -> dict:
    return {name: getattr(entry, name) for name in CATALOG_FIELDS}


def _apply(row: ProviderModel, entry: CatalogEntry) -> set[str]:
    changed: set[str] = set()
    keep_price = row.price_source == PriceSource.MANUAL
    for name, value in _values(entry).items():
        if keep_price and name in PRICE_FIELDS:
            continue
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.add(name)
    if row.stale:
        row.stale = False
        row.enabled = True
        changed.update({"stale", "enabled"})
    if changed:
        row.updated_at = timezone.now()
    return changed


# --- aliases -----------------------------------------------------------------------------------

ALIAS_SETTINGS = ("description", "retries", "timeout_seconds", "allowed_fails", "cooldown_seconds", "strategy",
                  "session_affinity", "context_window_fallbacks", "content_policy_fallbacks")
DEPLOYMENT_SETTINGS = ("priority", "weight", "rpm_limit", "tpm_limit")
FALLBACK_FIELDS = ("context_window_fallbacks", "content_policy_fallbacks")


def alias_audit_view(alias: ModelAlias) -> dict[str, Any]:
    targets = [
        {"model": f"{t.provider_model.provider.name}:{t.provider_model.model_id}", "overrides": t.overrides,
         **{f: getattr(t, f) for f in DEPLOYMENT_SETTINGS}}
        for t in alias.targets.select_related("provider_model__provider").order_by("position")
    ]
    return {"name": alias.name, "project": alias.project.slug if alias.project_id else None,
            **{f: getattr(alias, f) for f in ALIAS_SETTINGS}, "targets": targets}


def alias_label(alias: ModelAlias) -> str:
    """How the audit trail names an alias: ``alias:<name>``, ``alias:<project>/<name>`` for a project's."""
    return f"alias:{alias.project.slug}/{alias.name}" if alias.project_id else f"alias:{alias.name}"


def _alias_taken(tenant: Tenant, project: Project | None, name: str) -> Conflict:
    if project is None:
        return Conflict(f"Tenant '{tenant.slug}' already has an alias named '{name}'.", field="name")
    return Conflict(f"Project '{project.slug}' already has an alias named '{name}'.", field="name")


def _alias_project(*, tenant: Tenant, project: Any) -> Project | None:
    if project is not None and (not isinstance(project, Project) or project.tenant_id != tenant.pk):
        raise InvalidInput(f"project must be a project of tenant '{tenant.slug}' (GET /api/projects lists them), "
                           "or empty for a tenant-wide alias.", field="project")
    return project


def _alias_targets_resolve(*, tenant: Tenant, targets: list[dict[str, Any]]) -> list[AliasTarget]:
    """Each target's ``model`` ('provider:model') must be a model this tenant may use; a
    target without a priority gets its position (a plain list stays an ordered chain)."""
    available = {f"{m.provider.name}:{m.model_id}": m for m in models_available(tenant=tenant)}
    resolved = []
    for index, target in enumerate(targets):
        model = available.get(target["model"])
        if model is None:
            names = ", ".join(sorted(available)[:20]) or "none"
            raise InvalidInput(
                f"targets[{index}].model '{target['model']}' is not a model this tenant may use; "
                f"use provider:model, one of: {names}.",
                field=f"targets[{index}].model",
            )
        priority = target.get("priority")
        resolved.append(AliasTarget(
            position=index, provider_model=model, overrides=target.get("overrides") or {},
            priority=index if priority is None else priority, weight=target.get("weight", 1),
            rpm_limit=target.get("rpm_limit"), tpm_limit=target.get("tpm_limit"),
        ))
    return resolved


def _alias_check(*, tenant: Tenant, project: Project | None, name: str, strategy: str,
                 targets: list[AliasTarget], fallbacks: dict[str, list[str]]) -> None:
    """What would make the alias route otherwise than its admin expects: a strategy or weights
    with every deployment alone in its priority group (nothing to choose between), and
    fallbacks that name nothing the alias's keys can call (or the alias itself): a tenant-wide
    alias's fallbacks are tenant-wide aliases or models, a project alias's may also be its
    project's aliases."""
    groups = {t.priority for t in targets}
    if len(groups) == len(targets) > 1 and (strategy != RoutingStrategy.WEIGHTED or
                                             any(t.weight != 1 for t in targets)):
        raise InvalidInput(
            f"Every deployment of '{name}' is alone in its priority group, so its strategy and weights choose "
            "nothing (each group is tried after the one before). Give the deployments that share traffic the same "
            "'priority' (e.g. 0 for all).",
            field="targets",
        )
    if not any(fallbacks.values()):
        return
    usable = names_usable(tenant=tenant, project_id=project.pk if project is not None else None)
    whose = f"of project '{project.slug}' nor a tenant-wide one" if project is not None else "of this tenant"
    for field, names in fallbacks.items():
        for index, other in enumerate(names):
            if other == name:
                raise InvalidInput(f"{field}[{index}]: an alias cannot fall back to itself.",
                                   field=f"{field}[{index}]")
            if usable.modes(other) is None:
                raise InvalidInput(
                    f"{field}[{index}]: '{other}' is neither an alias {whose} nor a model it may use.",
                    field=f"{field}[{index}]",
                )


def _targets_save(alias: ModelAlias, targets: list[AliasTarget]) -> None:
    for target in targets:
        target.alias = alias
    AliasTarget.objects.bulk_create(targets)


def alias_create(*, tenant: Tenant, data: dict[str, Any], actor: Principal) -> ModelAlias:
    """A new alias of ``tenant``; ``data["project"]`` (a Project of the tenant) makes it that
    project's, empty or absent tenant-wide."""
    project = _alias_project(tenant=tenant, project=data.get("project"))
    targets = _alias_targets_resolve(tenant=tenant, targets=data["targets"])
    _alias_check(tenant=tenant, project=project, name=data["name"],
                 strategy=data.get("strategy", RoutingStrategy.WEIGHTED), targets=targets,
                 fallbacks={f: data.get(f, []) for f in FALLBACK_FIELDS})
    try:
        with transaction.atomic():
            alias = ModelAlias.objects.create(
                tenant=tenant, project=project, name=data["name"],
                **{f: data[f] for f in ALIAS_SETTINGS if f in data},
            )
            _targets_save(alias, targets)
            audit_record(actor=actor, action="alias.create", tenant=tenant, target=alias_label(alias),
                         after=alias_audit_view(alias))
    except IntegrityError as exc:
        raise _alias_taken(tenant, project, data["name"]) from exc
    return alias


def alias_update(*, alias: ModelAlias, data: dict[str, Any], actor: Principal) -> ModelAlias:
    """Change an alias; ``data["project"]``, when sent, moves it to that project (None:
    tenant-wide), and its fallbacks are checked again where it now lives."""
    targets = _alias_targets_resolve(tenant=alias.tenant, targets=data["targets"]) if "targets" in data else None
    if "project" in data:
        _alias_project(tenant=alias.tenant, project=data["project"])
    try:
        with transaction.atomic():
            locked = ModelAlias.objects.select_for_update(of=("self",)).select_related("project").get(pk=alias.pk)
            before = alias_audit_view(locked)
            label = alias_label(locked)
            renamed = ("name" in data and data["name"] != locked.name) or "project" in data
            old_name, dependents = locked.name, (alias_dependents(alias=locked) if renamed else [])
            for field in ("name", *ALIAS_SETTINGS):
                if field in data:
                    setattr(locked, field, data[field])
            moved = "project" in data and data["project"] != locked.project
            if "project" in data:
                locked.project = data["project"]
            _alias_check(tenant=locked.tenant, project=locked.project, name=locked.name, strategy=locked.strategy,
                         targets=targets if targets is not None else list(locked.targets.all()),
                         fallbacks={f: getattr(locked, f) for f in FALLBACK_FIELDS if f in data or moved})
            locked.save()
            lost = [d for d in dependents if not _alias_serves(tenant_id=locked.tenant_id, name=old_name, dependent=d)]
            if lost:  # renamed or moved away from a default model that names it
                raise alias_in_use_refusal(old_name, lost, doing="renaming or moving it")
            if targets is not None:
                locked.targets.all().delete()
                _targets_save(locked, targets)
            after = alias_audit_view(locked)
            if before != after:
                audit_record(actor=actor, action="alias.update", tenant=locked.tenant, target=label,
                             before=before, after=after)
    except IntegrityError as exc:
        project = data.get("project", alias.project)
        raise _alias_taken(alias.tenant, project, data.get("name", alias.name)) from exc
    return locked


def alias_dependents(*, alias: ModelAlias) -> list[DefaultRef]:
    """The default models that name ``alias`` and would name nothing without it: the tenant's (a
    tenant-wide alias; its default model and default embeddings model) and the projects' whose keys
    see this alias under that name (a tenant-wide alias for a project without its own of that name;
    a project's alias when no tenant-wide one of that name stands behind it)."""
    tenant = alias.tenant
    found = [ref for ref in defaults_naming(names=[alias.name], tenant=tenant) if ref.project is None]
    projects = Project.objects.filter(tenant_id=alias.tenant_id, default_model=alias.name)
    if alias.project_id is None:
        projects = projects.exclude(pk__in=ModelAlias.objects.filter(
            tenant_id=alias.tenant_id, name=alias.name, project__isnull=False).values("project_id"))
    else:
        found = []
        if ModelAlias.objects.filter(tenant_id=alias.tenant_id, name=alias.name, project__isnull=True).exists():
            projects = projects.none()
        else:
            projects = projects.filter(pk=alias.project_id)
    return found + [DefaultRef(tenant, p, "default_model") for p in projects.order_by("slug")]


def _alias_serves(*, tenant_id: int, name: str, dependent: DefaultRef) -> bool:
    """Whether an alias now answers ``name`` for a dependent of alias_dependents."""
    scope = Q(project__isnull=True)
    if dependent.project is not None:
        scope |= Q(project_id=dependent.project.pk)
    return ModelAlias.objects.filter(scope, tenant_id=tenant_id, name=name).exists()


def alias_in_use_refusal(name: str, dependents: list[DefaultRef], *, doing: str) -> Conflict:
    """The refusal of a change that would leave ``dependents`` (alias_dependents) naming nothing."""
    named = [d.label() for d in dependents]
    them = "it" if len(named) == 1 else "them"
    return Conflict(
        f"Alias '{name}' is still in use as {' and '.join(named)}; {doing} would leave {them} naming nothing. "
        f"Set {them} to another alias or model first ({HOW_TO_CHANGE}), then try again.",
        field="name",
    )


def alias_delete(*, alias: ModelAlias, actor: Principal) -> None:
    """Delete an alias; refused (409, naming them) while a default model needs it."""
    with transaction.atomic():
        alias = ModelAlias.objects.select_for_update(of=("self",)).select_related("project").get(pk=alias.pk)
        dependents = alias_dependents(alias=alias)
        if dependents:
            raise alias_in_use_refusal(alias.name, dependents, doing="deleting it")
        audit_record(actor=actor, action="alias.delete", tenant=alias.tenant, target=alias_label(alias),
                     before=alias_audit_view(alias))
        alias.delete()


# --- a project's default model --------------------------------------------------------------------


def project_default_model_check(*, tenant: Tenant, project: Project | None, name: str) -> None:
    """A project's default model must be something its keys may send as a chat model: a tenant-wide
    alias, one of the project's own (``project`` None: a project being created, which has none
    yet), or a model the tenant may use ("provider:model" or a bare id). InvalidInput naming
    what they may use otherwise. Registered in tenants.services.PROJECT_DEFAULT_MODEL_CHECKS
    (providers/apps.py): the projects' services cannot import this app."""
    usable = names_usable(tenant=tenant, project_id=project.pk if project is not None else None)
    _default_model_check(usable, name, whose="this project's keys", empty="the tenant's default")


def tenant_default_model_check(*, tenant: Tenant, name: str, field: str = "default_model") -> None:
    """The tenant's default model (``field`` default_model) must be something every key may send as
    a chat model, and its default embeddings model (default_embedding_model) as an embeddings model:
    a tenant-wide alias (a project's alias is unknown to the other projects' keys) or a model the
    tenant may use. Registered in tenants.services.TENANT_DEFAULT_MODEL_CHECKS (providers/apps.py)."""
    empty = ("no default: requests must name their model" if field == "default_model" else
             "no default: embeddings requests must name their model")
    _default_model_check(names_usable(tenant=tenant), name, whose="every key of the tenant", empty=empty,
                         field=field)


def _default_model_check(usable, name: str, *, whose: str, empty: str, field: str = "default_model") -> None:
    mode = MODES[field]
    kind, used = (("an embeddings model", "an embeddings request") if mode == ModelMode.EMBEDDING
                  else ("a chat model", "a chat request"))
    modes = usable.modes(name)
    if modes is None:
        raise InvalidInput(
            f"{field} '{name}' is not an alias or model {whose} may use; use one of: "
            f"{usable.listing(mode)} (or leave it empty for {empty}).", field=field)
    if not modes:
        raise InvalidInput(
            f"{field} '{name}' is an alias none of whose models this tenant may use now (disabled or "
            f"gone); use one of: {usable.listing(mode)}.", field=field)
    if mode not in modes:
        raise InvalidInput(
            f"{field} '{name}' is not {kind} (it is used when {used} names no model); use "
            f"one of: {usable.listing(mode)}.", field=field)
