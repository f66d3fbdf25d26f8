"""A worker killed with SIGKILL under load loses nothing it answered (issue #17, "Proof").

A Tollgate worker runs in its own process (uvicorn, the test database and Redis, a temporary
VAR_DIR of its own, so its journal directory is known) in front of a loopback fake that is a
little slow, so there are always requests in flight. Sixteen concurrent clients load it; about
two seconds in, the worker's process group gets SIGKILL. The clients count, by x-request-id:

- answered: the whole answer arrived (a non-streamed 200 with its body; a stream's terminal
  event: ``data: [DONE]``, Anthropic ``message_stop``, Responses ``response.completed``);
- started: a stream's headers arrived, its terminal event did not;
- cut before headers: requests in flight whose id the client never saw.

Then a new worker starts on the same VAR_DIR (its start-up replays the dead worker's journal)
and the ledger must hold exactly one row per answered request (status ok), a row with status
partial for every started stream, no row for an id the client never saw beyond the requests
cut before their headers, rollups equal to the ledger (nothing counted twice), no budget
reservation left (a request the ledger holds is settled; one cut before its headers is released
when the new worker takes the dead one's journal over), and the budget's spend in Redis equal to
the ledger's costs (every record settled exactly once).

``GATEWAY_USAGE_FLUSH_SECONDS`` is 1 s in the worker (0.2 s by default): the ledger writer then
holds up to a second of records in memory when the worker dies, as a loaded worker does, so
the test cannot pass by luck of timing."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import httpx
import pytest
from django.db import connection
from django.db.models import Sum

from billing import spend
from billing.models import Budget, TenantDaily, UsageLog
from core.redis import get_redis
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider
from tests.utils.procs import REPO, free_port, wait_http

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENCY = 16
KILL_AFTER_S = 2.0
REPLAY_DEADLINE_S = 10.0
FLUSH_SECONDS = "1"
MODEL = "up:gpt-4o-mini"
EMBEDDING_MODEL = "up:text-embedding-3-small"

# kind -> (path, body, terminal event of its stream or None for a plain answer)
KINDS = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                      "max_tokens": 50}, None),
    "embeddings": ("/v1/embeddings", {"model": EMBEDDING_MODEL, "input": "hello there"}, None),
    "messages": ("/v1/messages", {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
                 None),
    "responses": ("/v1/responses", {"model": MODEL, "input": "hi", "max_output_tokens": 50}, None),
    "chat-stream": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                             "max_tokens": 50, "stream": True,
                                             "stream_options": {"include_usage": True}}, b"data: [DONE]"),
    "messages-stream": ("/v1/messages", {"model": MODEL, "max_tokens": 50, "stream": True,
                                         "messages": [{"role": "user", "content": "hi"}]}, b"event: message_stop"),
    "responses-stream": ("/v1/responses", {"model": MODEL, "input": "hi", "max_output_tokens": 50, "stream": True},
                         b"event: response.completed"),
}
PLAIN_MIX = ("chat", "chat", "embeddings", "messages", "responses")
STREAM_MIX = ("chat-stream", "messages-stream", "responses-stream")


@dataclass
class Outcome:
    kind: str
    state: str  # answered | started | cut (before its headers)
    request_id: str = ""
    status: int = 0


class Worker:
    """One Tollgate worker in its own process group, on the test database and Redis, with its
    own VAR_DIR."""

    def __init__(self, var_dir: Path, database_url: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true", "DATABASE_URL": database_url,
               "VAR_DIR": str(var_dir), "GATEWAY_JOURNAL_DIR": "",  # the journal in VAR_DIR/journal
               "GATEWAY_USAGE_FLUSH_SECONDS": FLUSH_SECONDS, "GATEWAY_REQUEST_LOG": "false"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(self.port),
             "--log-level", "warning"], cwd=REPO, env=env, start_new_session=True,
        )
        self.started = time.monotonic()
        wait_http(f"{self.url}/healthz", timeout=30, proc=self.proc)
        self.ready_s = time.monotonic() - self.started

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM: a clean stop writes everything the worker still holds."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


async def _one(session: aiohttp.ClientSession, url: str, key: str, kind: str) -> Outcome:
    path, body, terminal = KINDS[kind]
    outcome = Outcome(kind, "cut")
    try:
        async with session.post(url + path, json=body, headers={"Authorization": f"Bearer {key}",
                                                                "anthropic-version": "2023-06-01"}) as resp:
            outcome.request_id, outcome.status = resp.headers.get("x-request-id", ""), resp.status
            if terminal is None or resp.status != 200:
                await resp.json(content_type=None)
                outcome.state = "answered"
                return outcome
            outcome.state = "started"
            async for line in resp.content:
                if line.rstrip(b"\r\n") == terminal:
                    outcome.state = "answered"
            return outcome
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return outcome


async def load_and_kill(worker: Worker, key: str, mix: tuple[str, ...]) -> list[Outcome]:
    """CONCURRENCY clients send ``mix`` round robin until the worker is killed, KILL_AFTER_S in."""
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        async def client(n: int) -> None:
            i = n
            while not stop.is_set():
                outcomes.append(await _one(session, worker.url, key, mix[i % len(mix)]))
                i += 1

        clients = [asyncio.create_task(client(n)) for n in range(CONCURRENCY)]
        await asyncio.sleep(KILL_AFTER_S)
        stop.set()
        await asyncio.to_thread(worker.kill)
        await asyncio.gather(*clients)
    return outcomes


def ledger(tenant_id: int) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for request_id, status in UsageLog.objects.filter(tenant_id=tenant_id).values_list("request_id", "status"):
        rows.setdefault(request_id, []).append(status)
    return rows


def reservations(tenant_id: int) -> tuple[int, dict[str, int]]:
    """The tenant scope's reservation total and each request's share still held."""
    total, _, amounts = spend.reservation_keys(spend.reserved_key(tenant_id, None))
    redis = get_redis()
    held = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in redis.hgetall(amounts).items()}
    return int(redis.get(total) or 0), held


def spent(tenant_id: int) -> int:
    """Nano-dollars in the tenant scope's day buckets (what budgets are checked against)."""
    redis = get_redis()
    return sum(int(redis.get(key) or 0) for key in redis.scan_iter(match=f"tg:spend:t{tenant_id}:d*"))


