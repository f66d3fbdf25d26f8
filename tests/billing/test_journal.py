"""The usage journal (billing.journal) and its replay by the writer (billing.writer) and by the
journals sweep (billing.tasks): a worker killed outright loses no record, a torn last line is
skipped, a replay writes and settles each request once, open markers stand for streams cut off,
segments go only once committed, and the fsync setting bounds what a machine loss can lose."""

import asyncio
import dataclasses
import importlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django_celery_beat.models import PeriodicTask

from billing import journal as journal_module
from billing import spend
from billing.journal import Journal, journals_claim
from billing.ledger import usage_records_write
from billing.models import UsageDaily, UsageLog
from billing.records import UsageRecord
from billing.tasks import journals_sweep
from billing.writer import UsageWriter
from core.redis import get_redis
from gateway.db import close_db, run_db
from gateway.state import LocalState, RedisState
from tenants.models import ApiKey
from tests.utils.admission import budget_admit
from tests.utils.procs import REPO, free_port

pytestmark = pytest.mark.django_db(transaction=True)

COST = Decimal("0.000123")
COST_NANOS = spend.to_nanos(COST)


@pytest.fixture
def var(settings, tmp_path) -> Path:
    settings.VAR_DIR = tmp_path
    settings.GATEWAY_JOURNAL = True
    settings.GATEWAY_JOURNAL_FSYNC_MS = 0
    return tmp_path


def record(tenant, request_id: str, *, settlement=None, **fields) -> UsageRecord:
    values = {"status": "ok", "input_tokens": 3, "output_tokens": 4, "cost": COST,
              "day": datetime.now(UTC).date(), **fields}
    return UsageRecord(request_id=request_id, tenant_id=tenant.pk, settlement=settlement, **values)


def dead_journal(records, *, markers=(), torn: bytes = b"") -> Path:
    """A journal as a worker leaves it when it dies: written, its lock no longer held."""
    journal = Journal()
    for marker in markers:
        journal.append(marker, marker=True)
    for item in records:
        journal.append(item)
    if torn:
        os.write(journal._fd, torn)
    journal.close()
    return journal.path


async def areplay(state=None) -> int:
    """What the next worker does: start (taking dead workers' journals), then stop."""
    writer = UsageWriter(state=state or LocalState(), run_db=run_db)
    writer.start()
    queued = len(writer.pending)
    await writer.close()
    await close_db()  # the writer's database thread lets go of the test database
    return queued


def started_by_hand(writer: UsageWriter) -> UsageWriter:
    """``writer`` started (its journal made, dead workers' journals taken) with its flush timer
    stopped: the test flushes by hand. Not by raising GATEWAY_USAGE_FLUSH_SECONDS: settings are
    the process's, and the session's live server (tests/utils/live.py), started by an earlier
    test in this process, reads that setting at every tick of its own writer's timer; it would
    sleep that long and write no usage row for the tests that follow."""
    writer.start()
    writer._task.cancel()
    return writer


def replay(state=None) -> int:
    return asyncio.run(areplay(state))


def journals(var: Path) -> list[Path]:
    root = var / "journal"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def segments(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != "lock")


def wait_until(predicate, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} not met within {timeout}s")


# --- budgets, in Redis and in its in-process twin -----------------------------------------------


class Budgets:
    """One tenant-scope budget of $1000 today, and reads of its reservation and bucket."""

    def __init__(self, kind: str, tenant_id: int, redis_url: str):
        self.kind = kind
        self.state = RedisState(redis_url) if kind == "redis" else LocalState()
        day = datetime.now(UTC).date()
        self.plans = [spend.ScopePlan(spend.scope_id(tenant_id), [day], [
            (spend.BudgetInfo(1, "b", "tenant", None, Decimal(1000), "day", "block", ""), 1)], resets_in=(60,))]
        self.tenant_id = tenant_id
        self.settlement = spend.settlement(self.plans)
        self.reserved, self.bucket = self.settlement.reserved_keys[0], self.settlement.bucket_keys[0]

    async def reserve(self, request_id: str, nanos: int = 10**6, *, by: Journal | None = None) -> spend.Settlement:
        """Reserve for ``request_id``, listed in the held hash of the worker whose journal is ``by``."""
        self.state.held = spend.held_key(by.path.name) if by is not None else ""
        await self.state.budget_seed({self.bucket: 0})
        assert await budget_admit(self.state, self.plans, reservation=nanos, request_id=request_id) == [0]
        return self.settlement

    def held(self) -> set[str]:
        if self.kind == "redis":
            return {rid.decode() for rid in get_redis().hkeys(f"{self.reserved}:amt")}
        return set(self.state.reservations.get(self.reserved, {}))

    def spent(self) -> int:
        if self.kind == "redis":
            return int(get_redis().get(self.bucket) or 0)
        return self.state.counters.get(self.bucket, 0)

    def total(self) -> int:
        return int(get_redis().get(self.reserved) or 0)


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


