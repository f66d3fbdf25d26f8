"""The ledger's batch writer: each data-plane worker buffers its usage records
(billing.records) and writes them in one batch every GATEWAY_USAGE_FLUSH_SECONDS, instead of
one per request, then settles them: once a batch is committed, the writer releases its budget
reservations and adds its costs to the budget buckets (billing.spend's SETTLE_SCRIPT), and
counts its tokens in the tokens-per-day counters of its day (those that exist: a missing one is
rebuilt from the rollups). The write is idempotent (the request id is
unique; a conflicting row is skipped). A record the database refuses is set aside by the
ledger (billing.ledger) and settled like the others, its cost not counted; a write that fails
because the database is unreachable is kept and retried, and the worker's shutdown writes
whatever is left before it exits. A settlement that fails (Redis unreachable) is kept and
retried with backoff, at most SETTLE_BACKOFF_CAP seconds apart, while rows keep being written;
the failure is logged when it starts, once a minute while it lasts, and when it ends. Journal
segments whose records are committed but not yet settled stay on disk until they are.

Durability: every record is appended to the worker's journal (billing.journal) when it is
added, before the request's last bytes reach the client, and a stream whose headers went out
is journaled as an "open" marker (``open``) until its final record comes. A flush rotates the
journal, writes and settles, and only then deletes the segments that rotation closed. So a
worker killed outright (``kill -9``, the OOM killer) leaves every answered request on disk;
the next worker to start (``start``), or the ``billing.journals_sweep`` task
(``journals_sweep``), replays it. If the database is unreachable at shutdown, the journal is
simply left for them. With GATEWAY_JOURNAL off, records wait in memory only, and a shutdown
with the database down writes them to a spool file (VAR_DIR/usage-spool, the same lines) that
the next start writes; spool files of earlier releases are still read.

A replay never counts twice. The ledger returns the records it newly inserted: those are
settled as always (reservation released, cost added, tokens counted). A record it already had
is a replay of a batch committed before the crash, which may or may not have been settled:
it is settled on condition (SETTLE_SCRIPT's replayed section) — its reservation released and
its cost added only if that reservation is still held. Settling one request is atomic (one
script), so a held reservation means it was never settled and a released one means it was:
the cost goes into the buckets exactly once (or, if its reservation expired meanwhile, not at
all: the bucket under-counts until it is rebuilt from the rollups, which the ledger keeps
exact). Token-limit counters count newly inserted rows only.

A dead worker's reservations are released at takeover. A started writer names its worker's held
hash (billing.spend.held_key of its journal's directory) on the shared state, so admission lists
each reservation there, settlement strikes it off, and the timer refreshes it every
HELD_REFRESH_SECONDS. The writer that claims a dead worker's journal (``start``, or the sweep)
releases what the dead worker's hash still lists (``held_release``) — but the requests its
journal holds, which the replay settles with their cost — and deletes the hash: a request that
was waiting for its upstream when the worker died stops holding budget as soon as the next
worker starts, not RESERVATION_TTL later. While Redis is unreachable the release is retried at
each tick, for RESERVATION_TTL at most (then the reservations have expired anyway). A clean
shutdown that settled everything releases and deletes its own hash."""

import asyncio
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

from billing import spend
from billing.journal import Journal, JournalClaim, journals_claim, record_line, records_replayed
from billing.ledger import usage_records_write
from billing.records import UsageRecord

log = logging.getLogger(__name__)

SETTLE_BACKOFF_CAP = 2.0  # seconds between settlement attempts at most while Redis is unreachable
SETTLE_LOG_SECONDS = 60.0  # a failing settlement is logged again after this long


class SharedState(Protocol):
    """What the writer settles into: the data plane's state shared by its workers (Redis, or its
    in-process twin on the embedded default)."""

    held: str  # the worker's held hash (billing.spend.held_key), listed by admission; "": none

    async def tpm_correct(self, minutes: dict[str, int]) -> None:
        """Correct tokens-per-minute reservations (``minutes``: used minus reserved, per counter)."""

    async def budget_settle(self, keys: list[str], args: list[int | str]) -> None:
        """Run billing.spend.SETTLE_SCRIPT with these KEYS and ARGV (budget costs and tokens per
        day)."""

    async def held_refresh(self) -> None:
        """Keep ``held`` alive (its marker field and lifetime)."""

    async def held_release(self, *, held: str, skip: Collection[str] = ()) -> int:
        """Release what the held hash ``held`` lists but ``skip``, and delete it (HELD_RELEASE_SCRIPT)."""


