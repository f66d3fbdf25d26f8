"""The ledger's batch writer: each data-plane worker buffers its usage rows and writes them in
one batch every GATEWAY_USAGE_FLUSH_SECONDS, instead of one per request. The write is
idempotent (the request id is unique; a conflicting row is skipped). A row the database
refuses is set aside by the ledger (billing.ledger) and settled like the others; a write that
fails because the database is unreachable is kept and retried, and the worker's shutdown
writes whatever is left before it exits. If the database is still unreachable then, the rows
go to a spool file on local disk, and the next worker to start writes them. A spool file is
removed only once its rows are committed (a worker that dies holding one leaves it for the
next): nothing a client was answered for is lost."""

import asyncio
import logging
import os
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from billing import spend
from billing.ledger import usage_rows_write

log = logging.getLogger(__name__)


class UsageWriter:
    """One per data-plane worker. ``state`` is the worker's shared state (the settlement goes
    there) and ``run_db`` runs a function on the worker's database thread."""

    def __init__(self, state, *, run_db):
        self.state = state
        self.run_db = run_db
        self.pending: list[dict[str, Any]] = []
        self.tokens: dict[tuple[int, int], int] = defaultdict(int)
        self.releases: list[tuple[str, str]] = []  # budget reservations to release: (scope key, request id)
        self.adds: dict[str, int] = defaultdict(int)  # costs to add to budget day buckets
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.written = 0
        self.spooled: dict[Path, int] = {}  # claimed spool files -> their rows not yet committed

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
                    await self.run_db(usage_rows_write, batch)
                    written += len(batch)
                    self._collect_settlements(batch)
                    self._spool_done(batch)
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
            # A row set aside is not in the ledger, nor in the rollups budgets are rebuilt
            # from: its reservation is released, its cost not counted (budgets follow the ledger).
            cost = 0 if "_dead_letter" in row else spend.to_nanos(row.get("cost"))
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
        for claimed in self.spooled:  # their unwritten rows are in the new file now
            spool_release(claimed)
        self.spooled = {}

    def requeue_spooled(self) -> int:
        """Take the rows earlier workers spooled (and spool files claimed by workers that have
        died) and queue them; each file is removed once its rows are committed. The request id
        makes a second write of any row harmless."""
        queued = []
        for path, rows in spool_take():
            if not rows:
                spool_release(path)
                continue
            for row in rows:
                row["_spool"] = path
            queued.extend(rows)
            self.spooled[path] = len(rows)
        self.pending[:0] = queued
        return len(queued)

    def _spool_done(self, rows: list[dict[str, Any]]) -> None:
        """``rows`` are committed: a spool file whose rows all are can go."""
        for row in rows:
            path = row.get("_spool")
            if path is None or path not in self.spooled:
                continue
            self.spooled[path] -= 1
            if self.spooled[path] <= 0:
                del self.spooled[path]
                spool_release(path)


def spool_dir() -> Path:
    return Path(settings.VAR_DIR) / "usage-spool"


def spool_write(rows: list[dict[str, Any]]) -> Path:
    """Rows the database would not take, as JSON lines on local disk (VAR_DIR/usage-spool)."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.jsonl"
    with open(path, "wb") as out:
        for row in rows:
            out.write(orjson.dumps({k: v for k, v in row.items() if k not in ("_settle", "_spool")},
                                   default=str) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return path


# Spool files this process has claimed and not yet finished with.
_held: set[Path] = set()


def spool_take() -> list[tuple[Path, list[dict[str, Any]]]]:
    """Claim the spool files no running worker holds (renamed ``*.claimed-<pid>``: one worker
    takes each) and read them. A claimed file stays on disk until its rows are committed
    (``spool_release``), so a worker that dies holding one leaves it to the next."""
    folder = spool_dir()
    if not folder.is_dir():
        return []
    taken = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".jsonl" and not _orphaned(path):
            continue
        claimed = path.with_suffix(f".claimed-{os.getpid()}")
        try:
            path.rename(claimed)  # atomic: one worker takes each file
        except FileNotFoundError:
            continue
        _held.add(claimed)
        rows = [row for line in claimed.read_bytes().splitlines() if (row := _read(line))]
        taken.append((claimed, rows))
    return taken


def spool_release(path: Path) -> None:
    """The rows of a claimed spool file are committed (or spooled again): remove it."""
    path.unlink(missing_ok=True)
    _held.discard(path)


def _orphaned(path: Path) -> bool:
    """Claimed by a worker that is no longer running? (A pid may be reused: a file claimed by a
    process that died is taken once no running process has its pid, or at once if the process
    with its pid is this one and does not hold it.)"""
    prefix, _, pid = path.suffix.partition("-")
    if prefix != ".claimed" or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return path not in _held
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # running, as another user
        return False
    return False


def _read(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        return _revive(orjson.loads(line))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):  # cut short by a crash
        log.error("unreadable line in a usage spool file, skipped: %r", line[:2000])
        return None


def _revive(row: dict[str, Any]) -> dict[str, Any]:
    for money in ("cost", "provider_cost"):
        if row.get(money) is not None:
            row[money] = Decimal(row[money])
    if row.get("created_at"):
        row["created_at"] = datetime.fromisoformat(row["created_at"])
    if row.get("_day"):
        row["_day"] = date.fromisoformat(row["_day"])
    return row
