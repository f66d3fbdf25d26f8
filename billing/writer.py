"""The ledger's batch writer: each data-plane worker buffers its usage records
(billing.records) and writes them in one batch every GATEWAY_USAGE_FLUSH_SECONDS, instead of
one per request, then settles them: once a batch is committed, the writer releases its budget
reservations and adds its costs to the budget buckets (billing.spend's SETTLE_SCRIPT), and
counts its tokens against the daily token limits. The write is idempotent (the request id is
unique; a conflicting row is skipped). A record the database refuses is set aside by the
ledger (billing.ledger) and settled like the others, its cost not counted; a write that fails
because the database is unreachable is kept and retried, and the worker's shutdown writes
whatever is left before it exits. A settlement that fails (Redis unreachable) is kept and
retried with backoff, at most SETTLE_BACKOFF_CAP seconds apart, while rows keep being written;
the failure is logged when it starts, once a minute while it lasts, and when it ends. If the
database is still unreachable at shutdown, the records go to
a spool file on local disk (JSON lines, ``UsageRecord.as_row``), and the next worker to start
writes them. A spool file is removed only once its rows are committed (a worker that dies
holding one leaves it for the next): nothing a client was answered for is lost."""

import asyncio
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from django.conf import settings

from billing import spend
from billing.ledger import usage_records_write
from billing.records import UsageRecord

log = logging.getLogger(__name__)

SETTLE_BACKOFF_CAP = 2.0  # seconds between settlement attempts at most while Redis is unreachable
SETTLE_LOG_SECONDS = 60.0  # a failing settlement is logged again after this long


class SharedState(Protocol):
    """What the writer settles into: the data plane's state shared by its workers (Redis, or its
    in-process twin on the embedded default)."""

    async def add_tokens(self, counts: dict[tuple[int, int], int]) -> None:
        """Add used tokens per (tenant, key) to today's token-limit counters."""

    async def budget_settle(self, keys: list[str], args: list[int | str]) -> None:
        """Run billing.spend.SETTLE_SCRIPT with these KEYS and ARGV."""