class Settling:
    """What committed records leave to settle: reservations to release, costs and tokens to add
    (to budget day buckets and tokens-per-day counters, per writing transaction: see
    billing.spend.SETTLE_SCRIPT), tokens-per-minute corrections, and the replayed records settled
    on condition (see the module docstring)."""

    def __init__(self):
        self.minutes: dict[str, int] = defaultdict(int)  # tokens-per-minute corrections
        self.releases: list[tuple[str, str]] = []  # (scope key, request id)
        self.adds: dict[tuple[str, int | None], int] = defaultdict(int)  # (counter, transaction) -> amount
        self.replayed: list[tuple[str, spend.Settlement, int]] = []  # (request id, settlement, cost)

    def __bool__(self) -> bool:
        return bool(self.minutes or self.releases or self.adds or self.replayed)

    def collect(self, records: list[UsageRecord], new: list[UsageRecord]) -> None:
        """``records`` were committed (or set aside); ``new`` are those the ledger inserted."""
        inserted = {record.request_id for record in new}
        for record in records:
            is_new = record.request_id in inserted
            inserted.discard(record.request_id)  # a request twice in one batch: the first is the new one
            settlement = record.settlement
            if is_new and settlement is not None:
                tokens = record.input_tokens + record.output_tokens
                if tokens:
                    for key in settlement.token_keys:
                        self.adds[(key, record.committed_in)] += tokens
                for key, reserved in settlement.tpm:
                    self.minutes[key] += tokens - reserved
            if settlement is None:
                continue
            # A record set aside is not in the ledger, nor in the rollups budgets are rebuilt
            # from: its reservation is released, its cost not counted (budgets follow the ledger).
            cost = 0 if record.set_aside else spend.to_nanos(record.cost)
            if is_new or record.set_aside:
                self.releases.extend((key, record.request_id) for key in settlement.reserved_keys)
                if cost:
                    for key in settlement.bucket_keys:
                        self.adds[(key, record.committed_in)] += cost
            else:
                self.replayed.append((record.request_id, settlement, cost))

    def take(self) -> "Settling":
        """Everything collected so far, leaving this empty."""
        taken = Settling()
        taken.minutes, self.minutes = self.minutes, defaultdict(int)
        taken.releases, self.releases = self.releases, []
        taken.adds, self.adds = self.adds, defaultdict(int)
        taken.replayed, self.replayed = self.replayed, []
        return taken

    def put_back(self, taken: "Settling") -> None:
        """``taken`` was not settled: keep it for the next attempt."""
        self.releases[:0] = taken.releases
        self.replayed[:0] = taken.replayed
        for target, source in ((self.minutes, taken.minutes), (self.adds, taken.adds)):
            for key, value in source.items():
                target[key] += value

    def budget_arguments(self, *, held: str = "") -> tuple[list[str], list[int | str]] | None:
        """SETTLE_SCRIPT's KEYS and ARGV (``held``: the settling worker's held hash), or None if
        there are no budgets or tokens to settle."""
        if not (self.releases or self.adds or self.replayed):
            return None
        return spend.settle_arguments(self.releases, dict(self.adds), self.replayed, held=held)


