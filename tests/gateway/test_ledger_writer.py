"""The data plane's ledger writer when rows or the database misbehave: absurd usage from an
upstream is clamped and flagged, a row the database refuses is set aside without holding up the
others or the budgets, and a spool file lives until its rows are committed."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.db import connection

from billing.models import Budget, UsageDaily, UsageDeadLetter, UsageLog
from billing.pricing import MAX_COST, MAX_TOKENS, usage_cost
from billing.writer import UsageWriter, spool_dir, spool_write
from gateway.app import gateway
from gateway.db import close_db, run_db
from gateway.state import LocalState
from providers.models import ProviderModel
from tests.fakes import FakeOpenAI, FakeOpenRouter
from tests.support.live import add_provider, wait_usage
from tests.support.procs import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def chat(live, key, model: str, **body):
    return httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


def settle_all():
    loop = gateway.usage._task.get_loop()
    asyncio.run_coroutine_threadsafe(gateway.usage.flush(), loop).result(timeout=10)


def ledger_rows(tenant, n: int, prefix: str) -> list[dict]:
    day = datetime.now(UTC).date()
    return [{"request_id": f"{prefix}{i:03d}", "tenant_id": tenant.pk, "status": "ok", "input_tokens": 3,
             "output_tokens": 4, "cost": Decimal("0.000123"), "_day": day} for i in range(n)]


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
    batch[11]["output_tokens"] = 2**40  # past the clamp: only a bug could send it, but the ledger must go on
    writer = UsageWriter(state=LocalState(), run_db=run_db)

    async def flush():
        for row in batch:
            writer.add(dict(row))
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


# --- the spool ---------------------------------------------------------------------------------


def _point_db_at(settings_dict):
    connection.close()
    connection.settings_dict = settings_dict


def test_a_spool_file_stays_until_its_rows_are_committed(world, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    spool_write(ledger_rows(world.tenant, 3, "req_spool"))
    down = free_port()

    async def scenario():
        working = await run_db(lambda: connection.settings_dict)
        await run_db(_point_db_at, {**working, "HOST": "127.0.0.1", "PORT": str(down)})
        writer = UsageWriter(state=LocalState(), run_db=run_db)
        try:
            assert writer.requeue_spooled() == 3
            with pytest.raises(Exception):
                await writer.flush()  # the database refuses the connection
            on_disk = list(spool_dir().iterdir())
            assert len(on_disk) == 1 and len(writer.pending) == 3
        finally:
            await run_db(_point_db_at, working)
        assert await writer.flush() == 3
        assert list(spool_dir().iterdir()) == []
        again = UsageWriter(state=LocalState(), run_db=run_db)
        assert again.requeue_spooled() == 0
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
        spooled[2]["input_tokens"] = 2**40  # the poison does not come back with the next worker
        orphan = spool_write(spooled)
        with open(orphan, "ab") as out:
            out.write(b'{"request_id": "req_cut_short", "tenant_')  # the worker died mid-write
        orphan = orphan.rename(orphan.with_suffix(f".claimed-{dead.pid}"))
        busy = spool_write(ledger_rows(world.tenant, 2, "req_busy"))
        busy = busy.rename(busy.with_name(busy.stem + "-b.claimed-" + str(alive.pid)))

        async def scenario():
            writer = UsageWriter(state=LocalState(), run_db=run_db)
            assert writer.requeue_spooled() == 3  # the dead worker's file, not the live one's
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
    """Rows taken from a spool file and still unwritten at shutdown go to one new spool file; the
    claimed file is then removed, so the next start writes each row once."""
    settings.VAR_DIR = tmp_path
    spool_write(ledger_rows(world.tenant, 2, "req_old"))
    down = free_port()

    async def shutdown_with_database_down():
        working = await run_db(lambda: connection.settings_dict)
        await run_db(_point_db_at, {**working, "HOST": "127.0.0.1", "PORT": str(down)})
        try:
            writer = UsageWriter(state=LocalState(), run_db=run_db)
            writer.requeue_spooled()
            writer.add(ledger_rows(world.tenant, 1, "req_new")[0])
            await writer.close(attempts=2)
        finally:
            await run_db(_point_db_at, working)
        files = list(spool_dir().iterdir())
        assert len(files) == 1 and files[0].suffix == ".jsonl"
        writer = UsageWriter(state=LocalState(), run_db=run_db)
        assert writer.requeue_spooled() == 3
        await writer.close()
        await close_db()

    asyncio.run(shutdown_with_database_down())
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 3
    assert list(spool_dir().iterdir()) == []
