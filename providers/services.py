"""Writes for providers and their model catalogs."""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from providers.adapters import mock
from providers.catalog import CATALOG_FIELDS, PRICE_FIELDS, CatalogEntry
from providers.models import PriceSource, Provider, ProviderModel, ProviderType, SyncStatus
from tenants.access import SYSTEM, Principal
from tenants.errors import Conflict, InvalidInput
from tenants.models import Tenant
from tenants.services import audit_record


def provider_get_or_create(
    *,
    name: str,
    provider_type: str,
    owner: Tenant | None = None,
    base_url: str = "",
    display_name: str = "",
    actor: Principal = SYSTEM,
) -> tuple[Provider, bool]:
    if provider_type not in ProviderType.values:
        raise InvalidInput(
            f"Unknown provider type '{provider_type}'; use one of {', '.join(ProviderType.values)}.",
            field="provider_type",
        )
    with transaction.atomic():
        provider = Provider.objects.filter(owner=owner, name=name).first()
        if provider is not None:
            if provider.provider_type != provider_type:
                raise Conflict(
                    f"Provider '{name}' already exists with type {provider.provider_type}.", field="name"
                )
            return provider, False
        provider = Provider.objects.create(
            owner=owner,
            name=name,
            provider_type=provider_type,
            base_url=base_url,
            display_name=display_name or name,
        )
        audit_record(
            actor=actor,
            action="provider.create",
            tenant=owner,
            target=f"provider:{name}",
            after={"name": name, "type": provider_type, "base_url": base_url},
        )
    return provider, True


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    stale: int
    unchanged: int


def provider_catalog_fetch(*, provider: Provider) -> list[CatalogEntry]:
    if provider.provider_type == ProviderType.MOCK:
        return mock.fetch_catalog()
    raise InvalidInput(
        f"Catalog sync for provider type '{provider.provider_type}' is not available in this build.",
        field="provider_type",
    )


def provider_models_sync(*, provider: Provider) -> SyncResult:
    """Fetch the provider's catalog and upsert it, recording the outcome on the provider."""
    try:
        catalog = provider_catalog_fetch(provider=provider)
        result = provider_models_upsert(provider=provider, catalog=catalog)
    except Exception as exc:
        Provider.objects.filter(pk=provider.pk).update(
            sync_status=SyncStatus.ERROR, last_sync_at=timezone.now(), last_sync_error=str(exc)[:2000]
        )
        raise
    Provider.objects.filter(pk=provider.pk).update(
        sync_status=SyncStatus.OK, last_sync_at=timezone.now(), last_sync_error=""
    )
    return result


def provider_models_upsert(*, provider: Provider, catalog: list[CatalogEntry]) -> SyncResult:
    """Bring ProviderModel rows in line with ``catalog`` in a bounded number of queries:
    one read, one bulk insert, one bulk update, one stale update. Models that disappeared are
    marked stale and disabled (usage rows keep pointing at them); a manual price survives."""
    by_id = {entry.model_id: entry for entry in catalog}
    with transaction.atomic():
        existing = {m.model_id: m for m in ProviderModel.objects.select_for_update().filter(provider=provider)}
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
            ProviderModel.objects.bulk_create(to_create, batch_size=500)
        if to_update:
            ProviderModel.objects.bulk_update(to_update, sorted(changed_fields | {"updated_at"}), batch_size=500)
        if gone:
            ProviderModel.objects.filter(pk__in=gone).update(stale=True, enabled=False, updated_at=timezone.now())
    return SyncResult(
        added=len(to_create),
        updated=len(to_update),
        stale=len(gone),
        unchanged=len(by_id) - len(to_create) - len(to_update),
    )


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
