"""The ledger's writer (billing.writer) when rows or the database misbehave: absurd usage from an
upstream is clamped and flagged, a row the database refuses is set aside without holding up the
others or the budgets, and, with the journal off, a shutdown with the database down spools the
rows (with their settlements); a spool file lives until its rows are committed, and a spool
file an earlier release left is still written. The journal itself: tests/billing/test_journal.py."""

import asyncio
import subprocess
import sys
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.db import OperationalError, connection, transaction

from billing import spend
from billing.dead_letter_services import usage_dead_letters_retry
from billing.ledger import usage_records_write
from billing.models import Budget, UsageDaily, UsageDeadLetter, UsageLog
from billing.pricing import MAX_COST, MAX_TOKENS, usage_cost
from billing.records import UsageRecord
from billing.spend import Settlement
from billing.writer import Settling, UsageWriter, spool_dir, spool_write
from core.redis import get_redis
from gateway.app import gateway
from gateway.db import close_db, run_db
from gateway.state import LocalState, RedisState, tpd_key
from providers.models import ProviderModel
from tenants.access import SYSTEM
from tests.fakes import FakeOpenAI, FakeOpenRouter
from tests.utils.live import add_provider, wait_usage
from tests.utils.procs import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def chat(live, key, model: str, **body):
    return httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


def settle_all():
    loop = gateway.usage._task.get_loop()
    asyncio.run_coroutine_threadsafe(gateway.usage.flush(), loop).result(timeout=10)


def ledger_rows(tenant, n: int, prefix: str) -> list[UsageRecord]:
    day = datetime.now(UTC).date()
    return [UsageRecord(request_id=f"{prefix}{i:03d}", tenant_id=tenant.pk, status="ok", input_tokens=3,
                        output_tokens=4, cost=Decimal("0.000123"), day=day) for i in range(n)]


# --- usage from the upstream -------------------------------------------------------------------


def test_absurd_token_counts_from_an_upstream_are_clamped_and_flagged(world, live):
    usage = {"prompt_tokens": 3_000_000_000, "completion_tokens": 5}
    with FakeOpenAI(models=["gpt-4o-mini"], usage=usage) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        plain = chat(live, world.chat_key, "up:gpt-4o-mini")
        streamed = chat(live, world.chat_key, "up:gpt-4o-mini", stream=True, stream_options={"include_usage": True})
    assert plain.status_code == streamed.status_code == 200
    model = ProviderModel.objects.get(provider__owner=world.tenant, model_id="gpt-4o-mini")
    for response in (plain, streamed):
        row = wait_usage(response.headers["x-request-id"])
        assert (row.status, row.input_tokens, row.output_tokens) == ("ok", MAX_TOKENS, 5)
        assert row.error_type == "usage_clamped"
        assert row.cost == usage_cost(input_tokens=MAX_TOKENS, cached_input_tokens=0, output_tokens=5,
                                      input_price=model.input_price, output_price=model.output_price,
                                      cached_input_price=model.cached_input_price)
    assert not UsageDeadLetter.objects.exists()


def test_an_absurd_reported_cost_is_clamped_and_flagged(world, live):
    with FakeOpenRouter(models=["openai/gpt-4o"], usage={"prompt_tokens": 10, "completion_tokens": 5,
                                                         "cost": 1e9}) as fake:
        add_provider(world.tenant, fake, provider_type="openrouter")
        response = chat(live, world.chat_key, "up:openai/gpt-4o")
    assert response.status_code == 200
    row = wait_usage(response.headers["x-request-id"])
    assert (row.input_tokens, row.output_tokens, row.provider_cost) == (10, 5, MAX_COST)
    assert row.error_type == "usage_clamped" and row.cost < Decimal("0.001")


# --- rows the database refuses -----------------------------------------------------------------