def listed(journal: Journal) -> set[str]:
    """The requests a worker's held hash lists (billing.spend.held_key of its journal)."""
    return {rid.decode() for rid in get_redis().hkeys(spend.held_key(journal.path.name))}


# --- replay -----------------------------------------------------------------------------------


def test_a_torn_last_line_is_skipped_with_a_warning_and_the_rest_replayed(world, var, caplog):
    path = dead_journal([record(world.tenant, f"req_torn{i}") for i in range(3)],
                        torn=b'{"request_id":"req_cut_short","tenant_id":')
    with caplog.at_level(logging.WARNING, logger="billing.journal"):
        assert replay() == 3
    assert set(UsageLog.objects.values_list("request_id", flat=True)) == {"req_torn0", "req_torn1", "req_torn2"}
    assert any("torn" in r.message and "req_cut_short" in r.message for r in caplog.records)
    assert not path.exists() and journals(var) == []


def test_a_replayed_line_keeps_its_key_and_project(world, var):
    key = ApiKey.objects.get(tenant=world.tenant, scope="chat")
    dead_journal([record(world.tenant, "req_project", api_key_id=key.pk, project_id=key.project_id),
                  record(world.tenant, "req_no_project")])
    assert replay() == 2
    rows = dict(UsageLog.objects.values_list("request_id", "project_id"))
    assert rows == {"req_project": key.project_id, "req_no_project": None}


def test_an_unreadable_line_in_the_middle_does_not_block_the_rest(world, var, caplog):
    journal = Journal()
    journal.append(record(world.tenant, "req_before"))
    os.write(journal._fd, b'{"request_id": "req_garbled", "tenant_id": "not a number"\n')
    journal.append(record(world.tenant, "req_after"))
    journal.close()
    with caplog.at_level(logging.WARNING, logger="billing.journal"):
        assert replay() == 2
    assert set(UsageLog.objects.values_list("request_id", flat=True)) == {"req_before", "req_after"}
    assert any("unreadable" in r.message for r in caplog.records)


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_replaying_a_journal_twice_writes_and_settles_each_request_once(world, var, settings, kind):
    """Four requests, each reserved: ``a`` and ``b`` never reached the ledger; ``c`` was committed
    but its worker died before settling it; ``d`` was committed and settled. The journal is
    replayed, then the same journal (a copy) again."""
    budgets = Budgets(kind, world.tenant.pk, settings.REDIS_URL)

    async def scenario():
        rows = {rid: record(world.tenant, rid, settlement=await budgets.reserve(rid)) for rid in "abcd"}
        await run_db(usage_records_write, [rows["c"], rows["d"]])
        await budgets.state.budget_settle(*spend.settle_arguments(
            [(budgets.reserved, "d")], {budgets.bucket: COST_NANOS}))  # d's worker settled it
        assert budgets.held() == {"a", "b", "c"} and budgets.spent() == COST_NANOS
        path = dead_journal(list(rows.values()))
        copy = shutil.copytree(path, var / "copy")

        assert await areplay(budgets.state) == 4
        assert budgets.held() == set()
        assert budgets.spent() == 4 * COST_NANOS  # a, b and c added once each, d not again

        shutil.copytree(copy, path)  # the same journal, replayed a second time
        assert await areplay(budgets.state) == 4
        assert budgets.spent() == 4 * COST_NANOS and budgets.held() == set()
        await budgets.state.close()

    asyncio.run(scenario())
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 4
    assert UsageDaily.objects.get(tenant=world.tenant).requests == 4
    if kind == "redis":
        assert int(get_redis().get(budgets.reserved) or 0) == 0  # each reservation taken off the total once


