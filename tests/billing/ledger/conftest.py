"""Ledger rows written through the gateway's own writer (``billing.ledger.usage_records_write``),
so the rollups beside them are exactly what production would hold."""

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.ledger import usage_records_write
from billing.models import UsageDaily, UsageLog
from billing.records import UsageRecord
from providers.models import Provider, ProviderModel
from tenants.models import ApiKey

_ids = itertools.count(1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def gpt(world) -> ProviderModel:
    openai = Provider.objects.create(name="openai", display_name="OpenAI", provider_type="openai")
    return ProviderModel.objects.create(provider=openai, model_id="gpt-4o", display_name="GPT-4o")


@pytest.fixture
def chat_key(world) -> ApiKey:
    """acme's chat key (the row; ``world.chat_key`` is the secret)."""
    return ApiKey.objects.get(tenant=world.tenant, scope="chat")


def write(tenant, *times: datetime, model: ProviderModel | None = None, key: ApiKey | None = None,
          **fields) -> list[str]:
    """One ledger row per time in ``times`` for ``tenant`` (and its rollups, on the tenant's
    local day); returns their request ids in order."""
    zone = ZoneInfo(tenant.timezone)
    rows = []
    for at in times:
        row = {
            "request_id": f"req_ops{next(_ids):016x}", "tenant_id": tenant.pk, "created_at": at,
            "day": at.astimezone(zone).date(), "api_key_id": key.pk if key else None,
            "provider_id": model.provider_id if model else None, "provider_model_id": model.pk if model else None,
            "model_requested": f"{model.provider.name}:{model.model_id}" if model else "", "attempts": 1,
            "input_tokens": 100, "output_tokens": 20, "cost": Decimal("0.001"), "latency_ms": 100,
        }
        row.update(fields)
        rows.append(UsageRecord(**row))
    written = usage_records_write(rows)
    assert len(written) == len(rows)
    return [row.request_id for row in rows]


def rollups(tenant) -> list[tuple]:
    """Every rollup row of ``tenant``, every column: equal lists mean nothing changed."""
    return list(UsageDaily.objects.filter(tenant=tenant).order_by("day", "provider_model_id", "api_key_id")
                .values_list())


def ledger_ids(tenant) -> set[str]:
    return set(UsageLog.objects.filter(tenant=tenant).values_list("request_id", flat=True))