def crash_and_replay(world, settings, tmp_path, mix: tuple[str, ...], *, chunk_delay: float, delay: float):
    db = settings.DATABASES["default"]
    database_url = (f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                    f"/{connection.settings_dict['NAME']}")
    var_dir = tmp_path / "var"
    with FakeOpenAI(models=["gpt-4o-mini", "text-embedding-3-small"], stream_chunks=6,
                    usage={"prompt_tokens": 10, "completion_tokens": 20}) as fake:
        add_provider(world.tenant, fake, provider_type="openai", max_retries=0)
        # A tenant budget: every admitted request holds a reservation until its record is settled.
        Budget.objects.create(tenant=world.tenant, name="Cap", amount=Decimal("1000"), action="block")
        fake.set_fault("slow", delay=delay, chunk_delay=chunk_delay)

        first = Worker(var_dir, database_url)
        try:
            outcomes = asyncio.run(load_and_kill(first, world.chat_key, mix))
        finally:
            if first.proc.poll() is None:
                first.kill()
        answered = {o.request_id for o in outcomes if o.state == "answered"}
        started = {o.request_id for o in outcomes if o.state == "started"}
        cut = sum(1 for o in outcomes if o.state == "cut")
        assert len(answered) > 50, f"too little load to prove anything: {Counter(o.state for o in outcomes)}"
        assert all(o.status == 200 for o in outcomes if o.state != "cut"), Counter(o.status for o in outcomes)

        second = Worker(var_dir, database_url)
        try:
            deadline = time.monotonic() + REPLAY_DEADLINE_S
            while not (answered | started) <= ledger(world.tenant.pk).keys() and time.monotonic() < deadline:
                time.sleep(0.1)
            replay_s = time.monotonic() - second.started
        finally:
            second.stop()  # a clean stop: whatever it still holds is written now

    rows = ledger(world.tenant.pk)
    journal = var_dir / "journal"
    journal_left = sorted(str(path.relative_to(journal)) for path in journal.rglob("*") if path.is_file())
    missing = answered - rows.keys()
    missing_partial = started - rows.keys()
    duplicates = {request_id for request_id, statuses in rows.items() if len(statuses) > 1}
    unseen = rows.keys() - answered - started
    not_ok = {request_id: rows[request_id] for request_id in answered & rows.keys() if rows[request_id] != ["ok"]}
    not_partial = {request_id: rows[request_id] for request_id in started & rows.keys()
                   if rows[request_id] != ["partial"]}
    rolled_up = TenantDaily.objects.filter(tenant=world.tenant).aggregate(n=Sum("requests"))["n"] or 0
    total, held = reservations(world.tenant.pk)
    ledger_nanos = sum(spend.to_nanos(cost) for cost in UsageLog.objects.filter(tenant=world.tenant)
                       .values_list("cost", flat=True))
    bucket_nanos = spent(world.tenant.pk)
    held_with_rows = held.keys() & rows.keys()
    print(f"\n[durability {'+'.join(sorted(set(mix)))}] answered {len(answered)}, streams started and cut "
          f"{len(started)}, cut before headers {cut}; ledger rows {len(rows)}: answered recorded "
          f"{len(answered) - len(missing)}, missing {len(missing)}, started recorded "
          f"{len(started) - len(missing_partial)} (partial {len(started) - len(missing_partial) - len(not_partial)}), "
          f"rows for unseen ids {len(unseen)}, duplicates {len(duplicates)}, rollup requests {rolled_up}; "
          f"reservations: total {total}, held {len(held)} ({len(held_with_rows)} of requests in the ledger); "
          f"budget spend {bucket_nanos} nano-USD vs ledger {ledger_nanos}; "
          f"second worker ready {second.ready_s:.1f} s, ledger complete {replay_s:.1f} s after its start; "
          f"files left in VAR_DIR/journal: {journal_left}")
    assert not missing, f"{len(missing)} of {len(answered)} answered requests have no ledger row"
    assert not missing_partial, f"{len(missing_partial)} of {len(started)} cut streams have no ledger row"
    assert not duplicates
    assert not not_ok, f"answered requests recorded as something else than ok: {not_ok}"
    assert not not_partial, f"cut streams recorded as something else than partial: {not_partial}"
    assert len(unseen) <= cut, f"{len(unseen)} rows for ids the client never saw, {cut} requests were in flight"
    assert rolled_up == len(rows), "the rollups do not equal the ledger (a record counted twice or not at all)"
    # A request in the ledger has been settled: its reservation is released. One cut before its
    # answer started, whose id nobody saw, was released when the new worker took the journal over.
    assert not held_with_rows, f"{len(held_with_rows)} requests in the ledger still hold a budget reservation"
    assert not held and total == 0, f"{len(held)} reservations of the dead worker still held after the takeover"
    # Each record's cost is added to the budget once: a replayed record already settled by the
    # dead worker is not counted again, a lost one is counted when it is replayed.
    assert bucket_nanos == ledger_nanos, "budget spend in Redis differs from the ledger's"