def test_the_next_worker_releases_what_a_dead_worker_held_and_nothing_a_live_one_holds(world, var, settings):
    """A worker dies holding reservations for ``waiting1`` and ``waiting2`` (waiting for their
    upstream: no record), ``answered`` (its record in the journal, not yet written) and
    ``committed`` (written, not yet settled); another worker, alive, holds ``live``. The next
    worker to start releases the two waiting ones at once — before its first flush, as its timer
    does — but not the two its journal's replay settles, whose costs are counted once; and it
    leaves ``live`` alone."""
    budgets = Budgets("redis", world.tenant.pk, settings.REDIS_URL)
    other = Journal()  # the live worker's

    async def scenario():
        dead = Journal()
        for rid in ("waiting1", "waiting2"):
            await budgets.reserve(rid, by=dead)
        for rid in ("answered", "committed"):
            dead.append(record(world.tenant, rid, settlement=await budgets.reserve(rid, by=dead)))
        await run_db(usage_records_write, [record(world.tenant, "committed", settlement=budgets.settlement)])
        await budgets.reserve("live", by=other)
        assert listed(dead) == {"waiting1", "waiting2", "answered", "committed"} and budgets.total() == 5 * 10**6
        dead.close()  # killed: its lock is free, its list and reservations still in Redis

        writer = UsageWriter(state=budgets.state, run_db=run_db)
        writer.start()
        await until(lambda: not writer.takeovers)  # its timer's first step, before its first flush
        await writer.close()
        await close_db()
        assert budgets.held() == {"live"} and budgets.total() == 10**6
        assert budgets.spent() == 2 * COST_NANOS, "answered and committed: settled by the replay, once each"
        assert not get_redis().exists(spend.held_key(dead.path.name))
        assert listed(other) == {"live"}
        await budgets.state.close()

    try:
        asyncio.run(scenario())
    finally:
        other.remove()
    assert sorted(UsageLog.objects.values_list("request_id", flat=True)) == ["answered", "committed"]
    assert get_redis().keys("tg:held:*") == [spend.held_key(other.path.name).encode()], (
        "the next worker stopped cleanly, everything settled: its own list is gone")


def test_when_redis_is_down_at_takeover_the_release_waits_for_it(world, var, settings):
    """Nothing breaks: the journal is written, and the dead worker's reservations are released
    at the first tick Redis answers again (or expire, RESERVATION_TTL, as they always did)."""
    budgets = Budgets("redis", world.tenant.pk, settings.REDIS_URL)

    async def scenario():
        dead = Journal()
        await budgets.reserve("waiting", by=dead)
        dead.close()
        down = RedisState(f"redis://127.0.0.1:{free_port()}/0")
        writer = UsageWriter(state=down, run_db=run_db)
        writer.start()
        await asyncio.sleep(3 * settings.GATEWAY_USAGE_FLUSH_SECONDS)  # a few ticks
        assert budgets.held() == {"waiting"} and len(writer.takeovers) == 1
        writer.state = budgets.state  # Redis answers again
        await until(lambda: not writer.takeovers)
        assert budgets.held() == set() and budgets.total() == 0
        await writer.close()
        await close_db()
        await down.close()
        await budgets.state.close()

    asyncio.run(scenario())


CHILD = """
import os, sys, time
import django
django.setup()
from datetime import UTC, datetime
from decimal import Decimal
from billing.records import UsageRecord
from billing.writer import UsageWriter

tenant = int(sys.argv[1])
writer = UsageWriter(state=None, run_db=None)
day = datetime.now(UTC).date()
row = lambda rid, **kw: UsageRecord(**{"request_id": rid, "tenant_id": tenant, "input_tokens": 3,
                                       "output_tokens": 4, "cost": Decimal("0.000123"), "day": day, **kw})
for i in range(5):
    writer.add(row(f"req_killed{i}"))
cut = dict(status="partial", error_type="worker_lost", tokens_estimated=True, stream=True)
writer.open(row("req_stream_cut", **cut))
writer.open(row("req_stream_done", **cut))
writer.add(row("req_stream_done", stream=True, output_tokens=40))
print("ready", flush=True)
time.sleep(60)
"""


