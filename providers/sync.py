"""Talking to providers' catalog endpoints: a sync of one provider, and a connection test that
saves nothing. Both read the catalog with ``catalog_fetch`` (providers/fetchers/), whose
traffic goes through the guarded client (core/net.py)."""

import time
from dataclasses import dataclass
from typing import Any

from config import metrics
from core.errors import Conflict, TollgateError
from providers.fetchers.registry import catalog_fetch
from providers.models import Provider
from providers.services import (
    SyncResult,
    provider_models_upsert,
    provider_sync_claim,
    provider_sync_finish,
)


def provider_sync(*, provider: Provider) -> SyncResult:
    """Fetch and upsert one provider's catalog, recording the outcome on the provider.
    Refuses (Conflict) while another sync of the same provider is running."""
    if not provider_sync_claim(provider=provider):
        raise Conflict(f"A sync of provider '{provider.name}' is already running.")
    started = time.perf_counter()
    outcome = "error"
    try:
        result = provider_models_upsert(provider=provider, catalog=catalog_fetch(provider))
        outcome = "ok"
    except TollgateError as exc:
        provider_sync_finish(provider=provider, error=exc.message)
        raise
    except Exception as exc:
        provider_sync_finish(provider=provider, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        metrics.sync_duration.labels(provider.provider_type, outcome).observe(time.perf_counter() - started)
    provider_sync_finish(provider=provider)
    return result


@dataclass(frozen=True)
class ConnectionReport:
    reachable: bool
    provider_type: str
    base_url: str
    model_count: int | None
    latency_ms: float | None
    error: str | None
    sample_models: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "detected_type": self.provider_type,
            "base_url": self.base_url,
            "model_count": self.model_count,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "sample_models": self.sample_models,
        }


def connection_test(*, provider: Provider) -> ConnectionReport:
    """Try ``provider`` (usually unsaved) by listing its models; nothing is written."""
    started = time.perf_counter()
    try:
        catalog = catalog_fetch(provider)
    except TollgateError as exc:
        return ConnectionReport(False, provider.provider_type, provider.base_url, None,
                                _ms(started), exc.message, [])
    return ConnectionReport(True, provider.provider_type, provider.base_url, len(catalog), _ms(started),
                            None, [e.model_id for e in catalog[:10]])


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
