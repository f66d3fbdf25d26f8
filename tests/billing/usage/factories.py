"""Ledger rows and the daily rollups that match them, written straight to the database
(bulk_create), as the gateway's writer would leave them."""

import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing.models import UsageDaily, UsageLog, UsageStatus
from providers.models import Provider, ProviderModel
from tenants.models import ApiKey

_ids = itertools.count(1)
ERRORS = {UsageStatus.ERROR, UsageStatus.PARTIAL, UsageStatus.REJECTED}


def usage(tenant, *, at, model=None, key=None, **fields) -> UsageLog:
    """One unsaved ledger row: answered by ``model`` (a ProviderModel) at ``at`` through
    ``key`` (an ApiKey); any other UsageLog field may be given."""
    row = UsageLog(
        request_id=f"req_test{next(_ids):016x}",
        tenant=tenant,
        created_at=at,
        api_key=key,
        provider_model=model,
        provider=model.provider if model is not None else None,
        model_requested=f"{model.provider.name}:{model.model_id}" if model is not None else "",
        attempts=1 if model is not None else 0,
        status=UsageStatus.OK,
        input_tokens=100,
        output_tokens=20,
        cost=Decimal("0.001"),
        latency_ms=100,
    )
    for name, value in fields.items():
        setattr(row, name, value)
    return row


def record(tenant, rows: list[UsageLog]) -> list[UsageLog]:
    """Write ``rows`` and bring the tenant's rollups in line with its whole ledger."""
    UsageLog.objects.bulk_create(rows, batch_size=2000)
    rollups_rebuild(tenant)
    return rows


def rollups_rebuild(tenant) -> None:
    """The tenant's UsageDaily rows, recomputed in Python from its ledger (local days in the
    tenant's time zone; 0 = no model / key)."""
    zone = ZoneInfo(tenant.timezone)
    UsageDaily.objects.filter(tenant=tenant).delete()
    days: dict[tuple, UsageDaily] = {}
    fields = ("created_at", "provider_id", "provider_model_id", "api_key_id", "status", "cost", "latency_ms",
              "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
    for row in UsageLog.objects.filter(tenant=tenant).values(*fields).iterator(chunk_size=5000):
        day = row["created_at"].astimezone(zone).date()
        natural = (day, row["provider_model_id"] or 0, row["api_key_id"] or 0)
        rollup = days.get(natural)
        if rollup is None:
            rollup = days[natural] = UsageDaily(
                tenant=tenant, day=day, provider_id=row["provider_id"] or 0, provider_model_id=natural[1],
                api_key_id=natural[2], cost=Decimal(0),
            )
        rollup.requests += 1
        rollup.errors += row["status"] in ERRORS
        rollup.cache_hits += row["status"] == UsageStatus.CACHE_HIT
        for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
                     "reasoning_tokens"):
            setattr(rollup, name, getattr(rollup, name) + row[name])
        if row["cost"] is None:
            rollup.unpriced += row["input_tokens"] + row["output_tokens"] > 0
        else:
            rollup.cost += row["cost"]
        rollup.latency_ms_total += row["latency_ms"]
    UsageDaily.objects.bulk_create(days.values(), batch_size=2000)


@dataclass
class Catalog:
    openai: Provider  # a platform provider
    gpt: ProviderModel
    mini: ProviderModel
    ollama: Provider  # acme's own provider
    llama: ProviderModel
    chat_key: ApiKey  # acme's keys (the rows, not the secrets)
    admin_key: ApiKey
    other_key: ApiKey  # a key of the outsider tenant


def catalog_create(*, tenant, other) -> Catalog:
    openai = Provider.objects.create(name="openai", display_name="OpenAI", provider_type="openai")
    ollama = Provider.objects.create(owner=tenant, name="ollama", provider_type="ollama")
    price = {"input_price": Decimal("2.5"), "output_price": Decimal("10")}
    return Catalog(
        openai=openai,
        gpt=ProviderModel.objects.create(provider=openai, model_id="gpt-4o", display_name="GPT-4o", **price),
        mini=ProviderModel.objects.create(provider=openai, model_id="gpt-4o-mini", display_name=""),
        ollama=ollama,
        llama=ProviderModel.objects.create(provider=ollama, model_id="llama3:70b", display_name="Llama 3 70B"),
        chat_key=ApiKey.objects.get(tenant=tenant, scope="chat"),
        admin_key=ApiKey.objects.get(tenant=tenant, scope="admin"),
        other_key=ApiKey.objects.get(tenant=other, scope="chat"),
    )


def sample_record(tenant, catalog: Catalog, *, n: int = 300, seed: int = 3) -> list[UsageLog]:
    """``n`` varied rows over 45 days from 2025-01-01 UTC, the same for the same seed."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        model = rng.choice([catalog.gpt, catalog.mini, catalog.llama, None])
        rows.append(usage(
            tenant, at=start + timedelta(minutes=rng.randrange(60 * 24 * 45)), model=model,
            key=rng.choice([catalog.chat_key, catalog.admin_key, None]), request_id=f"req_sample{i:06d}",
            model_requested=rng.choice(["smart", "fast"]) if rng.random() < 0.3 else (
                f"{model.provider.name}:{model.model_id}" if model else "smart"),
            status=rng.choice(UsageStatus.values), latency_ms=rng.randrange(5, 5000),
            cost=None if rng.random() < 0.1 else Decimal(rng.randrange(1, 10**6)) / 10**9,
            input_tokens=rng.randrange(0, 4000), output_tokens=rng.randrange(0, 800),
            cached_input_tokens=rng.randrange(0, 100), reasoning_tokens=rng.randrange(0, 50),
            conversation_id=rng.choice(["", "", "c1", "c2", "c3", "c4"]), end_user=rng.choice(["", "u1", "=u2"]),
        ))
    return record(tenant, rows)
