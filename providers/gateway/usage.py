"""The data plane's side of the ledger: each worker buffers its usage rows and writes them in
one batch every GATEWAY_USAGE_FLUSH_SECONDS, instead of one per request. The write is
idempotent (the request id is unique; a conflicting row is skipped), a failed write is kept
and retried, and the worker's shutdown writes whatever is left before it exits. If the
database is still unreachable then, the rows go to a spool file on local disk, and the next
worker to start writes them: nothing a client was answered for is lost."""

import asyncio
import logging
import os
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from billing.ledger import usage_rows_write
from providers.gateway import budgets
from providers.gateway.db import run_db

log = logging.getLogger(__name__)


class UsageWriter:
    def __init__(self, state):
        self.state = state
        self.pending: list[dict[str, Any]] = []
        self.tokens: dict[tuple[int, int], int] = defaultdict(int)
        self.releases: list[tuple[str, str]] = []  # budget reservations to release: (scope key, request id)
        self.adds: dict[str, int] = defaultdict(int)  # costs to add to budget day buckets
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
            if self.requeue_spooled():
                log.warning("writing %d usage rows spooled by an earlier worker", len(self.pending))
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(settings.GATEWAY_USAGE_FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # kept; the next tick retries
                log.exception("usage flush failed; %d rows kept for the next attempt", len(self.pending))

    async def flush(self) -> int:
        """Write the buffered rows (with their rollups), then settle their budget
        reservations and token counters in Redis. Only after a batch is committed are its
        reservations released and costs counted, so nothing is counted twice or lost."""
        async with self._lock:
            rows, self.pending = self.pending, []
            written = 0
            try:
                for start in range(0, len(rows), settings.GATEWAY_USAGE_BATCH):
                    batch = rows[start:start + settings.GATEWAY_USAGE_BATCH]
                    await run_db(usage_rows_write, batch)
                    written += len(batch)
                    self._collect_settlements(batch)
            except BaseException:
                self.pending[:0] = rows[written:]
                raise
            finally:
                self.written += written
            await self._settle()
            return written

    def _collect_settlements(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            settle = row.get("_settle")
            if settle is None:
                continue
            _, reserved_keys, bucket_keys = settle
            self.releases.extend((key, row["request_id"]) for key in reserved_keys)
            cost = budgets.to_nanos(row.get("cost"))
            if cost:
                for key in bucket_keys:
                    self.adds[key] += cost

    async def _settle(self) -> None:
        tokens, self.tokens = self.tokens, defaultdict(int)
        releases, self.releases = self.releases, []
        adds, self.adds = self.adds, defaultdict(int)
        try:
            if tokens:
                await self.state.add_tokens(dict(tokens))
                tokens = {}
            if releases or adds:
                await self.state.budget_settle(releases, dict(adds))
        except BaseException:
            self.releases[:0] = releases
            for target, source in ((self.tokens, tokens), (self.adds, adds)):
                for key, value in source.items():
                    target[key] += value
            raise

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
                if not (self.pending or self.tokens or self.releases or self.adds):
                    return
            except Exception:
                log.exception("final usage flush failed (attempt %d); retrying", attempt + 1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        if self.pending:
            path = spool_write(self.pending)
            log.error("database unreachable at shutdown: %d usage rows spooled to %s; the next start writes them",
                      len(self.pending), path)
            self.pending = []

    def requeue_spooled(self) -> int:
        """At startup: take the rows an earlier worker spooled and queue them (the request id
        makes a second write of any row harmless)."""
        rows = spool_take()
        self.pending[:0] = rows
        return len(rows)


def spool_dir() -> Path:
    return Path(settings.VAR_DIR) / "usage-spool"


def spool_write(rows: list[dict[str, Any]]) -> Path:
    """Rows the database would not take, as JSON lines on local disk (VAR_DIR/usage-spool)."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}.jsonl"
    with open(path, "wb") as out:
        for row in rows:
            out.write(orjson.dumps({k: v for k, v in row.items() if k != "_settle"}, default=str) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return path


def spool_take() -> list[dict[str, Any]]:
    folder = spool_dir()
    if not folder.is_dir():
        return []
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        claimed = path.with_suffix(f".claimed-{os.getpid()}")
        try:
            path.rename(claimed)  # atomic: one worker takes each file
        except FileNotFoundError:
            continue
        for line in claimed.read_bytes().splitlines():
            if line.strip():
                rows.append(_revive(orjson.loads(line)))
        claimed.unlink()
    return rows


def _revive(row: dict[str, Any]) -> dict[str, Any]:
    for money in ("cost", "provider_cost"):
        if row.get(money) is not None:
            row[money] = Decimal(row[money])
    if row.get("created_at"):
        row["created_at"] = datetime.fromisoformat(row["created_at"])
    if row.get("_day"):
        row["_day"] = date.fromisoformat(row["_day"])
    return row