def test_a_worker_killed_outright_leaves_every_record_to_the_next_worker(world, var, tmp_path):
    env = {**os.environ, "VAR_DIR": str(var), "ENV_FILE": "/dev/null", "GATEWAY_JOURNAL": "true",
           "GATEWAY_USAGE_FLUSH_SECONDS": "3600"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(world.tenant.pk)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert journals_claim() == []  # alive: its journal is locked
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert len(journals(var)) == 1

    assert replay() == 7
    rows = {row.request_id: row for row in UsageLog.objects.filter(tenant=world.tenant)}
    assert set(rows) == {*(f"req_killed{i}" for i in range(5)), "req_stream_cut", "req_stream_done"}
    cut, done = rows["req_stream_cut"], rows["req_stream_done"]
    assert (cut.status, cut.error_type, cut.tokens_estimated) == ("partial", "worker_lost", True)
    assert (done.status, done.error_type, done.output_tokens) == ("ok", "", 40)  # the final wins over its marker
    assert journals(var) == []


def test_open_markers_outlive_rotation_and_stand_for_streams_never_finished(world, var):
    """A stream opened before a flush is still open after it: its marker is written into the new
    segment, so deleting the committed ones does not lose it."""

    async def worker_that_dies():
        writer = started_by_hand(UsageWriter(state=LocalState(), run_db=run_db))
        writer.open(record(world.tenant, "req_open", status="partial", error_type="worker_lost", stream=True))
        writer.open(record(world.tenant, "req_closed", status="partial", error_type="worker_lost", stream=True))
        writer.add(record(world.tenant, "req_plain"))
        writer.add(record(world.tenant, "req_closed", stream=True))
        assert await writer.flush() == 2
        assert segments(writer.journal.path) == ["0000000002.jsonl"]  # the first is committed: gone
        assert b'"req_open"' in (writer.journal.path / "0000000002.jsonl").read_bytes()  # copied forward
        assert b'"req_closed"' not in (writer.journal.path / "0000000002.jsonl").read_bytes()
        assert await writer.flush() == 0
        assert segments(writer.journal.path) == ["0000000002.jsonl"]  # an open marker alone: no new segment
        writer._task.cancel()
        writer.journal.close()  # dies: its lock goes, its files stay
        await close_db()

    asyncio.run(worker_that_dies())
    assert set(UsageLog.objects.values_list("request_id", flat=True)) == {"req_plain", "req_closed"}
    assert replay() == 1
    row = UsageLog.objects.get(request_id="req_open")
    assert (row.status, row.error_type) == ("partial", "worker_lost")
    assert UsageLog.objects.get(request_id="req_closed").status == "ok"


def test_a_full_disk_fails_no_request_and_loses_no_row_while_the_worker_lives(world, var, caplog):
    async def scenario():
        writer = started_by_hand(UsageWriter(state=LocalState(), run_db=run_db))
        segment = os.dup(writer.journal._fd)
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, writer.journal._fd)  # the segment now answers ENOSPC, as a full disk does
        os.close(full)
        with caplog.at_level(logging.ERROR, logger="billing.writer"):
            writer.add(record(world.tenant, "req_full1"))
            writer.add(record(world.tenant, "req_full2"))
        assert writer.journal_failures == 2
        assert await writer.flush() == 2  # from memory
        os.dup2(segment, writer.journal._fd)  # space again
        os.close(segment)
        writer.add(record(world.tenant, "req_after"))
        assert writer.journal_failures == 2
        await writer.close()
        await close_db()

    asyncio.run(scenario())
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 3
    assert [r.message for r in caplog.records if "journal write failed" in r.message][0].count("No space") == 1


# --- rotation and an unreachable database -----------------------------------------------------


def _point_db_at(settings_dict):
    connection.close()
    connection.settings_dict = settings_dict