class UsageWriter:
    """One per data-plane worker: ``state`` is the worker's shared state and ``run_db`` runs a
    function on the worker's database thread. The worker adds records (``add``), and marks
    the streams under way (``open``).

    A writer that is never started (``open_private``'s, for one request) holds its journal only
    while it holds records: a flush that leaves nothing behind deletes it."""

    def __init__(self, state: SharedState, *, run_db: Callable[..., Awaitable[Any]]):
        self.state = state
        self.run_db = run_db
        self.pending: list[UsageRecord] = []
        self.settling = Settling()
        self.journaling = settings.GATEWAY_JOURNAL
        self.journal: Journal | None = None
        self.opened: dict[str, UsageRecord] = {}  # request id -> its open marker
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.written = 0
        self.claims: dict[Any, int] = {}  # claimed journals and spool files -> their records not yet committed
        self.claimed_by: dict[int, Any] = {}  # id() of a queued record read from one -> its claim
        self.claims_committed: list[Any] = []  # claims whose records are all committed, deleted once settled
        self.journal_failures = 0
        self._journal_failure_logged = -60.0
        self.settle_failures = 0  # settlement attempts failed in a row
        self._settle_after = 0.0  # monotonic time of the next settlement attempt
        self._settle_logged = 0.0
        # Dead workers' held hashes to release: (hash, request ids its journal holds, claimed at)
        self.takeovers: list[tuple[str, frozenset[str], float]] = []
        self.held = ""  # this worker's held hash, once started with a journal (billing.spend.held_key)
        self._held_refreshed = -spend.HELD_REFRESH_SECONDS  # monotonic time of the last refresh
        self._takeover_failed = False

    def _journal(self) -> Journal:
        if self.journal is None:
            self.journal = Journal()
        return self.journal

    def add(self, record: UsageRecord) -> None:
        """A finished request's record: journaled, then queued; its tokens are counted with
        the next settlement. Call it before the answer's last bytes go out."""
        if record.created_at is None:
            record.created_at = datetime.now(UTC)
        if self.journaling:
            try:
                (self.journal or self._journal()).append(record)
            except OSError as exc:
                self._journal_failed(exc)
        if self.opened:
            self.opened.pop(record.request_id, None)
        self.pending.append(record)

    def open(self, record: UsageRecord) -> None:
        """A stream's headers went out: journal ``record`` (what the request is if the worker
        dies before it ends: partial, worker_lost, estimated tokens) as an open marker, until
        ``add`` brings the final record of the same request id."""
        if record.created_at is None:
            record.created_at = datetime.now(UTC)
        self.opened[record.request_id] = record
        if self.journaling:
            try:
                (self.journal or self._journal()).append(record, marker=True)
            except OSError as exc:
                self._journal_failed(exc)

    def _journal_failed(self, exc: OSError) -> None:
        """The disk refused a journal write (full, gone): the request is not failed for it —
        its record is still queued, as without a journal — but it is said, once a minute."""
        self.journal_failures += 1
        now = time.monotonic()
        if now - self._journal_failure_logged >= 60:
            self._journal_failure_logged = now
            log.error("usage journal write failed (%d so far): %s; rows are kept in memory only until it "
                      "works again", self.journal_failures, exc)

    def start(self) -> None:
        if self._task is None:
            if self.journaling:
                self.held = self.state.held = spend.held_key(self._journal().path.name)
            if self.requeue_orphans():
                log.warning("writing %d usage rows left by earlier workers", len(self.pending))
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        interval = settings.GATEWAY_USAGE_FLUSH_SECONDS  # the worker's setting, read once
        while True:
            try:
                await self.held_keep()
            except Exception:  # the next tick tries again
                log.exception("keeping the list of held budget reservations failed")
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:  # kept; the next tick retries
                log.exception("usage flush failed; %d rows kept for the next attempt", len(self.pending))

    async def held_keep(self) -> None:
        """Refresh this worker's held hash every HELD_REFRESH_SECONDS, and release the held
        hashes of the dead workers whose journals this writer took over."""
        now = time.monotonic()
        if self.held and now - self._held_refreshed >= spend.HELD_REFRESH_SECONDS:
            self._held_refreshed = now
            await self.state.held_refresh()
        if self.takeovers:
            await self._takeovers_release()

    async def _takeovers_release(self) -> None:
        """Release what dead workers' held hashes list (but what their journals' replay settles).
        While Redis is unreachable each tick tries again, for RESERVATION_TTL at most: then the
        reservations have expired on their own."""
        while self.takeovers:
            takeover = self.takeovers.pop(0)
            held, skip, claimed = takeover
            if time.monotonic() - claimed >= spend.RESERVATION_TTL:
                continue
            try:
                released = await self.state.held_release(held=held, skip=skip)
            except Exception as exc:  # Redis unreachable: the next tick tries again
                self.takeovers.insert(0, takeover)
                if not self._takeover_failed:
                    log.warning("releasing the budget reservations of dead workers failed (%s: %s); retried at "
                                "each tick", type(exc).__name__, exc)
                self._takeover_failed = True
                return
            self._takeover_failed = False
            if released:
                log.warning("released the budget reservations of %d requests a dead worker held (%s)", released, held)

    async def flush(self, *, settle_now: bool = False) -> int:
        """Rotate the journal, write the buffered records (with their rollups), then settle
        their budget reservations and token counters in Redis, and only then delete the journal
        segments the rotation closed. Only after a batch is committed are its reservations
        released and costs counted, so nothing is counted twice or lost. A failed settlement is
        kept for a later attempt (after a backoff, unless ``settle_now``), and so are the
        segments and claims that hold its records."""
        async with self._lock:
            journal = self.journal
            closed = 0  # the last segment to delete once this flush is settled
            if journal is not None:
                try:
                    closed = journal.rotate(self.opened.values())
                except OSError as exc:  # a full disk must not stop the ledger: write, delete nothing
                    self._journal_failed(exc)
            rows, self.pending = self.pending, []
            written = 0
            try:
                for start in range(0, len(rows), settings.GATEWAY_USAGE_BATCH):
                    batch = rows[start:start + settings.GATEWAY_USAGE_BATCH]
                    new = await self.run_db(usage_records_write, batch)
                    written += len(batch)
                    self.settling.collect(batch, new)
                    self._claims_done(batch)
            except BaseException:
                self.pending[:0] = rows[written:]
                raise
            finally:
                self.written += written
            if self.settling and not settle_now and time.monotonic() < self._settle_after:
                return written  # backing off: settled (and the segments deleted) by a later flush
            if not await self._settle_or_keep():
                return written
            committed, self.claims_committed = self.claims_committed, []
            for claim in committed:
                claim.remove()
            if journal is not None and journal is self.journal:
                journal.discard(closed)
                if self._task is None and not (self.pending or self.opened):
                    self.journal = None
                    journal.remove()
            return written

    async def settle(self) -> bool:
        """Settle what is kept now, without waiting for the backoff; whether it worked (the
        data plane calls it before it rebuilds a budget bucket from the rollups)."""
        async with self._lock:
            return await self._settle_or_keep()

    async def _settle_or_keep(self) -> bool:
        if not self.settling:
            return True
        try:
            await self._settle()
        except Exception as exc:  # kept (in _settle): retried after a backoff
            self.settle_failures += 1
            now = time.monotonic()
            delay = min(settings.GATEWAY_USAGE_FLUSH_SECONDS * 2 ** self.settle_failures, SETTLE_BACKOFF_CAP)
            self._settle_after = now + delay
            if self.settle_failures == 1 or now - self._settle_logged >= SETTLE_LOG_SECONDS:
                self._settle_logged = now
                log.warning("usage settlement failed (%s: %s), %d attempts in a row; %d budget and token "
                            "additions, %d releases and %d token corrections kept, retried every %.1f s at most",
                            type(exc).__name__, exc, self.settle_failures, len(self.settling.adds),
                            len(self.settling.releases), len(self.settling.minutes), SETTLE_BACKOFF_CAP)
            return False
        if self.settle_failures:
            log.warning("usage settled again after %d failed attempts", self.settle_failures)
            self.settle_failures = 0
            self._settle_after = 0.0
        return True

    async def _settle(self) -> None:
        taken = self.settling.take()
        try:
            if taken.minutes:
                await self.state.tpm_correct(dict(taken.minutes))
                taken.minutes = defaultdict(int)
            arguments = taken.budget_arguments(held=self.held)
            if arguments is not None:
                await self.state.budget_settle(*arguments)
        except BaseException:
            self.settling.put_back(taken)
            raise

    async def close(self, *, attempts: int = 20, settle_attempts: int = 5) -> None:
        """Stop the timer and write everything left, retrying with backoff. Streams still
        open are written as their open markers describe them. Once the rows are written,
        settling is tried ``settle_attempts`` times: what Redis does not take then stays in the
        journal, whose replay settles it on condition."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self.opened:
            log.warning("%d streams still open at shutdown, recorded as cut off", len(self.opened))
            self.pending.extend(self.opened.values())
            self.opened = {}
        delay = 0.05
        settling = 0
        for attempt in range(attempts):
            try:
                await self.flush(settle_now=True)
                if not (self.pending or self.settling):
                    break
            except Exception:
                log.exception("final usage flush failed (attempt %d); retrying", attempt + 1)
            if not self.pending:
                settling += 1
                if settling >= settle_attempts:
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        if self.takeovers:  # not released yet: one more try
            await self._takeovers_release()
        if (self.pending or self.settling) and self.journal is not None:
            # Unsettled committed records stay too: their replay settles them, on condition.
            log.error("database or shared state unreachable at shutdown: %d usage rows (and %d settlements) left "
                      "in the journal %s; the next start or the journals sweep writes them", len(self.pending),
                      len(self.settling.releases) + len(self.settling.replayed), self.journal.path)
            self.journal.close()
            self.journal = None
            for claim in [*self.claims, *self.claims_committed]:  # still on disk, for the next worker too
                claim.let_go()
        else:
            if self.pending:
                path = spool_write(self.pending)
                log.error("database unreachable at shutdown: %d usage rows spooled to %s; the next start writes "
                          "them", len(self.pending), path)
            for claim in [*self.claims, *self.claims_committed]:  # their unwritten records are in the new file now
                claim.remove()
            if self.journal is not None:
                self.journal.remove()
                self.journal = None
            await self._held_drop()
        self.pending = []
        self.claims = {}
        self.claimed_by = {}
        self.claims_committed = []

    async def _held_drop(self) -> None:
        """Everything this worker admitted is settled and it stops: release what its held hash
        still lists (a request that never came to a record) and delete it."""
        held, self.held = self.held, ""
        if not held:
            return
        self.state.held = ""
        try:
            await self.state.held_release(held=held)
        except Exception as exc:  # Redis unreachable: the hash expires (HELD_TTL), its reservations before it
            log.warning("could not delete this worker's list of held budget reservations (%s: %s)",
                        type(exc).__name__, exc)

    def requeue_orphans(self) -> int:
        """Take what dead workers left on this machine — their journals, and spool files — and
        queue it; each journal or file is deleted once its records are committed (until then
        this worker holds it, and if it dies too, the next one takes it). The request id makes a
        second write of any record harmless, and the conditional settlement a second
        settlement."""
        queued = []
        found: list[tuple[Any, list[UsageRecord]]] = [(claim, claim.records()) for claim in journals_claim()]
        found += [(SpoolClaim(path), records) for path, records in spool_take()]
        for claim, records in found:
            if isinstance(claim, JournalClaim):
                self.takeovers.append((spend.held_key(claim.path.name), _settled_by_replay(records),
                                       time.monotonic()))
            if not records:
                claim.remove()
                continue
            for record in records:
                self.claimed_by[id(record)] = claim  # the record stays queued (referenced) until popped
            queued.extend(records)
            self.claims[claim] = len(records)
        self.pending[:0] = queued
        return len(queued)

    def _claims_done(self, records: list[UsageRecord]) -> None:
        """``records`` are committed: a journal or spool file whose records all are can go,
        once they are settled."""
        if not self.claimed_by:
            return
        for record in records:
            claim = self.claimed_by.pop(id(record), None)
            if claim is None or claim not in self.claims:
                continue
            self.claims[claim] -= 1
            if self.claims[claim] <= 0:
                del self.claims[claim]
                self.claims_committed.append(claim)


def _settled_by_replay(records: list[UsageRecord]) -> frozenset[str]:
    """The requests of a dead worker's journal whose reservations its replay settles."""
    return frozenset(record.request_id for record in records
                     if record.settlement is not None and record.settlement.reserved_keys)