def test_sigkill_under_plain_load_loses_no_answered_request(world, settings, tmp_path):
    crash_and_replay(world, settings, tmp_path, PLAIN_MIX, delay=0.03, chunk_delay=0.0)


def test_sigkill_under_streams_records_every_answered_and_cut_stream(world, settings, tmp_path):
    crash_and_replay(world, settings, tmp_path, STREAM_MIX, delay=0.01, chunk_delay=0.015)


# --- a dead worker's budget reservations ----------------------------------------------------

HELD_BY_DEAD = 6  # requests waiting for their upstream in the worker that is killed
HELD_BY_LIVE = 4  # and in a worker that lives on
UPSTREAM_WAIT_S = 30.0  # longer than the test: nothing they hold is settled meanwhile
CHAT = KINDS["chat"][1]


def _post(worker: Worker, key: str, timeout: float) -> httpx.Response:
    return httpx.post(f"{worker.url}/v1/chat/completions", json=CHAT, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}"})


def _hold(worker: Worker, key: str, n: int) -> None:
    """``n`` requests sent to ``worker``, each left waiting for the slow upstream (in a thread)."""
    def one():
        try:
            _post(worker, key, timeout=UPSTREAM_WAIT_S * 2)
        except httpx.HTTPError:  # the worker is killed under it, or the test ends
            pass

    for _ in range(n):
        threading.Thread(target=one, daemon=True).start()


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def _held_key_of(var_dir: Path, worker: Worker) -> str:
    """The held hash of a worker (billing.spend.held_key of its journal: <host>-<pid>-<random>)."""
    (folder,) = (var_dir / "journal").glob(f"*-{worker.proc.pid}-*")
    return spend.held_key(folder.name)


