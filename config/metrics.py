"""Prometheus metrics (prometheus-client, multi-process mode: every ASGI worker and Celery
process writes its own files under PROMETHEUS_MULTIPROC_DIR and ``GET /metrics`` adds them
up). Labels stay bounded: tenant slugs, provider names, ``provider:model`` ids, statuses and
error kinds — never request ids, keys or user text."""

import os
import shutil
import time
from pathlib import Path

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

requests = Counter("tollgate_requests", "Data-plane requests", ["tenant", "provider", "model", "status"])
latency = Histogram("tollgate_request_latency_seconds", "Data-plane request latency", ["provider"],
                    buckets=LATENCY_BUCKETS)
ttft = Histogram("tollgate_time_to_first_token_seconds", "Streaming time to first token", ["provider"],
                 buckets=LATENCY_BUCKETS)
upstream_errors = Counter("tollgate_upstream_errors", "Upstream failures", ["provider", "kind"])
fallbacks = Counter("tollgate_fallbacks", "Requests answered by a later target than the first", ["provider"])
cooldowns = Counter("tollgate_cooldowns", "Deployments put into cooldown", ["provider"])
rejections = Counter("tollgate_rejections", "Requests refused before any upstream call", ["tenant", "reason"])
cost = Counter("tollgate_cost_usd", "Cost of answered requests (USD; the ledger is the exact record)",
               ["tenant", "provider", "model"])
tokens = Counter("tollgate_tokens", "Tokens", ["tenant", "provider", "model", "kind"])
store_unavailable = Counter(
    "tollgate_store_unavailable", "/v1 requests that met an unreachable Redis (the rate-limit and budget store): "
    "refused (503 store_unavailable) or served without rate limits (the tenant fails open)", ["tenant", "outcome"])
cache_hits = Counter("tollgate_cache_hits", "Response cache hits", ["tenant"])
usage_dead_letters = Counter("tollgate_usage_dead_letters",
                             "Usage rows the database refused, set aside in the dead-letter table "
                             "(billing UsageDeadLetter)", ["error"])
celery_tasks = Counter("tollgate_celery_tasks", "Celery task outcomes", ["task", "outcome"])
sync_duration = Histogram("tollgate_provider_sync_seconds", "Model catalog sync duration", ["provider_type", "outcome"],
                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def multiproc_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def reset_multiproc_dir() -> None:
    """Empty the metrics folder; run once before the workers of a deployment start."""
    folder = multiproc_dir()
    if folder is None:
        return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def mark_process_dead(pid: int | None = None) -> None:
    """A worker that exits drops its live gauges (counters and histograms stay counted)."""
    if multiproc_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


class Timer:
    def __init__(self):
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.started


if __name__ == "__main__":  # python -m config.metrics: reset before starting the workers
    reset_multiproc_dir()
