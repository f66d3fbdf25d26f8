"""Billing on the data plane: the ledger and its rollups, budgets that hold under concurrency,
Redis lost and rebuilt, and a worker that is stopped writing everything it answered."""

import asyncio
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.db import connection
from django.db.models import Count, Sum

from billing import spend
from billing.ledger import usage_records_write
from billing.models import Budget, UsageDaily, UsageDeadLetter, UsageLog
from billing.records import UsageRecord
from billing.spend import BudgetInfo, plan
from core.redis import get_redis
from gateway.app import gateway
from providers.services import alias_create
from tenants.access import SYSTEM
from tenants.services import api_key_create, tenant_update
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, burst, wait_usage
from tests.utils.procs import REPO, free_port, wait_http

pytestmark = pytest.mark.django_db(transaction=True)

# gpt-4o-mini in the genai-prices catalog: $0.15 input, $0.60 output per million tokens.
USAGE = {"prompt_tokens": 10, "completion_tokens": 100}
COST = (10 * Decimal("0.15") + 100 * Decimal("0.6")) / 10**6  # $0.0000615 per request


def call(live, key, **body):
    return httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 100, **body})


def spend_today(tenant, amount: Decimal, key_id: int = 0):
    day = datetime.now(ZoneInfo(tenant.timezone)).date()
    UsageDaily.objects.create(tenant=tenant, day=day, api_key_id=key_id, requests=1, cost=amount)


def settle_all():
    """Wait for the usage writer to write and settle what it holds."""
    asyncio.run_coroutine_threadsafe(gateway.usage.flush(), gateway_loop()).result(timeout=10)


def gateway_loop():
    return gateway.usage._task.get_loop()