class UsageWriter:
    """One per data-plane worker: ``state`` is the worker's shared state and ``run_db`` runs a
    function on the worker's database thread. The worker only adds records."""

    def __init__(self, state: SharedState, *, run_db: Callable[..., Awaitable[Any]]):
        self.state = state
        self.run_db = run_db
        self.pending: list[UsageRecord] = []
        self.tokens: dict[tuple[int, int], int] = defaultdict(int)
        self.releases: list[tuple[str, str]] = []  # budget reservations to release: (scope key, request id)
        self.adds: dict[str, int] = defaultdict(int)  # costs to add to budget day buckets
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.written = 0
        self.spooled: dict[Path, int] = {}  # claimed spool files -> their records not yet committed
        self.from_spool: dict[int, Path] = {}  # id() of a queued record read from a spool file -> that file
        self.settle_failures = 0  # settlement attempts failed in a row
        self._settle_after = 0.0  # monotonic time of the next settlement attempt
        self._settle_logged = 0.0

    def add(self, record: UsageRecord) -> None:
        """Queue a finished request's record; its tokens are counted with the next settlement."""
        if record.created_at is None:
            record.created_at = datetime.now(UTC)
        self.pending.append(record)
        tokens = record.input_tokens + record.output_tokens
        if tokens and record.api_key_id:
            self.tokens[(record.tenant_id, record.api_key_id)] += tokens

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

    async def flush(self, *, settle_now: bool = False) -> int:
        """Write the buffered records (with their rollups), then settle their budget
        reservations and token counters in Redis. Only after a batch is committed are its
        reservations released and costs counted, so nothing is counted twice or lost. A failed
        settlement is kept for a later attempt (after a backoff, unless ``settle_now``)."""
        async with self._lock:
            rows, self.pending = self.pending, []
            written = 0
            try:
                for start in range(0, len(rows), settings.GATEWAY_USAGE_BATCH):
                    batch = rows[start:start + settings.GATEWAY_USAGE_BATCH]
                    await self.run_db(usage_records_write, batch)
                    written += len(batch)
                    self._collect_settlements(batch)
                    self._spool_done(batch)
            except BaseException:
                self.pending[:0] = rows[written:]
                raise
            finally:
                self.written += written
            if settle_now or time.monotonic() >= self._settle_after:
                await self._settle_or_keep()
            return written

    async def settle(self) -> bool:
        """Settle what is kept now, without waiting for the backoff; whether it worked (the
        data plane calls it before it rebuilds a budget bucket from the rollups)."""
        async with self._lock:
            return await self._settle_or_keep()

    async def _settle_or_keep(self) -> bool:
        try:
            await self._settle()
        except Exception as exc:  # kept (in _settle): retried after a backoff
            self.settle_failures += 1
            now = time.monotonic()
            delay = min(settings.GATEWAY_USAGE_FLUSH_SECONDS * 2 ** self.settle_failures, SETTLE_BACKOFF_CAP)
            self._settle_after = now + delay
            if self.settle_failures == 1 or now - self._settle_logged >= SETTLE_LOG_SECONDS:
                self._settle_logged = now
                log.warning("usage settlement failed (%s: %s), %d attempts in a row; %d budget additions and %d "
                            "token counts kept, retried every %.1f s at most", type(exc).__name__, exc,
                            self.settle_failures, len(self.adds), len(self.tokens), SETTLE_BACKOFF_CAP)
            return False
        if self.settle_failures:
            log.warning("usage settled again after %d failed attempts", self.settle_failures)
            self.settle_failures = 0
            self._settle_after = 0.0
        return True

    def _collect_settlements(self, records: list[UsageRecord]) -> None:
        for record in records:
            settlement = record.settlement
            if settlement is None:
                continue
            self.releases.extend((key, record.request_id) for key in settlement.reserved_keys)
            # A record set aside is not in the ledger, nor in the rollups budgets are rebuilt
            # from: its reservation is released, its cost not counted (budgets follow the ledger).
            cost = 0 if record.set_aside else spend.to_nanos(record.cost)
            if cost:
                for key in settlement.bucket_keys:
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
                await self.state.budget_settle(*spend.settle_arguments(releases, dict(adds)))
        except BaseException:
            self.releases[:0] = releases
            for target, source in ((self.tokens, tokens), (self.adds, adds)):
                for key, value in source.items():
                    target[key] += value
            raise

    async def close(self, *, attempts: int = 20, settle_attempts: int = 5) -> None:
        """Stop the timer and write everything left, retrying with backoff. Once the rows are
        written, settling is tried ``settle_attempts`` times: what Redis does not take then is
        dropped (a bucket Redis lost is rebuilt from the rollups)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        delay = 0.05
        settling = 0
        for attempt in range(attempts):
            try:
                await self.flush(settle_now=True)
                if not (self.pending or self.tokens or self.releases or self.adds):
                    return
            except Exception:
                log.exception("final usage flush failed (attempt %d); retrying", attempt + 1)
            if not self.pending:
                settling += 1
                if settling >= settle_attempts:
                    log.error("Redis unreachable at shutdown: %d budget additions and %d token counts not settled",
                              len(self.adds), len(self.tokens))
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        if self.pending:
            path = spool_write(self.pending)
            log.error("database unreachable at shutdown: %d usage rows spooled to %s; the next start writes them",
                      len(self.pending), path)
            self.pending = []
        for claimed in self.spooled:  # their unwritten records are in the new file now
            spool_release(claimed)
        self.spooled = {}
        self.from_spool = {}

    def requeue_spooled(self) -> int:
        """Take the records earlier workers spooled (and spool files claimed by workers that have
        died) and queue them; each file is removed once its records are committed. The request
        id makes a second write of any record harmless."""
        queued = []
        for path, records in spool_take():
            if not records:
                spool_release(path)
                continue
            for record in records:
                self.from_spool[id(record)] = path  # the record stays queued (referenced) until popped
            queued.extend(records)
            self.spooled[path] = len(records)
        self.pending[:0] = queued
        return len(queued)

    def _spool_done(self, records: list[UsageRecord]) -> None:
        """``records`` are committed: a spool file whose records all are can go."""
        for record in records:
            path = self.from_spool.pop(id(record), None)
            if path is None or path not in self.spooled:
                continue
            self.spooled[path] -= 1
            if self.spooled[path] <= 0:
                del self.spooled[path]
                spool_release(path)


def spool_dir() -> Path:
    return Path(settings.VAR_DIR) / "usage-spool"


def spool_write(records: list[UsageRecord]) -> Path:
    """Records the database would not take, as JSON lines on local disk (VAR_DIR/usage-spool):
    one ``UsageRecord.as_row`` a line (their settlements are not kept)."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.jsonl"
    with open(path, "wb") as out:
        for record in records:
            out.write(orjson.dumps(record.as_row(), default=str) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return path


# Spool files this process has claimed and not yet finished with.
_held: set[Path] = set()


def spool_take() -> list[tuple[Path, list[UsageRecord]]]:
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
        records = [record for line in claimed.read_bytes().splitlines() if (record := _read(line))]
        taken.append((claimed, records))
    return taken


def spool_release(path: Path) -> None:
    """The records of a claimed spool file are committed (or spooled again): remove it."""
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


def _read(line: bytes) -> UsageRecord | None:
    if not line.strip():
        return None
    try:
        return UsageRecord.from_row(orjson.loads(line))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):  # cut short by a crash
        log.error("unreadable line in a usage spool file, skipped: %r", line[:2000])
        return None