def test_a_dead_workers_reservations_are_released_when_the_next_worker_starts(world, settings, tmp_path):
    """Two workers hold requests waiting for a slow upstream, each with its budget reservation;
    one is SIGKILLed. The budget is nearly spent: what is still reserved leaves no room for one
    more request, so the live worker refuses it. A new worker starts (as uvicorn restarts a dead
    one) and takes the dead worker's journal over: within seconds exactly the dead worker's
    reservations are released, the live worker's stay, and the refused request now passes."""
    db = settings.DATABASES["default"]
    database_url = (f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                    f"/{connection.settings_dict['NAME']}")
    var_dir = tmp_path / "var"
    tenant_id = world.tenant.pk
    redis = get_redis()
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 20}) as fake:
        add_provider(world.tenant, fake, provider_type="openai", max_retries=0)
        Budget.objects.create(tenant=world.tenant, name="Cap", amount=Decimal("1000"), period="day", action="block")
        fake.set_fault("slow", delay=UPSTREAM_WAIT_S, times=HELD_BY_DEAD + HELD_BY_LIVE)
        workers = [Worker(var_dir, database_url), Worker(var_dir, database_url)]
        doomed, live = workers
        try:
            _hold(doomed, world.chat_key, HELD_BY_DEAD)
            _wait_for(lambda: len(reservations(tenant_id)[1]) == HELD_BY_DEAD, 10, "the doomed worker's reservations")
            _hold(live, world.chat_key, HELD_BY_LIVE)
            _wait_for(lambda: len(reservations(tenant_id)[1]) == HELD_BY_DEAD + HELD_BY_LIVE, 10,
                      "the live worker's reservations")
            total, held = reservations(tenant_id)
            share = next(iter(held.values()))
            assert set(held.values()) == {share} and total == share * len(held)
            doomed_held, live_held = _held_key_of(var_dir, doomed), _held_key_of(var_dir, live)
            doomed_ids = {rid.decode() for rid in redis.hkeys(doomed_held)} - {""}
            live_ids = {rid.decode() for rid in redis.hkeys(live_held)} - {""}
            assert len(doomed_ids) == HELD_BY_DEAD and len(live_ids) == HELD_BY_LIVE
            assert doomed_ids | live_ids == held.keys()

            doomed.kill()
            # Nearly spent: what is reserved fits, one more request's share does not.
            amount = 1000 * int(spend.NANOS)
            (bucket,) = redis.keys(f"tg:spend:t{tenant_id}:d*")
            redis.set(bucket, amount - total - share // 2)
            refused = _post(live, world.chat_key, timeout=10)
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
            assert reservations(tenant_id)[0] == total, "the dead worker's reservations are still held"

            released_at: list[float] = []

            def watch():
                _wait_for(lambda: reservations(tenant_id)[0] < total, 30, "a release")
                released_at.append(time.monotonic())

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            replacement = Worker(var_dir, database_url)  # a new worker on the same machine
            workers.append(replacement)
            watcher.join(timeout=30)
            assert released_at, "the dead worker's reservations were not released"
            released_s = released_at[0] - replacement.started
            total_after, held_after = reservations(tenant_id)
            print(f"\n[reservations] {HELD_BY_DEAD} of a SIGKILLed worker released {released_s:.2f} s after the "
                  f"next worker was started (ready after {replacement.ready_s:.2f} s); {HELD_BY_LIVE} of a live "
                  f"worker kept")
            assert held_after.keys() == live_ids and total_after == share * HELD_BY_LIVE
            assert released_s < 10
            assert not redis.exists(doomed_held)
            assert {rid.decode() for rid in redis.hkeys(live_held)} - {""} == live_ids, "the live worker's list"
            for worker in (live, replacement):
                passed = _post(worker, world.chat_key, timeout=10)
                assert passed.status_code == 200, passed.text
                _wait_for(lambda: reservations(tenant_id)[0] == total_after, 10, "the passing request settled")
        finally:
            for worker in workers:
                if worker.proc.poll() is None:
                    worker.kill()