def test_rotation_deletes_only_committed_segments_and_a_failed_write_keeps_them(world, var):
    down = free_port()

    async def scenario():
        writer = started_by_hand(UsageWriter(state=LocalState(), run_db=run_db))
        path = writer.journal.path
        writer.add(record(world.tenant, "req_one"))
        assert await writer.flush() == 1
        assert segments(path) == ["0000000002.jsonl"]
        writer.add(record(world.tenant, "req_two"))
        working = await run_db(lambda: connection.settings_dict)
        await run_db(_point_db_at, {**working, "HOST": "127.0.0.1", "PORT": str(down)})
        try:
            with pytest.raises(Exception):  # noqa: B017 - the database refuses the connection
                await writer.flush()
            assert [r.request_id for r in writer.pending] == ["req_two"]
            assert segments(path) == ["0000000002.jsonl", "0000000003.jsonl"]  # kept
            writer.add(record(world.tenant, "req_three"))
        finally:
            await run_db(_point_db_at, working)
        assert await writer.flush() == 2
        assert segments(path) == ["0000000004.jsonl"]  # every closed segment, now committed
        assert await writer.flush() == 0
        assert segments(path) == ["0000000004.jsonl"]  # nothing written since: no new segment
        await writer.close()
        await close_db()
        return path

    path = asyncio.run(scenario())
    assert not path.exists()  # a clean stop deletes the journal
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 3


def test_shutdown_with_the_database_down_leaves_the_journal_not_a_spool_file(world, var):
    down = free_port()

    async def shutdown_with_database_down():
        working = await run_db(lambda: connection.settings_dict)
        await run_db(_point_db_at, {**working, "HOST": "127.0.0.1", "PORT": str(down)})
        try:
            writer = started_by_hand(UsageWriter(state=LocalState(), run_db=run_db))
            for i in range(3):
                writer.add(record(world.tenant, f"req_left{i}"))
            await writer.close(attempts=2)
        finally:
            await run_db(_point_db_at, working)
        await close_db()

    asyncio.run(shutdown_with_database_down())
    assert not (var / "usage-spool").exists()
    assert len(journals(var)) == 1
    claims = journals_claim()
    assert len(claims) == 1  # left, and unlocked
    claims[0].let_go()
    assert replay() == 3
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 3
    assert journals(var) == []


# --- fsync ------------------------------------------------------------------------------------


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """The files fsynced from now on (the real fsync still runs)."""
    synced: list[str] = []
    real = os.fsync
    lock = threading.Lock()

    def fsync(fd):
        with lock:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    return synced


def test_the_fsync_setting_fsyncs_the_journal_in_the_background(world, var, settings, fsynced):
    settings.GATEWAY_JOURNAL_FSYNC_MS = 20
    journal = Journal()
    try:
        journal.append(record(world.tenant, "req_sync"))
        first = str(journal.path / "0000000001.jsonl")
        wait_until(lambda: first in fsynced, what="the segment fsynced")
        wait_until(lambda: str(journal.path) in fsynced, what="the directory fsynced (the segment's name)")
        journal.rotate()
        journal.append(record(world.tenant, "req_sync2"))
        second = str(journal.path / "0000000002.jsonl")
        wait_until(lambda: second in fsynced, what="the new segment fsynced")
    finally:
        journal.remove()


def test_fsync_zero_never_fsyncs(world, var, fsynced):
    async def scenario():
        writer = UsageWriter(state=LocalState(), run_db=run_db)
        writer.start()
        for i in range(20):
            writer.add(record(world.tenant, f"req_nosync{i}"))
        await writer.flush()
        await writer.close()
        await close_db()

    asyncio.run(scenario())
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 20
    assert fsynced == []
    assert not any(t.name == "tollgate-journal-fsync" for t in threading.enumerate())


# --- the sweep --------------------------------------------------------------------------------


