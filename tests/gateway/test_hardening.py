"""The data plane's hardening: the output limit a budget reserves is the one the upstream gets,
reservations expire one by one and are never released twice, unknown keys are cheap and
limited per address, and POST /api/test/llm goes through the same admission and ledger as /v1."""

import asyncio
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from billing import spend
from billing.models import Budget, UsageDaily, UsageLog
from core.redis import get_redis
from gateway.app import gateway
from gateway.auth import KeyCache
from gateway.engine import upstream_output_tokens
from gateway.errors import GatewayError
from gateway.state import LocalState, RedisState
from providers.adapters.types import Deployment, output_limit
from tenants.access import SYSTEM
from tenants.keys import key_hash
from tenants.models import ApiKey
from tenants.services import api_key_revoke, tenant_update
from tests.fakes import FakeAnthropic, FakeOpenAI, FakeOpenRouter
from tests.utils.admission import budget_admit, tenant_budget_plan
from tests.utils.live import add_provider, burst, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)


def deployment(**kw) -> Deployment:
    values = dict(provider_id=1, provider_name="p", provider_type="openai", base_url="http://x", api_key="",
                  extra_headers=(), provider_model_id=1, model_id="m", timeout=5, max_retries=0,
                  input_price=Decimal(1), output_price=Decimal(1), cached_input_price=None)
    return Deployment(**{**values, **kw})


# --- item 4: one output limit for the upstream and the reservation ---------------------------


def test_the_reserved_output_limit_is_the_one_the_upstream_receives():
    both = {"max_tokens": 1, "max_completion_tokens": 64000}
    assert output_limit(both) == 64000
    assert upstream_output_tokens(deployment(), both) == 64000
    assert upstream_output_tokens(deployment(context_length=8192), both) == 8192  # cannot produce more
    # No limit anywhere: the protocol's required default, else the model's context, else the setting.
    assert upstream_output_tokens(deployment(provider_type="anthropic"), {}) == 4096
    assert upstream_output_tokens(deployment(context_length=128000), {}) == 128000
    assert upstream_output_tokens(deployment(), {}) == 32768
    assert output_limit({"max_tokens": True}) is None and output_limit({"max_tokens": 0}) is None