def journals_sweep(*, min_age: float, settle: Callable[[list[str], list[int | str]], Any] | None,
                   release: Callable[[str], Any] | None = None) -> int:
    """Write the journals of dead workers last written at least ``min_age`` seconds ago (a
    restarting worker gets the first go) and settle them with ``settle`` (SETTLE_SCRIPT's KEYS
    and ARGV; None: there is no shared state to settle into), then release what the dead
    worker's held hash still lists with ``release`` (its held_key; HELD_RELEASE_SCRIPT).
    Synchronous, for the Celery sweep. The new rows' tokens are added to the tokens-per-day
    counters that exist, as the writer does (the minutes of tokens-per-minute corrections are
    long gone). Returns the number of records written; a journal whose write or release fails
    stays for the next sweep."""
    claims = journals_claim(min_age=min_age)
    written = 0
    try:
        while claims:
            claim = claims[0]
            records = claim.records()
            settling = Settling()
            for start in range(0, len(records), settings.GATEWAY_USAGE_BATCH):
                batch = records[start:start + settings.GATEWAY_USAGE_BATCH]
                settling.collect(batch, usage_records_write(batch))
            arguments = settling.budget_arguments()
            if arguments is not None and settle is not None:
                settle(*arguments)
            if release is not None:  # after the replay settled: nothing of the journal's is left to skip
                release(spend.held_key(claim.path.name))
            claim.remove()
            claims.pop(0)
            written += len(records)
            if records:
                log.warning("usage journal %s of a dead worker written: %d rows", claim.path, len(records))
    finally:
        for claim in claims:
            claim.let_go()
    return written


class SpoolClaim:
    """A claimed spool file, as ``UsageWriter.claims`` holds it."""

    def __init__(self, path: Path):
        self.path = path

    def remove(self) -> None:
        spool_release(self.path)

    def let_go(self) -> None:
        """Give the file back, unwritten: the next start takes it."""
        try:
            self.path.rename(self.path.with_suffix(".jsonl"))
        except FileNotFoundError:
            pass
        _held.discard(self.path)


def spool_dir() -> Path:
    return Path(settings.VAR_DIR) / "usage-spool"


def spool_write(records: list[UsageRecord]) -> Path:
    """Records the database would not take, as JSON lines on local disk (VAR_DIR/usage-spool),
    the journal's (billing.journal.record_line: ``UsageRecord.as_row`` and its settlement)."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.jsonl"
    with open(path, "wb") as out:
        for record in records:
            out.write(record_line(record))
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
        records = records_replayed((str(claimed), line) for line in claimed.read_bytes().splitlines(keepends=True))
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