def test_the_sweep_replays_an_old_orphan_and_leaves_a_young_one_and_a_live_one(world, var, settings):
    budgets = Budgets("redis", world.tenant.pk, settings.REDIS_URL)
    old_journal, young_journal, live = Journal(), Journal(), Journal()

    async def reserve():
        try:
            # each worker also holds a request still waiting for its upstream (no record)
            for rid, journal in (("req_old_waiting", old_journal), ("req_young_waiting", young_journal),
                                 ("req_live_waiting", live)):
                await budgets.reserve(rid, by=journal)
            return await budgets.reserve("req_old_orphan", by=old_journal)
        finally:
            await budgets.state.close()

    settlement = asyncio.run(reserve())
    counter, lost = f"tg:tokens:t{world.tenant.pk}:d20261206", f"tg:tokens:t{world.tenant.pk}:k9:d20261206"
    settlement = dataclasses.replace(settlement, token_keys=(counter, lost))
    get_redis().set(counter, 100)
    old_journal.append(record(world.tenant, "req_old_orphan", settlement=settlement))
    old_journal.close()
    old = old_journal.path
    long_ago = time.time() - 120
    for path in old.iterdir():
        os.utime(path, (long_ago, long_ago))
    young_journal.append(record(world.tenant, "req_young_orphan"))
    young_journal.close()
    young = young_journal.path
    live.append(record(world.tenant, "req_live"))
    try:
        assert journals_sweep() == 1
        assert list(UsageLog.objects.values_list("request_id", flat=True)) == ["req_old_orphan"]
        assert not old.exists() and young.exists() and live.path.exists()
        # settled through Redis; the old orphan's waiting request released, the young one's left
        # to the worker that replaces it, the live one's alone
        assert budgets.held() == {"req_young_waiting", "req_live_waiting"} and budgets.spent() == COST_NANOS
        assert not get_redis().exists(spend.held_key(old.name))
        assert listed(young_journal) == {"req_young_waiting"} and listed(live) == {"req_live_waiting"}
        # its 7 tokens counted in the tokens-per-day counter Redis holds; a missing one is rebuilt
        assert (get_redis().get(counter), get_redis().get(lost)) == (b"107", None)
        assert journals_sweep() == 0  # nothing left that is old and dead
    finally:
        live.remove()



def test_beat_runs_the_journals_sweep_every_minute():
    # Transactional tests empty every table afterwards, the migration's schedule with them: the
    # migration's own function puts it back (it is idempotent), then the row is checked.
    migration = importlib.import_module("billing.migrations.0013_journals_sweep_schedule")
    migration.add_schedule(django_apps, None)
    task = PeriodicTask.objects.get(task="billing.journals_sweep")
    assert task.enabled and (task.interval.every, task.interval.period) == (1, "minutes")
    assert PeriodicTask.objects.filter(task="billing.journals_sweep").count() == 1
    migration.add_schedule(django_apps, None)
    assert PeriodicTask.objects.filter(task="billing.journals_sweep").count() == 1


def test_the_sweep_keeps_a_journal_it_could_not_write_and_retries(world, var, caplog):
    """Run inline (eagerly), Celery's retries run at once, one after another: each is logged
    with its backoff, and the journal stays for a later sweep."""
    old = dead_journal([record(world.tenant, "req_waits")])
    long_ago = time.time() - 120
    for path in old.iterdir():
        os.utime(path, (long_ago, long_ago))
    working = connection.settings_dict
    _point_db_at({**working, "HOST": "127.0.0.1", "PORT": str(free_port())})
    try:
        with caplog.at_level(logging.INFO, logger="celery.app.trace"):
            result = journals_sweep.apply()
    finally:
        _point_db_at(working)
    retries = [r.getMessage() for r in caplog.records if "retry: Retry in" in r.getMessage()]
    assert len(retries) == journals_sweep.max_retries and "OperationalError" in retries[0]
    assert result.state == "FAILURE"  # every retry used up (a worker would have spread them out)
    assert old.exists()
    claims = journals_claim()
    assert [c.path for c in claims] == [old]  # given back: its lock is free
    claims[0].let_go()
    assert journals_sweep() == 1
    assert UsageLog.objects.filter(request_id="req_waits").exists() and not old.exists()


def test_a_journal_directory_left_half_made_is_removed_once_it_is_old_and_unlocked(var):
    # a worker that died between making its hidden directory and renaming it left only the lock
    root = journal_module.journal_root()
    root.mkdir(parents=True, exist_ok=True)
    old, young = root / ".host-1-dead0001", root / ".host-2-dead0002"
    for folder in (old, young):
        folder.mkdir()
        (folder / journal_module.LOCK).touch()
    long_ago = time.time() - 2 * journal_module.ABANDONED_SECONDS
    os.utime(old, (long_ago, long_ago))
    held = Journal()  # a live journal is never touched
    try:
        assert journals_claim() == []
        assert not old.exists() and young.exists() and held.path.exists()
    finally:
        held.remove()