def test_50_concurrent_requests_with_both_limits_overspend_at_most_one_worst_case(world, live):
    # The upstream really produces what it is allowed: 64,000 output tokens each.
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 64000}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        amount, spent_before = Decimal("1"), Decimal("0.95")
        Budget.objects.create(tenant=world.tenant, name="Hard", amount=amount, action="block")
        UsageDaily.objects.create(tenant=world.tenant, day=datetime.now(ZoneInfo(world.tenant.timezone)).date(),
                                  requests=1, cost=spent_before)

        statuses = burst(live, world.chat_key, n=50, body={
            "model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1, "max_completion_tokens": 64000})
        asyncio.run_coroutine_threadsafe(gateway.usage.flush(), gateway.usage._task.get_loop()).result(timeout=10)
        sent = fake.requests_to("/v1/chat/completions")
    assert statuses.count(200) + statuses.count(429) == 50 and statuses.count(200) >= 1
    assert all(r.body["max_completion_tokens"] == 64000 and "max_tokens" not in r.body for r in sent)
    spent = spent_before + UsageLog.objects.filter(tenant=world.tenant, status="ok").aggregate(c=Sum("cost"))["c"]
    worst_case = (Decimal(400) * Decimal("0.15") + 64000 * Decimal("0.6")) / 10**6
    assert spent <= amount + worst_case


# --- item 7: each reservation expires on its own; a gone one releases nothing ----------------


class _Budget:
    """One tenant-scope block budget of ``amount_nanos`` today: its reservation total and bucket."""

    def __init__(self, state, tenant_id: int, amount_nanos: int, reservation: int):
        self.state = state
        self.plans = tenant_budget_plan(tenant_id, datetime.now(ZoneInfo("UTC")).date(), amount_nanos)
        self.reservation = reservation
        self.total = spend.reserved_of(self.plans[0].sid)
        self.bucket = spend.bucket_of(self.plans[0].sid, self.plans[0].days[0])

    async def admit(self, request_id: str, reservation: int | None = None) -> list[int]:
        return await budget_admit(self.state, self.plans, request_id=request_id,
                                  reservation=self.reservation if reservation is None else reservation)

    async def release(self, request_id: str, adds: dict[str, int] | None = None) -> None:
        await self.state.budget_settle(*spend.settle_arguments([(self.total, request_id)], adds or {}))


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_a_dead_workers_reservation_expires_although_others_keep_reserving(settings, monkeypatch, kind):
    monkeypatch.setattr(spend, "RESERVATION_TTL", 1)

    async def scenario():
        state = RedisState(settings.REDIS_URL) if kind == "redis" else LocalState()
        budget = _Budget(state, 7, amount_nanos=1000, reservation=600)
        await state.budget_seed({budget.bucket: 0})
        try:
            assert await budget.admit("req-dead") == [0]  # its worker dies: never settled
            refused = await budget.admit("req-2")
            assert refused[0] == 2  # 600 held + 600 asked > 1000
            for _ in range(6):  # steady traffic from another worker, each settled
                await asyncio.sleep(0.25)
                await budget.admit("req-small", reservation=1)
                await budget.release("req-small")
            assert await budget.admit("req-3") == [0]  # the dead one's share is gone
        finally:
            await state.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_settling_a_reservation_that_is_gone_changes_nothing(settings, kind):
    async def scenario():
        state = RedisState(settings.REDIS_URL) if kind == "redis" else LocalState()
        budget = _Budget(state, 8, amount_nanos=1000, reservation=600)
        await state.budget_seed({budget.bucket: 0})
        try:
            assert await budget.admit("req-old") == [0]
            if kind == "redis":
                get_redis().flushdb()  # Redis restarts: the old reservation is gone
            else:
                state.reservations.clear()
            await state.budget_seed({budget.bucket: 0})
            assert await budget.admit("req-new") == [0]
            await budget.release("req-old")  # the old request finishes
            assert (await budget.admit("req-third"))[0] == 2, "req-new still holds 600"
            await budget.release("req-new")
            await budget.release("req-new")  # twice: released once
            assert await budget.admit("req-fourth") == [0]
        finally:
            await state.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_settling_releases_and_adds_costs_to_the_buckets_that_exist(settings, kind):
    """What the usage writer settles (billing.spend.settle_arguments): each reservation released,
    each cost added to its bucket when the bucket is there (a missing one is rebuilt from the
    rollups, which hold the cost), in Redis and in its in-process twin alike."""
    missing = spend.bucket_key(9, None, date(2000, 1, 1))

    async def scenario():
        state = RedisState(settings.REDIS_URL) if kind == "redis" else LocalState()
        budget = _Budget(state, 9, amount_nanos=1000, reservation=600)
        await state.budget_seed({budget.bucket: 100})
        try:
            assert await budget.admit("req-a") == [0]
            await budget.release("req-a", {budget.bucket: 250, missing: 5})
            assert await budget.admit("req-b") == [0]  # 350 spent, 600 held: fits 1000
            assert await budget.admit("req-c") == [2, 1, 1, 350, 600]
            return state.counters if kind == "local" else {}
        finally:
            await state.close()

    counters = asyncio.run(scenario())
    assert missing not in counters and not get_redis().exists(missing)


# --- item 8: unknown keys, the cache's bounds, failures per address --------------------------


def test_an_unknown_key_is_queried_once_and_the_caches_evict_the_least_recently_used(settings):
    settings.API_KEY_CACHE_SIZE = 2
    settings.API_KEY_NEGATIVE_CACHE_SIZE = 2
    cache, state = KeyCache(), LocalState()
    unknown = KeyCache.digest("Bearer tg_" + "u" * 40)

    async def attempts():
        for _ in range(3):
            with pytest.raises(Exception, match="no such key"):
                await cache.load(unknown, address="1.2.3.4", state=state, version=None)

    with CaptureQueriesContext(connection) as queries:
        asyncio.run(attempts())
    assert len([q for q in queries.captured_queries if "tenants_apikey" in q["sql"]]) <= 1

    async def fill():
        for letter in "abc":
            with pytest.raises(GatewayError, match="no such key"):
                await cache.load(KeyCache.digest("Bearer tg_" + letter * 40), address="x", state=state, version=None)

    asyncio.run(fill())
    assert len(cache._unknown) == 2 and unknown not in cache._unknown  # evicted, not cleared whole


def test_an_address_that_keeps_failing_gets_429_and_known_keys_keep_working(world, live, settings):
    settings.GATEWAY_AUTH_FAILURES_PER_MINUTE = 5
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        good = {"Authorization": f"Bearer {world.chat_key}"}
        body = {"model": "up:m", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{live.url}/v1/chat/completions", headers=good, json=body).status_code == 200
        codes = [httpx.post(f"{live.url}/v1/chat/completions", json=body,
                            headers={"Authorization": f"Bearer tg_{i:040d}"}).status_code for i in range(8)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        blocked = httpx.post(f"{live.url}/v1/chat/completions", json=body,
                             headers={"Authorization": "Bearer tg_" + "z" * 40})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert "failed authentications" in blocked.json()["error"]["message"]
        assert httpx.post(f"{live.url}/v1/chat/completions", headers=good, json=body).status_code == 200


# --- item 9: /api/test/llm is admitted, recorded and settled like /v1 ------------------------


def test_the_test_endpoint_respects_suspension_limits_and_budgets(world, client_for, live):
    client = client_for(key=world.admin_key)
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 10}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        ask = {"model": "up:gpt-4o-mini", "prompt": "ping"}
        tenant_update(tenant=world.tenant, changes={"requests_per_minute": 1}, actor=SYSTEM)
        assert client.post("/api/test/llm", ask, format="json").status_code == 200
        limited = client.post("/api/test/llm", ask, format="json")
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "tenant_rate_limit"
        tenant_update(tenant=world.tenant, changes={"requests_per_minute": None}, actor=SYSTEM)

        budget = Budget.objects.create(tenant=world.tenant, name="Tiny", amount=Decimal("0.000001"), action="block")
        refused = client.post("/api/test/llm", ask, format="json")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        assert UsageLog.objects.get(request_id=refused.headers["x-request-id"]).status == "rejected"
        budget.delete()

        world.tenant.is_active = False
        world.tenant.save()
        suspended = client_for(user=world.owner).post("/api/test/llm", ask, format="json")
        assert suspended.status_code == 403 and "suspended" in suspended.json()["error"]["message"]
        assert len(fake.requests_to("/v1/chat/completions")) == 1


def test_the_test_endpoint_records_cache_writes_provider_cost_and_settles_the_budget(world, client_for, live):
    client = client_for(key=world.admin_key)
    with FakeAnthropic(models=["claude-3-5-haiku-latest"], api_key="sk-ant-1",
                       usage={"input_tokens": 20, "output_tokens": 5, "cache_creation_input_tokens": 7}) as fake:
        add_provider(world.tenant, fake, name="anth", provider_type="anthropic", api_key="sk-ant-1")
        answer = client.post("/api/test/llm", {"model": "anth:claude-3-5-haiku-latest", "prompt": "hi"}, format="json")
        assert answer.status_code == 200, answer.json()
    row = wait_usage(answer.json()["request_id"])
    assert row.cache_write_tokens == 7
    with FakeOpenRouter(models=["openai/gpt-4o-mini"], usage={"prompt_tokens": 3, "completion_tokens": 4,
                                                              "cost": 0.25}) as fake:
        add_provider(world.tenant, fake, name="or", provider_type="openrouter")
        Budget.objects.create(tenant=world.tenant, name="Watch", amount=Decimal("100"), action="block")
        answer = client.post("/api/test/llm", {"model": "or:openai/gpt-4o-mini", "prompt": "hi"}, format="json")
        assert answer.status_code == 200, answer.json()
    row = wait_usage(answer.json()["request_id"])
    assert row.provider_cost == Decimal("0.25")
    today = datetime.now(ZoneInfo(world.tenant.timezone)).date()
    bucket = get_redis().get(spend.bucket_key(world.tenant.pk, None, today))
    assert bucket is not None and int(bucket) >= spend.to_nanos(row.cost)  # settled into the budget
    total, _, amounts = spend.reservation_keys(spend.reserved_key(world.tenant.pk, None))
    assert int(get_redis().get(total) or 0) == 0 and not get_redis().hgetall(amounts)  # and released


def test_an_absurd_output_limit_is_refused_by_the_budget_not_a_500(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        Budget.objects.create(tenant=world.tenant, name="Hard", amount=Decimal("10"), action="block")
        body = {"model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 10**13, "n": 10**6}
        headers = {"Authorization": f"Bearer {world.chat_key}"}
        refused = httpx.post(f"{live.url}/v1/chat/completions", headers=headers, json=body, timeout=10)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        Budget.objects.filter(name="Hard").update(action="alert")
        gateway.configs.clear()
        # Served under an alert budget: the (capped) reservation is taken and released.
        assert httpx.post(f"{live.url}/v1/chat/completions", headers=headers, json=body, timeout=10).status_code == 200


def test_api_and_v1_refuse_a_revoked_key_in_the_same_words(world, live, client_for):
    api_key_revoke(key=ApiKey.objects.get(key_hash=key_hash(world.admin_key)), actor=SYSTEM)
    on_v1 = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.admin_key}"},
                       json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    on_api = client_for(key=world.admin_key).get("/api/keys")
    assert on_v1.status_code == on_api.status_code == 401
    assert "was revoked at" in on_v1.json()["error"]["message"]
    assert on_v1.json()["error"]["message"] == on_api.json()["error"]["message"]
