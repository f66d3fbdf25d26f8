"""Redis down under a running worker (issue #17): every /v1 door answers 503 store_unavailable
in its own shape with retry-after, the refusals are in the ledger and the metrics, health names
redis, the console and /api keep answering, and the worker recovers by itself when Redis is
back. Tenants that fail open are served and their spend reaches the budget afterwards; a block
budget always fails closed; a slow Redis is bounded by REDIS_TIMEOUT_SECONDS.

Each test starts its own ``redis-server`` on a free port and a Tollgate worker in its own
process pointed at it (the suite's own Redis stays up)."""

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from django.db import connection

from billing import spend
from billing.models import Budget, UsageLog
from billing.writer import SETTLE_BACKOFF_CAP, UsageWriter
from core.redis import get_redis
from gateway.db import run_db
from gateway.deployments import Candidate
from gateway.routing import tenant_config_load
from gateway.state import Pick, RedisState, StoreUnavailable
from tenants.access import SYSTEM
from tenants.services import tenant_create, tenant_update
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage
from tests.utils.procs import REPO, free_port, wait_http

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = {"prompt_tokens": 10, "completion_tokens": 100}
CHAT = {"model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
MESSAGE = {"model": "up:gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


class RedisServer:
    """A throwaway redis-server on ``port``, no persistence: a restart loses everything."""

    def __init__(self, port: int):
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def own_redis():
    server = RedisServer(free_port()).start()
    yield server
    server.stop()


@contextmanager
def worker(settings, tmp_path, redis_url: str, **extra: str):
    """A Tollgate worker process on its own port, the test database and ``redis_url``."""
    port = free_port()
    db = settings.DATABASES["default"]
    env = {
        **os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true", "REDIS_URL": redis_url,
        "VAR_DIR": str(tmp_path / "var"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                        f"/{connection.settings_dict['NAME']}",
        **extra,
    }
    env.pop("CELERY_BROKER_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=env, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise


def post(base, path, key, body, **headers):
    return httpx.post(f"{base}{path}", json=body, headers={"Authorization": f"Bearer {key}", **headers}, timeout=20)


def wait_until(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.1)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_openai_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "store_unavailable" and error["type"] == "server_error"
    assert "rate-limit and budget store is unreachable" in error["message"]
    assert int(response.headers["retry-after"]) >= 1


def assert_anthropic_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    assert "rate-limit and budget store is unreachable" in body["error"]["message"]
    assert int(response.headers["retry-after"]) >= 1


def test_redis_stopped_under_load_every_door_answers_503_and_the_worker_recovers(
        world, live, settings, tmp_path, own_redis):
    with FakeOpenAI(models=["gpt-4o-mini", "text-embedding-3-small"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        with worker(settings, tmp_path, own_redis.url, REDIS_TIMEOUT_SECONDS="1") as base:
            assert post(base, "/v1/chat/completions", world.chat_key, CHAT).status_code == 200

            # Given steady concurrent traffic, when Redis stops under it:
            def one(_):
                response = post(base, "/v1/chat/completions", world.chat_key, CHAT)
                return response.status_code, response.headers.get("x-request-id")

            with ThreadPoolExecutor(8) as pool:
                during = [pool.submit(one, i) for i in range(40)]
                time.sleep(0.3)
                own_redis.stop()
                after = [pool.submit(one, i) for i in range(40)]
                results = [f.result() for f in during + after]
            statuses = {status for status, _ in results}
            assert statuses <= {200, 503}, statuses  # never a bare 500
            refused_under_load = [rid for status, rid in results[40:] if status == 503]
            assert len(refused_under_load) == 40  # every request sent after the stop

            # then every door answers 503 in its own shape, with retry-after
            doors = {
                "chat": post(base, "/v1/chat/completions", world.chat_key, CHAT),
                "embeddings": post(base, "/v1/embeddings", world.chat_key,
                                   {"model": "up:text-embedding-3-small", "input": "a"}),
                "responses": post(base, "/v1/responses", world.chat_key, {"model": "up:gpt-4o-mini", "input": "hi"}),
            }
            for response in doors.values():
                assert_openai_503(response)
            assert_openai_503(httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {world.chat_key}"}))
            assert_anthropic_503(post(base, "/v1/messages", world.chat_key, MESSAGE, **{"anthropic-version": "1"}))
            assert_anthropic_503(httpx.get(f"{base}/v1/models", headers={"x-api-key": world.chat_key,
                                                                        "anthropic-version": "2023-06-01"}))
            # count_tokens is never admitted nor billed: it needs no store and keeps answering
            counted = post(base, "/v1/messages/count_tokens", world.chat_key, MESSAGE)
            assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
            # a bad key is still refused (the database checks keys), not let through
            assert post(base, "/v1/chat/completions", "tg-not-a-key", CHAT).status_code == 401

            # the refusals are in the ledger, as rejected
            for rid in refused_under_load[:5] + [doors["chat"].headers["x-request-id"]]:
                row = wait_usage(rid, timeout=10)
                assert (row.status, row.error_type) == ("rejected", "store_unavailable")
            assert wait_usage(doors["responses"].headers["x-request-id"], timeout=10).api == "responses"

            # health names redis, not its error text; the console and /api answer
            health = httpx.get(f"{base}/healthz", timeout=10)
            assert health.status_code == 503
            assert health.json()["checks"] == {"database": "ok", "redis": "error"}
            ready = httpx.get(f"{base}/readyz", timeout=10)  # still in rotation: it answers for itself
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "error"
            assert httpx.get(f"{base}/accounts/login/", timeout=10).status_code == 200
            api = httpx.get(f"{base}/api/tenants", headers={"Authorization": f"Bearer {world.admin_key}"}, timeout=10)
            assert api.status_code == 200 and api.json()["results"][0]["slug"] == "acme"

            # and the metrics count them
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert metric(text, "tollgate_store_unavailable_total", tenant="acme", outcome="refused") >= 46
            assert metric(text, "tollgate_rejections_total", tenant="acme", reason="store_unavailable") >= 44

            # When Redis is back on the same port, requests are served again, no restart.
            own_redis.start()
            wait_until(lambda: post(base, "/v1/chat/completions", world.chat_key, CHAT).status_code == 200,
                       timeout=15, what="serving again")
            for path, body in (("/v1/embeddings", {"model": "up:text-embedding-3-small", "input": "a"}),
                               ("/v1/responses", {"model": "up:gpt-4o-mini", "input": "hi"}),
                               ("/v1/messages", MESSAGE)):
                assert post(base, path, world.chat_key, body).status_code == 200, path
            assert httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {world.chat_key}"}).status_code \
                == 200
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


def test_a_tenant_that_fails_open_is_served_and_its_spend_reaches_the_budget_afterwards(
        world, live, settings, tmp_path, own_redis):
    # Given the platform fails open: acme inherits it (an alert budget does not stop it), other
    # chooses closed, and "blocky" chooses open but has a block budget.
    Budget.objects.create(tenant=world.tenant, name="Soft", amount=Decimal("100"), action="alert")
    tenant_update(tenant=world.other, changes={"redis_outage": "closed"}, actor=SYSTEM)
    blocky = tenant_create(slug="blocky", name="Blocky", admin_email="owner@blocky.test")
    tenant_update(tenant=blocky.tenant, changes={"redis_outage": "open"}, actor=SYSTEM)
    Budget.objects.create(tenant=blocky.tenant, name="Hard", amount=Decimal("100"), action="block")
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        for tenant in (world.tenant, world.other, blocky.tenant):
            add_provider(tenant, fake, provider_type="openai")
        with worker(settings, tmp_path, own_redis.url, REDIS_TIMEOUT_SECONDS="1",
                    GATEWAY_REDIS_OUTAGE="open") as base:
            for key in (world.chat_key, world.other_chat_key, blocky.chat_key):
                assert post(base, "/v1/chat/completions", key, CHAT).status_code == 200
            own_redis.stop()

            # When Redis is down: acme is served (each door), the others are refused.
            served = [post(base, "/v1/chat/completions", world.chat_key, CHAT) for _ in range(5)]
            assert [r.status_code for r in served] == [200] * 5
            assert {r.headers["x-tollgate-admission"] for r in served} == {"unchecked; store unavailable"}
            assert post(base, "/v1/messages", world.chat_key, MESSAGE).status_code == 200
            assert httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {world.chat_key}"}).status_code \
                == 200
            assert_openai_503(post(base, "/v1/chat/completions", world.other_chat_key, CHAT))
            assert_openai_503(post(base, "/v1/chat/completions", blocky.chat_key, CHAT))
            outage_rows = [wait_usage(r.headers["x-request-id"], timeout=10) for r in served]
            assert {row.status for row in outage_rows} == {"ok"}
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert metric(text, "tollgate_store_unavailable_total", tenant="acme", outcome="served") >= 7
            assert metric(text, "tollgate_store_unavailable_total", tenant="blocky", outcome="refused") == 1

            # Then Redis comes back empty (no persistence): the next request rebuilds acme's
            # budget bucket from the rollups, which hold what was served meanwhile.
            own_redis.start()

            def admitted():
                response = post(base, "/v1/chat/completions", world.chat_key, CHAT)
                return response.status_code == 200 and "x-tollgate-admission" not in response.headers

            wait_until(admitted, timeout=15, what="admission again")
            day = datetime.now(ZoneInfo(world.tenant.timezone)).date()
            bucket = spend.bucket_key(world.tenant.pk, None, day)
            client = own_redis.client()

            def settled():
                total = sum(spend.to_nanos(row.cost) for row in UsageLog.objects.filter(tenant=world.tenant))
                value = client.get(bucket)
                return value is not None and abs(int(value) - total) <= 20 and total

            total = wait_until(settled, timeout=15, what="acme's spend in its budget bucket")
            outage_cost = sum(spend.to_nanos(row.cost) for row in outage_rows)
            assert outage_cost > 0 and total > outage_cost  # the outage's spend is counted in it
            assert post(base, "/v1/chat/completions", blocky.chat_key, CHAT).status_code == 200


def test_a_redis_that_does_not_answer_is_bounded_by_the_timeout(world, live, settings, tmp_path):
    # Given a "Redis" that accepts connections and never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    try:
        with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
            add_provider(world.tenant, fake, provider_type="openai")
            with worker(settings, tmp_path, f"redis://127.0.0.1:{port}/0", REDIS_TIMEOUT_SECONDS="1") as base:
                # When a request comes, it is answered 503 within about the timeout, not hung
                for _ in range(3):
                    started = time.monotonic()
                    response = post(base, "/v1/chat/completions", world.chat_key, CHAT)
                    took = time.monotonic() - started
                    assert_openai_503(response)
                    assert took < 3.5, took
                started = time.monotonic()
                health = httpx.get(f"{base}/healthz", timeout=10)
                assert health.status_code == 503 and health.json()["checks"]["redis"] == "error"
                assert time.monotonic() - started < 3.5
    finally:
        silent.close()
    row = wait_usage(response.headers["x-request-id"], timeout=10)
    assert (row.status, row.error_type) == ("rejected", "store_unavailable")



def test_the_state_refuses_what_admission_needs_and_skips_what_only_helps():
    async def run():
        state = RedisState(f"redis://127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(StoreUnavailable) as refused:
                await state.admit(tenant_id=1, pick=Pick((Candidate(1, 0, 1, 0, 0, None),), 0, False, "req-1"),
                                  versions=("", ""))
            started = time.monotonic()
            for call in (state.versions(1), state.budget_seed({"k": 0}), state.budget_settle([], [0])):
                with pytest.raises(StoreUnavailable):
                    await call
            fast = time.monotonic() - started  # asked again only after OUTAGE_PROBE_SECONDS
            skipped = (await state.cache_get("k"), await state.auth_blocked("1.2.3.4", 1),
                       await state.record_failure(tenant_id=1, provider_model_id=1, allowed_fails=1,
                                                  cooldown_seconds=1))
            await state.cache_set("k", b"v", 5)
            await state.auth_failed("1.2.3.4")
            return refused.value, fast, skipped, state.down
        finally:
            await state.close()

    error, fast, skipped, down = asyncio.run(run())
    assert (error.status, error.code, error.usage_status, error.retry_after) == (503, "store_unavailable",
                                                                                 "rejected", 5.0)
    assert fast < 0.1 and skipped == (None, 0.0, False) and down


def test_the_writer_keeps_what_it_cannot_settle_backs_off_and_logs_once(settings, caplog):
    day = datetime.now(ZoneInfo("UTC")).date()
    bucket = spend.bucket_key(424242, None, day)
    real = get_redis()
    real.set(bucket, 100)

    async def run():
        down = RedisState(f"redis://127.0.0.1:{free_port()}/0")
        writer = UsageWriter(down, run_db=run_db)
        writer.settling.adds[bucket] = 5
        for _ in range(50):  # 50 ticks within the backoff: one attempt
            await writer.flush()
        first = writer.settle_failures
        await asyncio.sleep(settings.GATEWAY_USAGE_FLUSH_SECONDS * 2 + 0.1)
        await writer.flush()  # after the backoff: tried again, still failing, not logged again
        second = writer.settle_failures
        writer.state = up = RedisState(settings.REDIS_URL)  # Redis is back
        await asyncio.sleep(SETTLE_BACKOFF_CAP + 0.1)
        await writer.flush()
        await down.close()
        await up.close()
        return first, second, dict(writer.settling.adds), writer.settle_failures

    with caplog.at_level(logging.WARNING, logger="billing.writer"):
        first, second, kept, failures = asyncio.run(run())
    assert (first, second) == (1, 2) and kept == {} and failures == 0
    assert int(real.get(bucket)) == 105  # kept through the outage, added once it was back
    messages = [r.getMessage() for r in caplog.records if r.name == "billing.writer"]
    assert len(messages) == 2, messages
    assert "usage settlement failed" in messages[0] and "1 budget and token additions" in messages[0]
    assert "usage settled again after 2 failed attempts" in messages[1]


@pytest.mark.parametrize("platform, tenant_choice, budget, fails_open", [
    ("closed", "inherit", None, False),
    ("open", "inherit", None, True),
    ("open", "closed", None, False),
    ("closed", "open", None, True),
    ("closed", "open", "alert", True),
    ("closed", "open", "downgrade", True),
    ("closed", "open", "block", False),  # a block budget always fails closed
    ("open", "inherit", "block", False),
])
def test_who_fails_open_is_carried_in_the_routing_table(world, settings, platform, tenant_choice, budget,
                                                         fails_open):
    settings.GATEWAY_REDIS_OUTAGE = platform
    tenant_update(tenant=world.tenant, changes={"redis_outage": tenant_choice}, actor=SYSTEM)
    if budget:
        Budget.objects.create(tenant=world.tenant, name="B", amount=Decimal("1"), action=budget,
                              downgrade_alias="cheap" if budget == "downgrade" else "")
    table = tenant_config_load(world.tenant.pk)
    assert table.redis_outage == tenant_choice
    assert table.fails_open() is fails_open
