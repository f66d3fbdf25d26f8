"""The data plane's side of the ledger: each worker buffers its usage rows and writes them in
one INSERT every GATEWAY_USAGE_FLUSH_SECONDS, instead of one per request. The write is
idempotent (the request id is unique; a conflicting row is skipped), a failed write is kept
and retried, and the worker's shutdown writes whatever is left before it exits."""

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from billing.models import UsageLog
from providers.gateway.db import run_db
from providers.models import Provider, ProviderModel
from tenants.models import ApiKey, Tenant

log = logging.getLogger(__name__)


# Every column the data plane writes, with the value a row leaves out.
USAGE_COLUMNS = {
    "request_id": None, "tenant_id": None, "api_key_id": None, "model_requested": "", "provider_id": None,
    "provider_model_id": None, "attempts": 0, "status": "ok", "error_type": "", "input_tokens": 0,
    "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0,
    "tokens_estimated": False, "cost": None, "provider_cost": None, "latency_ms": 0, "ttft_ms": None,
    "stream": False, "conversation_id": "", "end_user": "", "created_at": None,
}


def usage_rows_write(rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping request ids already written (ON CONFLICT DO NOTHING), as one
    prepared statement run for every row (psycopg pipelines it; sqlite3 loops in C), with the
    values taken straight from the row dicts rather than through model instances: this runs
    beside the event loop, and the ORM's per-field work would slow the data plane. If a batch
    breaks a constraint (a key, provider or tenant deleted meanwhile), rows are written one by
    one so one bad row cannot hold up the rest."""
    try:
        with transaction.atomic():
            _insert(rows)
    except IntegrityError:
        for row in rows:
            _usage_row_salvage(row)


def _insert(rows: list[dict[str, Any]]) -> None:
    adapt_time = connection.ops.adapt_datetimefield_value
    defaults = list(USAGE_COLUMNS.items())
    now = datetime.now(UTC)
    params = [
        tuple(adapt_time(row.get(c) or now) if c == "created_at" else row.get(c, d) for c, d in defaults)
        for row in rows
    ]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(UsageLog._meta.db_table)} ({', '.join(quote(c) for c in USAGE_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(USAGE_COLUMNS))}) ON CONFLICT ({quote('request_id')}) DO NOTHING"
    )
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:  # server-side binding: parsed once, pipelined
            cursor.executemany(sql, params)
    else:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def _usage_row_salvage(row: dict[str, Any]) -> None:
    try:
        with transaction.atomic():
            UsageLog.objects.bulk_create([UsageLog(**row)], ignore_conflicts=True)
        return
    except IntegrityError:
        pass
    if not Tenant.objects.filter(pk=row["tenant_id"]).exists():
        log.error("usage row %s dropped: tenant %s no longer exists", row["request_id"], row["tenant_id"])
        return
    fixed = dict(row)
    for field, model in (("api_key_id", ApiKey), ("provider_id", Provider), ("provider_model_id", ProviderModel)):
        if fixed.get(field) is not None and not model.objects.filter(pk=fixed[field]).exists():
            fixed[field] = None
    with transaction.atomic():
        UsageLog.objects.bulk_create([UsageLog(**fixed)], ignore_conflicts=True)


class UsageWriter:
    def __init__(self, state):
        self.state = state
        self.pending: list[dict[str, Any]] = []
        self.tokens: dict[tuple[int, int], int] = defaultdict(int)
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.written = 0

    def add(self, row: dict[str, Any], *, tokens: int = 0) -> None:
        row.setdefault("created_at", datetime.now(UTC))
        self.pending.append(row)
        if tokens and row.get("api_key_id"):
            self.tokens[(row["tenant_id"], row["api_key_id"])] += tokens

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(settings.GATEWAY_USAGE_FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # kept in pending; the next tick retries
                log.exception("usage flush failed; %d rows kept for the next attempt", len(self.pending))

    async def flush(self) -> int:
        async with self._lock:
            rows, self.pending = self.pending, []
            tokens, self.tokens = self.tokens, defaultdict(int)
            written = 0
            try:
                for start in range(0, len(rows), settings.GATEWAY_USAGE_BATCH):
                    batch = rows[start:start + settings.GATEWAY_USAGE_BATCH]
                    await run_db(usage_rows_write, batch)
                    written += len(batch)
            except BaseException:
                self.pending[:0] = rows[written:]
                raise
            finally:
                self.written += written
            if tokens:
                try:
                    await self.state.add_tokens(dict(tokens))
                except Exception:
                    for k, v in tokens.items():
                        self.tokens[k] += v
                    raise
            return written

    async def close(self, *, attempts: int = 20) -> None:
        """Stop the timer and write everything left, retrying with backoff."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        delay = 0.05
        for attempt in range(attempts):
            try:
                await self.flush()
                if not self.pending:
                    return
            except Exception:
                log.exception("final usage flush failed (attempt %d); retrying", attempt + 1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        log.error("exiting with %d usage rows unwritten", len(self.pending))