def test_the_writer_sets_a_refused_row_aside_and_writes_the_rest(world):
    batch = ledger_rows(world.tenant, 30, "req_w")
    batch[11].output_tokens = 2**40  # past the clamp: only a bug could send it, but the ledger must go on
    writer = UsageWriter(state=LocalState(), run_db=run_db)

    async def flush():
        for row in batch:
            writer.add(row)
        written = await asyncio.wait_for(writer.flush(), timeout=20)
        await close_db()
        return written

    assert asyncio.run(flush()) == 30
    assert writer.pending == []
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 29
    assert UsageDaily.objects.get(tenant=world.tenant).requests == 29
    assert UsageDeadLetter.objects.get().request_id == "req_w011"


def test_a_refused_row_still_releases_its_budget_reservation(world, live):
    """A price stored before prices were bounded, and an upstream that answers with far more
    tokens than asked for, make a cost the ledger cannot hold: the row is set aside, and its
    reservation is released, so the next request still fits the budget."""
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 200_000}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        ProviderModel.objects.filter(provider__owner=world.tenant).update(output_price=Decimal("1e9"))
        # Each request reserves its 10 output tokens at $1e9 per million: $10,000 of the $15,000
        # budget. It then costs 200,000 tokens' worth: $2e8, more than a ledger row holds.
        Budget.objects.create(tenant=world.tenant, name="Huge", amount=Decimal("15000"), action="block")
        first = chat(live, world.chat_key, "up:gpt-4o-mini", max_tokens=10)
        assert first.status_code == 200
        settle_all()
        second = chat(live, world.chat_key, "up:gpt-4o-mini", max_tokens=10)
        assert second.status_code == 200, second.json()
        settle_all()
    letters = set(UsageDeadLetter.objects.values_list("request_id", flat=True))
    assert letters == {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert "overflow" in UsageDeadLetter.objects.first().reason
    assert gateway.usage.pending == []


@pytest.fixture
def refusing_777():
    """The database refuses ledger rows with 777 input tokens until ``allow()`` (committed: the
    live server's connection must see it; dropped at the end whatever happens)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE billing_usagelog ADD CONSTRAINT test_no_777 CHECK (input_tokens <> 777)")

    def allow():
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE billing_usagelog DROP CONSTRAINT IF EXISTS test_no_777")

    yield allow
    allow()


def test_a_retried_dead_letter_counts_in_the_live_budget_and_tokens_per_day_at_once(world, live, refusing_777):
    """A row the database refused was settled at cost 0 (its reservation released); once the
    cause is fixed and it is retried, its cost is in the budget's Redis bucket and its tokens in
    the tokens-per-day counter the moment the retry commits: the next request sees it."""
    with FakeOpenAI(models=["m"], usage={"prompt_tokens": 777, "completion_tokens": 20}) as fake:
        add_provider(world.tenant, fake)
        ProviderModel.objects.filter(provider__owner=world.tenant).update(input_price=Decimal("1000"),
                                                                          output_price=Decimal("0"))
        Budget.objects.create(tenant=world.tenant, name="Day", amount=Decimal("0.8"), period="day", action="block")
        world.tenant.tokens_per_day = 10_000
        world.tenant.save()
        first = chat(live, world.chat_key, "up:m", max_tokens=1)  # costs 777 tokens at $1,000 a million
        assert first.status_code == 200
        settle_all()
        letter = UsageDeadLetter.objects.get(request_id=first.headers["x-request-id"])
        day = datetime.now(ZoneInfo(world.tenant.timezone)).date()
        bucket = spend.bucket_of(f"t{world.tenant.pk}", day)
        tokens = tpd_key(f"t{world.tenant.pk}", day)
        redis = get_redis()
        assert (redis.get(bucket), redis.get(tokens)) == (b"0", b"0"), "set aside: settled without it"
        assert redis.get(spend.reserved_of(f"t{world.tenant.pk}")) in (None, b"0")
        refusing_777()  # the cause is fixed
        result = usage_dead_letters_retry(letters=UsageDeadLetter.objects.filter(pk=letter.pk), actor=SYSTEM)
        assert result.written == [letter.pk]
        assert (int(redis.get(bucket)), int(redis.get(tokens))) == (777_000_000, 797)  # $0.777, 777 + 20
        refused = chat(live, world.chat_key, "up:m", max_tokens=1)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        assert "$0.7770 of $0.80 spent" in refused.json()["error"]["message"]
        # retrying again (the row is in the ledger now) adds nothing
        UsageDeadLetter.objects.create(request_id=letter.request_id, tenant_id=world.tenant.pk, row=letter.row,
                                       reason="again")
        usage_dead_letters_retry(letters=UsageDeadLetter.objects.all(), actor=SYSTEM)
        assert (int(redis.get(bucket)), int(redis.get(tokens))) == (777_000_000, 797)
        assert len(fake.requests_to("/v1/chat/completions")) == 1


def test_a_retry_while_redis_is_down_writes_the_row_and_says_the_counters_miss_it(world, settings, caplog,
                                                                                  refusing_777):
    row = UsageRecord(request_id="req_later", tenant_id=world.tenant.pk, status="ok", input_tokens=777,
                      output_tokens=3, cost=Decimal("0.5"), day=date(2026, 12, 6),
                      settlement=Settlement(reserved_keys=(), bucket_keys=("tg:spend:t1:d20261206",),
                                            token_keys=("tg:tokens:t1:d20261206",)))
    assert usage_records_write([row]) == []
    refusing_777()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    get_redis.cache_clear()
    try:
        result = usage_dead_letters_retry(letters=UsageDeadLetter.objects.all(), actor=SYSTEM)
    finally:
        get_redis.cache_clear()
    assert len(result.written) == 1 and UsageLog.objects.filter(request_id="req_later").exists()
    assert "Redis is unreachable" in caplog.text and "req_later" in caplog.text


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_a_settlement_kept_through_an_outage_counts_once_in_a_bucket_rebuilt_meanwhile(world, settings, kind):
    """Worker A commits rows but cannot settle them (Redis unreachable); Redis comes back empty
    and worker B rebuilds the budget bucket and tokens-per-day counter from the rollups, which
    hold A's rows; then A's kept settlement lands. It must not count them again — and rows the
    rebuild could not see (committed after its read, or still in flight during it, even when
    settled before its seed) must be."""
    state = RedisState(settings.REDIS_URL) if kind == "redis" else LocalState()
    loop = asyncio.new_event_loop()  # the asyncio Redis client keeps to one loop
    day = datetime.now(UTC).date()
    sid = f"t{world.tenant.pk}"
    bucket, tokens_key = spend.bucket_of(sid, day), tpd_key(sid, day)
    settlement = Settlement(reserved_keys=(), bucket_keys=(bucket,), token_keys=(tokens_key,))

    def row(request_id: str) -> UsageRecord:  # $0.25 and 30 tokens each
        return UsageRecord(request_id=request_id, tenant_id=world.tenant.pk, status="ok", input_tokens=10,
                           output_tokens=20, cost=Decimal("0.25"), day=day, settlement=settlement)

    def written(*rows: UsageRecord) -> Settling:
        settling = Settling()
        settling.collect(list(rows), usage_records_write(list(rows)))
        return settling

    def rollups():
        def read():
            return (spend.spend_by_day(tenant_id=world.tenant.pk, days=[day])[day],
                    spend.tokens_by_day(tenant_id=world.tenant.pk, days=[day], source=spend.SpendSource())[day])
        return spend.rollups_read(read)

    def seed(read):
        (cost, tokens), snapshot = read
        return state.budget_seed({bucket: cost, tokens_key: tokens}, snapshot=snapshot)

    def rebuild():
        return seed(rollups())

    def lose():
        if kind == "redis":
            get_redis().delete(bucket, tokens_key)
        else:
            state.counters.pop(bucket), state.counters.pop(tokens_key)

    def read() -> tuple[int, int]:
        if kind == "redis":
            return int(get_redis().get(bucket)), int(get_redis().get(tokens_key))
        return state.counters[bucket], state.counters[tokens_key]

    async def settle(settling: Settling) -> None:
        await state.budget_settle(*settling.budget_arguments())

    # A's rows, committed; its settlement kept. B rebuilds (its read sees them), then A settles.
    kept = written(row("req_a1"), row("req_a2"))
    loop.run_until_complete(rebuild())
    assert read() == (500_000_000, 60)
    loop.run_until_complete(settle(kept))
    assert read() == (500_000_000, 60), "counted once"

    # rows committed after the rebuild's read: added when settled
    loop.run_until_complete(settle(written(row("req_a3"))))
    assert read() == (750_000_000, 90)

    # rows whose transaction was still open while another rebuild read: not seen, so added
    lose()
    inside, release = threading.Event(), threading.Event()
    outcome = {}

    def open_transaction():
        with transaction.atomic():
            outcome["settling"] = written(row("req_a4"))
            inside.set()
            release.wait(10)
        connection.close()

    writer = threading.Thread(target=open_transaction)
    writer.start()
    assert inside.wait(10)
    loop.run_until_complete(rebuild())  # reads 3 rows: the fourth is not committed yet
    release.set()
    writer.join(10)
    assert read() == (750_000_000, 90)
    loop.run_until_complete(settle(outcome["settling"]))
    assert read() == (1_000_000_000, 120)

    # rows written after a rebuild read and settled before its seed (the counter still missing):
    # the seed adds them
    lose()
    before = rollups()
    loop.run_until_complete(settle(written(row("req_a5"))))
    loop.run_until_complete(seed(before))
    assert read() == (1_250_000_000, 150)
    # and the rollups agree
    assert spend.spend_by_day(tenant_id=world.tenant.pk, days=[day])[day] == 1_250_000_000
    loop.run_until_complete(state.close())
    loop.close()


# --- the spool ---------------------------------------------------------------------------------


def _point_db_at(settings_dict):
    connection.close()
    connection.settings_dict = settings_dict


def test_with_the_journal_off_rows_refused_at_shutdown_are_spooled_and_settled_later(world, settings, tmp_path):
    """The spool keeps each record's settlement: the next start writes the row, releases its
    reservation and adds its cost to the budget's bucket."""
    settings.VAR_DIR = tmp_path
    settings.GATEWAY_JOURNAL = False
    state = LocalState()
    reserved, bucket = "tg:resv:t1", "tg:spend:t1:d20260301"
    state.reservations[reserved] = {"req_spooled": (10**6, 2e9)}
    state.counters[bucket] = 0
    row = UsageRecord(request_id="req_spooled", tenant_id=world.tenant.pk, status="ok", input_tokens=3,
                      output_tokens=4, cost=Decimal("0.000123"), day=datetime.now().date(),
                      settlement=Settlement(reserved_keys=(reserved,), bucket_keys=(bucket,)))

    class DatabaseDown(Exception):
        pass

    async def shutdown_with_database_down():
        writer = UsageWriter(state=None, run_db=run_db)
        writer.add(row)

        async def refuse():
            raise DatabaseDown("connection refused")
        writer.flush = refuse
        await writer.close(attempts=2)
        return writer

    asyncio.run(shutdown_with_database_down())
    assert len(list((tmp_path / "usage-spool").glob("*.jsonl"))) == 1
    assert not (tmp_path / "journal").exists()
    assert not UsageLog.objects.filter(request_id="req_spooled").exists()

    async def next_start():
        writer = UsageWriter(state=state, run_db=run_db)
        writer.start()
        await writer.close()
        await close_db()  # the writer's database thread lets go of the test database

    asyncio.run(next_start())
    written = UsageLog.objects.get(request_id="req_spooled")
    assert written.cost == Decimal("0.000123") and written.output_tokens == 4
    assert list((tmp_path / "usage-spool").iterdir()) == []
    assert state.reservations[reserved] == {} and state.counters[bucket] == spend.to_nanos(Decimal("0.000123"))


# A line exactly as the writer of earlier releases (gateway/usage.py) spooled it: the gateway's
# row dict with its private ``_day`` key, money as strings, times in ISO 8601. The tenant's day
# (1 March) is not the UTC day of created_at (2 March): the rollup must follow ``_day``.
OLD_SPOOL_LINE = (
    b'{"request_id":"req_old_format","tenant_id":%d,"api_key_id":null,"model_requested":"smart",'
    b'"provider_id":null,"provider_model_id":null,"attempts":1,"status":"ok","error_type":"",'
    b'"input_tokens":10,"cached_input_tokens":2,"cache_write_tokens":0,"output_tokens":20,'
    b'"reasoning_tokens":0,"tokens_estimated":false,"cost":"0.000123000000","provider_cost":null,'
    b'"latency_ms":42,"ttft_ms":null,"stream":false,"conversation_id":"conv-1","end_user":"alice",'
    b'"_day":"2026-03-01","created_at":"2026-03-02T01:30:00.123456+00:00"}\n'
)


def test_a_spool_file_of_an_earlier_release_is_written_on_its_day(world, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    folder = tmp_path / "usage-spool"
    folder.mkdir()
    (folder / "20260302T013000123456-4242-0123abcd.jsonl").write_bytes(OLD_SPOOL_LINE % world.tenant.pk)

    async def next_start():
        writer = UsageWriter(state=LocalState(), run_db=run_db)
        writer.start()
        await writer.close()
        await close_db()

    asyncio.run(next_start())
    row = UsageLog.objects.get(request_id="req_old_format")
    assert (row.tenant_id, row.model_requested, row.attempts, row.status) == (world.tenant.pk, "smart", 1, "ok")
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.latency_ms) == (10, 2, 20, 42)
    assert (row.cost, row.provider_cost, row.conversation_id, row.end_user) == (Decimal("0.000123"), None,
                                                                                "conv-1", "alice")
    assert row.created_at == datetime(2026, 3, 2, 1, 30, 0, 123456, tzinfo=UTC)
    daily = UsageDaily.objects.get(tenant=world.tenant)
    assert (daily.day, daily.requests, daily.cost) == (date(2026, 3, 1), 1, Decimal("0.000123"))
    assert list(folder.iterdir()) == []


def test_a_spool_file_stays_until_its_rows_are_committed(world, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    spool_write(ledger_rows(world.tenant, 3, "req_spool"))
    down = free_port()

    async def scenario():
        working = await run_db(lambda: connection.settings_dict)
        await run_db(_point_db_at, {**working, "HOST": "127.0.0.1", "PORT": str(down)})
        writer = UsageWriter(state=LocalState(), run_db=run_db)
        try:
            assert writer.requeue_orphans() == 3
            with pytest.raises(OperationalError):
                await writer.flush()  # the database refuses the connection
            on_disk = list(spool_dir().iterdir())
            assert len(on_disk) == 1 and len(writer.pending) == 3
        finally:
            await run_db(_point_db_at, working)
        assert await writer.flush() == 3
        assert list(spool_dir().iterdir()) == []
        again = UsageWriter(state=LocalState(), run_db=run_db)
        assert again.requeue_orphans() == 0
        await close_db()

    asyncio.run(scenario())
    assert UsageLog.objects.filter(request_id__startswith="req_spool").count() == 3
    assert UsageDaily.objects.get(tenant=world.tenant).requests == 3


def test_spool_files_claimed_by_a_dead_worker_are_taken_over(world, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        spooled = ledger_rows(world.tenant, 3, "req_orphan")
        spooled[2].input_tokens = 2**40  # the poison does not come back with the next worker
        orphan = spool_write(spooled)
        with open(orphan, "ab") as out:
            out.write(b'{"request_id": "req_cut_short", "tenant_')  # the worker died mid-write
        orphan = orphan.rename(orphan.with_suffix(f".claimed-{dead.pid}"))
        busy = spool_write(ledger_rows(world.tenant, 2, "req_busy"))
        busy = busy.rename(busy.with_name(busy.stem + "-b.claimed-" + str(alive.pid)))

        async def scenario():
            writer = UsageWriter(state=LocalState(), run_db=run_db)
            assert writer.requeue_orphans() == 3  # the dead worker's file, not the live one's
            assert await writer.flush() == 3
            await close_db()

        asyncio.run(scenario())
        assert not orphan.exists() and busy.exists()
        assert set(UsageLog.objects.values_list("request_id", flat=True)) == {"req_orphan000", "req_orphan001"}
        assert UsageDeadLetter.objects.get().request_id == "req_orphan002"
    finally:
        alive.kill()
        alive.wait()


def test_shutdown_with_the_database_down_respools_claimed_rows_once(world, settings, tmp_path):
    """Journal off: rows taken from a spool file and still unwritten at shutdown go to one new
    spool file; the claimed file is then removed, so the next start writes each row once."""
    settings.VAR_DIR = tmp_path
    settings.GATEWAY_JOURNAL = False
    spool_write(ledger_rows(world.tenant, 2, "req_old"))
    down = free_port()

    async def shutdown_with_database_down():
        working = await run_db(lambda: connection.settings_dict)
        await run_db(_point_db_at, {**working, "HOST": "127.0.0.1", "PORT": str(down)})
        try:
            writer = UsageWriter(state=LocalState(), run_db=run_db)
            writer.requeue_orphans()
            writer.add(ledger_rows(world.tenant, 1, "req_new")[0])
            await writer.close(attempts=2)
        finally:
            await run_db(_point_db_at, working)
        files = list(spool_dir().iterdir())
        assert len(files) == 1 and files[0].suffix == ".jsonl"
        writer = UsageWriter(state=LocalState(), run_db=run_db)
        assert writer.requeue_orphans() == 3
        await writer.close()
        await close_db()

    asyncio.run(shutdown_with_database_down())
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 3
    assert list(spool_dir().iterdir()) == []


def test_with_the_journal_on_a_shutdown_with_the_database_down_gives_claimed_spool_files_back(
        world, settings, tmp_path):
    """Journal on: nothing is spooled; the claimed spool file goes back unwritten and the new
    row stays in the journal, so the next start writes each row once."""
    settings.VAR_DIR = tmp_path
    settings.GATEWAY_JOURNAL = True
    spool_write(ledger_rows(world.tenant, 2, "req_old"))
    down = free_port()

    async def shutdown_with_database_down():
        working = await run_db(lambda: connection.settings_dict)
        await run_db(_point_db_at, {**working, "HOST": "127.0.0.1", "PORT": str(down)})
        try:
            writer = UsageWriter(state=LocalState(), run_db=run_db)
            writer.start()
            assert len(writer.pending) == 2
            writer.add(ledger_rows(world.tenant, 1, "req_new")[0])
            await writer.close(attempts=2)
        finally:
            await run_db(_point_db_at, working)
        files = list(spool_dir().iterdir())
        assert len(files) == 1 and files[0].suffix == ".jsonl"  # the same file, given back
        assert len(list((tmp_path / "journal").iterdir())) == 1
        writer = UsageWriter(state=LocalState(), run_db=run_db)
        assert writer.requeue_orphans() == 3
        await writer.close()
        await close_db()

    asyncio.run(shutdown_with_database_down())
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 3
    assert list(spool_dir().iterdir()) == []
    assert list((tmp_path / "journal").iterdir()) == []