def test_rollups_equal_the_ledger(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai", max_retries=0)
        tenant_update(tenant=world.tenant, changes={"cache_enabled": True}, actor=SYSTEM)
        for _ in range(3):
            call(live, world.chat_key)
        call(live, world.chat_key, temperature=0)
        call(live, world.chat_key, temperature=0)  # a cache hit
        call(live, world.chat_key, model="nope")  # an error without a model
        fake.set_fault("status", status=500)
        call(live, world.chat_key)  # an upstream error
        fake.clear_faults()
        stream = call(live, world.chat_key, stream=True)
        assert stream.status_code == 200
        settle_all()
    ledger = UsageLog.objects.filter(tenant=world.tenant).aggregate(
        n=Count("id"), cost=Sum("cost"), out=Sum("output_tokens"), inp=Sum("input_tokens"))
    rollup = UsageDaily.objects.filter(tenant=world.tenant).aggregate(
        n=Sum("requests"), cost=Sum("cost"), out=Sum("output_tokens"), inp=Sum("input_tokens"), err=Sum("errors"),
        hits=Sum("cache_hits"))
    assert ledger["n"] == rollup["n"] == 8
    assert (ledger["cost"], ledger["out"], ledger["inp"]) == (rollup["cost"], rollup["out"], rollup["inp"])
    assert rollup["err"] == 2 and rollup["hits"] == 1
    assert ledger["cost"] == COST * 5  # four answered + the stream; the cache hit is free


def test_a_retried_write_never_duplicates(world):
    row = {"request_id": "req_dup", "tenant_id": world.tenant.pk, "status": "ok", "input_tokens": 5,
           "output_tokens": 7, "cost": Decimal("0.001")}
    assert len(usage_records_write([UsageRecord(**row)])) == 1
    assert usage_records_write([UsageRecord(**row), UsageRecord(**row)]) == []
    assert UsageLog.objects.filter(request_id="req_dup").count() == 1
    assert UsageDaily.objects.get(tenant=world.tenant).requests == 1


def test_a_request_id_twice_in_one_batch_is_written_and_counted_once_as_the_first_row(world):
    first = UsageRecord(request_id="req_twice", tenant_id=world.tenant.pk, status="ok", input_tokens=5,
                        output_tokens=7, cost=Decimal("0.001"))
    second = UsageRecord(request_id="req_twice", tenant_id=world.tenant.pk, status="ok", input_tokens=5,
                         output_tokens=99, cost=Decimal("0.5"))
    written = usage_records_write([first, second])
    assert written == [first]
    assert UsageLog.objects.get(request_id="req_twice").output_tokens == 7
    daily = UsageDaily.objects.get(tenant=world.tenant)
    assert (daily.requests, daily.output_tokens, daily.cost) == (1, 7, Decimal("0.001"))


def test_every_column_is_stored_exactly_as_the_record_gave_it(world):
    key, _ = api_key_create(tenant=world.tenant, name="k", actor=SYSTEM)
    at = datetime(2026, 3, 1, 10, 47, 12, 345678, tzinfo=ZoneInfo("UTC"))
    row = {"request_id": "req_exact", "tenant_id": world.tenant.pk, "api_key_id": key.pk,
           "model_requested": "fast \"ünïcode\" \\ 🚀", "attempts": 2, "status": "partial",
           "error_type": "client_disconnected", "input_tokens": 2**31 - 1, "cached_input_tokens": 3,
           "cache_write_tokens": 4, "output_tokens": 5, "reasoning_tokens": 6, "tokens_estimated": True,
           "cost": Decimal("12345678.123456789012"), "provider_cost": Decimal("0.000000000001"), "latency_ms": 1234,
           "ttft_ms": 56, "stream": True, "conversation_id": "conv-1", "end_user": "alice@example.com",
           "api": "messages", "created_at": at}
    assert len(usage_records_write([UsageRecord(**row)])) == 1
    stored = UsageLog.objects.filter(request_id="req_exact").values(*row).get()
    assert stored == row
    usage_records_write([UsageRecord(request_id="req_defaults", tenant_id=world.tenant.pk)])  # defaults only
    stored = UsageLog.objects.get(request_id="req_defaults")
    assert (stored.api_key_id, stored.cost, stored.provider_cost, stored.ttft_ms, stored.status, stored.end_user,
            stored.tokens_estimated, stored.api) == (None, None, None, None, "ok", "", False, "chat")


def test_text_too_long_for_its_column_is_set_aside_not_cut(world):
    record = UsageRecord(request_id="req_long", tenant_id=world.tenant.pk, status="ok", model_requested="m" * 256)
    assert usage_records_write([record]) == []
    assert not UsageLog.objects.filter(request_id="req_long").exists()
    assert "too long" in UsageDeadLetter.objects.get(request_id="req_long").reason


def test_a_row_of_a_deleted_key_is_kept_without_the_key(world):
    key, _ = api_key_create(tenant=world.tenant, name="gone", actor=SYSTEM)
    good = UsageRecord(request_id="req_a", tenant_id=world.tenant.pk, api_key_id=key.pk, status="ok")
    key.delete()
    written = usage_records_write([good, UsageRecord(request_id="req_b", tenant_id=world.tenant.pk, status="ok")])
    assert {r.request_id for r in written} == {"req_a", "req_b"}
    assert UsageLog.objects.get(request_id="req_a").api_key_id is None


def test_block_budget_refuses_with_a_clear_message(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        Budget.objects.create(tenant=world.tenant, name="Monthly", amount=Decimal("0.001"), action="block")
        spend_today(world.tenant, Decimal("0.00099"))
        response = call(live, world.chat_key)
        assert response.status_code == 429
        error = response.json()["error"]
        assert error["code"] == "budget_exceeded" and "Budget 'Monthly' is exhausted" in error["message"]
        assert "resets at" in error["message"] and int(response.headers["retry-after"]) > 0
        assert fake.requests_to("/v1/chat/completions") == []
        assert wait_usage(response.headers["x-request-id"]).status == "rejected"


def test_alert_budget_keeps_serving_and_downgrade_routes_to_the_cheaper_alias(world, live):
    with (FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake,
          FakeOpenAI(models=["cheap"], reply="cheap one") as cheap):
        add_provider(world.tenant, fake, provider_type="openai")
        add_provider(world.tenant, cheap, name="c")
        alias_create(tenant=world.tenant, actor=SYSTEM,
                     data={"name": "budget-model", "targets": [{"model": "c:cheap"}]})
        budget = Budget.objects.create(tenant=world.tenant, name="Soft", amount=Decimal("0.0001"), action="alert")
        spend_today(world.tenant, Decimal("1"))
        assert call(live, world.chat_key).status_code == 200
        Budget.objects.filter(pk=budget.pk).update(action="downgrade", downgrade_alias="budget-model")
        gateway.configs.clear()
        response = call(live, world.chat_key)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "cheap one"
        assert response.headers["x-tollgate-budget-downgrade"] == "Soft"
        assert response.headers["x-tollgate-model"] == "c:cheap"


def test_key_and_tenant_budgets_both_apply(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        key, raw = api_key_create(tenant=world.tenant, name="capped", actor=SYSTEM)
        Budget.objects.create(tenant=world.tenant, name="Key cap", scope="key", api_key=key, amount=Decimal("0.001"),
                              action="block", period="day")
        Budget.objects.create(tenant=world.tenant, name="Tenant cap", amount=Decimal("100"), action="block")
        spend_today(world.tenant, Decimal("0.00099"), key_id=key.pk)
        blocked = call(live, raw)
        assert blocked.status_code == 429 and "Key cap" in blocked.json()["error"]["message"]
        assert call(live, world.chat_key).status_code == 200  # the other key only meets the tenant budget
        Budget.objects.filter(name="Tenant cap").update(amount=Decimal("0.5"))
        spend_today(world.tenant, Decimal("0.5"))
        get_redis().flushdb()  # spend written straight to the database: let Redis rebuild from it
        gateway.configs.clear()
        assert "Tenant cap" in call(live, world.chat_key).json()["error"]["message"]


def test_200_concurrent_requests_overspend_at_most_one_worst_case(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        amount = Decimal("0.01")
        Budget.objects.create(tenant=world.tenant, name="Hard", amount=amount, action="block")
        spend_today(world.tenant, Decimal("0.0095"))

        statuses = burst(live, world.chat_key, n=200, body={
            "model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100})
        settle_all()
    served = statuses.count(200)
    assert statuses.count(429) == 200 - served and 0 < served < 20
    recorded = UsageLog.objects.filter(tenant=world.tenant, status="ok").aggregate(c=Sum("cost"))["c"]
    spent = Decimal("0.0095") + (recorded or 0)
    worst_case = (Decimal(200) * Decimal("0.15") + 100 * Decimal("0.6")) / 10**6  # far above a real request's cost
    assert spent <= amount + worst_case
    assert served == len(fake.requests_to("/v1/chat/completions"))


def test_redis_flushed_mid_period_rebuilds_from_the_rollups(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        Budget.objects.create(tenant=world.tenant, name="Tight", amount=Decimal("0.001"), action="block")
        spend_today(world.tenant, Decimal("0.0009"))
        first = call(live, world.chat_key)
        assert first.status_code == 200
        settle_all()
        assert call(live, world.chat_key).status_code == 429  # 0.0009 + 0.0000615 + a reservation > 0.001
        get_redis().flushdb()  # Redis restarts empty
        again = call(live, world.chat_key)
        assert again.status_code == 429, "the spend was rebuilt from PostgreSQL, not forgotten"
        Budget.objects.filter(name="Tight").update(amount=Decimal("0.002"))
        gateway.configs.clear()
        assert call(live, world.chat_key).status_code == 200


def test_budget_periods_follow_the_tenant_time_zone():
    auckland = ZoneInfo("Pacific/Auckland")
    # Sunday 2026-11-22 08:00 in Auckland is still Saturday 2026-11-21 in UTC.
    now = datetime(2026, 11, 22, 8, 0, tzinfo=auckland)
    budgets = [BudgetInfo(1, "d", "tenant", None, Decimal(1), "day", "block", ""),
               BudgetInfo(2, "w", "tenant", None, Decimal(1), "week", "block", ""),
               BudgetInfo(3, "m", "tenant", None, Decimal(1), "month", "block", ""),
               BudgetInfo(4, "r", "tenant", None, Decimal(1), "rolling_30d", "block", ""),
               BudgetInfo(5, "k", "key", 9, Decimal(1), "day", "block", "")]
    plans = plan(budgets, tenant_id=1, key_id=7, zone=auckland, now=now)
    assert [p.sid for p in plans] == ["t1"]
    assert len(plans) == 1  # key 9's budget does not cover key 7
    tenant_scope = plans[0]
    assert tenant_scope.days[-1].isoformat() == "2026-11-22"
    assert {b.name: n for b, n in tenant_scope.budgets} == {"d": 1, "w": 7, "m": 22, "r": 30}
    assert tenant_scope.days[0] == tenant_scope.days[-1] - timedelta(days=29)


def test_sigterm_writes_every_answered_request(world, live, settings, tmp_path):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        port = free_port()
        db = settings.DATABASES["default"]
        env = {**os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true", "GATEWAY_USAGE_FLUSH_SECONDS": "60",
               "VAR_DIR": str(tmp_path / "var"),
               "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                               f"{connection.settings_dict['NAME']}"}
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port),
                                 "--log-level", "warning"], cwd=REPO, env=env, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
            ids = []
            with httpx.Client(timeout=20) as client:
                for _ in range(40):
                    r = client.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                    headers={"Authorization": f"Bearer {world.chat_key}"},
                                    json={"model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
                    assert r.status_code == 200
                    ids.append(r.headers["x-request-id"])
            assert UsageLog.objects.filter(request_id__in=ids).count() == 0  # all still buffered (60 s flush)
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises it after a clean stop
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert UsageLog.objects.filter(request_id__in=ids).count() == 40
    assert UsageDaily.objects.filter(tenant=world.tenant).aggregate(n=Sum("requests"))["n"] == 40
    assert list((tmp_path / "var" / "journal").iterdir()) == []  # a clean stop leaves no journal


def test_kill_9_loses_no_answered_request(world, live, settings, tmp_path):
    """A worker killed outright with every row still buffered (60 s flush): its journal holds
    them, and the next worker to start writes them and settles their budget reservations."""
    Budget.objects.create(tenant=world.tenant, name="Daily", amount=Decimal("100"), period="day", action="block")
    var = tmp_path / "var"
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        port = free_port()
        db = settings.DATABASES["default"]
        env = {**os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true", "GATEWAY_USAGE_FLUSH_SECONDS": "60",
               "VAR_DIR": str(var),
               "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                               f"{connection.settings_dict['NAME']}"}
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port),
                                 "--log-level", "warning"], cwd=REPO, env=env, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
            ids = []
            with httpx.Client(timeout=20) as client:
                for i in range(40):
                    r = client.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                    headers={"Authorization": f"Bearer {world.chat_key}"},
                                    json={"model": "up:gpt-4o-mini", "max_tokens": 100, "stream": i % 2 == 1,
                                          "stream_options": {"include_usage": True} if i % 2 else None,
                                          "messages": [{"role": "user", "content": "x"}]})
                    assert r.status_code == 200
                    ids.append(r.headers["x-request-id"])
            assert UsageLog.objects.filter(request_id__in=ids).count() == 0  # all still buffered
            reserved = f"tg:resv:t{world.tenant.pk}:amt"
            assert get_redis().hlen(reserved) == 40  # every reservation still held
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    settings.VAR_DIR = var

    async def next_worker():
        from billing.writer import UsageWriter
        from gateway.db import close_db, run_db
        from gateway.state import RedisState

        state = RedisState(settings.REDIS_URL)
        writer = UsageWriter(state, run_db=run_db)
        writer.start()
        await writer.close()
        await state.close()
        await close_db()

    asyncio.run(next_worker())
    assert UsageLog.objects.filter(request_id__in=ids).count() == 40
    assert UsageDaily.objects.filter(tenant=world.tenant).aggregate(n=Sum("requests"))["n"] == 40
    assert get_redis().hlen(reserved) == 0  # each released by the replay
    bucket = spend.bucket_key(world.tenant.pk, None, datetime.now(ZoneInfo(world.tenant.timezone)).date())
    assert int(get_redis().get(bucket)) == 40 * spend.to_nanos(COST)  # each cost counted once
    assert list((var / "journal").iterdir()) == []
