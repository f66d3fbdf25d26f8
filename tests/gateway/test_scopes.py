"""Limits and budgets in every scope (issue #16), through /v1 against loopback fakes: the tenant,
a project, a key and each end user, optionally on one model; tokens per minute reserved from the
worst case and corrected at settlement, across two app instances; which refusal wins and what
it says; 200 concurrent requests over 20 end users against nearly spent end-user and project
budgets; budgets of the new scopes rebuilt from the rollups; blocked end users."""

import asyncio
import time
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import aiohttp
import httpx
import pytest
from django.db.models import Sum

from billing import spend
from billing.models import Budget, EndUserBlock, EndUserDaily, LimitRule, UsageDaily, UsageLog
from core.redis import get_redis
from gateway import scopes
from gateway.app import gateway
from gateway.scopes import LimitInfo, ProjectInfo
from gateway.state import rpm_key, tpm_key
from providers import traffic
from providers.models import ProviderModel
from providers.services import alias_create
from tenants.access import SYSTEM
from tenants.services import api_key_create, project_create
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hi"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 20}


def project_key(world, slug: str, **limits):
    project = project_create(tenant=world.tenant, slug=slug, name=slug.title(), actor=SYSTEM)
    if limits:
        for name, value in limits.items():
            setattr(project, name, value)
        project.save()  # the data plane sees it on its next request (tenants/config_version.py)
    _, raw = api_key_create(tenant=world.tenant, name=f"{slug} key", project=project, actor=SYSTEM)
    return project, raw


def tenant_limits(world, **limits) -> None:
    for name, value in limits.items():
        setattr(world.tenant, name, value)
    world.tenant.save()


def post(live, key: str, body: dict | None = None, end_user: str | None = None, base: str | None = None,
         **extra) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if end_user is not None:
        headers["x-tollgate-end-user"] = end_user
    return httpx.post(f"{base or live.url}/v1/chat/completions", json={"model": "up:m", "messages": HELLO,
                                                                       **(body or {}), **extra},
                      headers=headers, timeout=30)


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


def settled(seconds: float = 0.6) -> None:
    """Let the usage writer write and settle what was answered (GATEWAY_USAGE_FLUSH_SECONDS)."""
    time.sleep(seconds)


def early_in_the_minute(latest: float = 40) -> None:
    """Minute counters: a test that counts within one minute starts early enough in it."""
    if time.time() % 60 > latest:
        time.sleep(60.5 - time.time() % 60)


# --- the plan, without I/O ---------------------------------------------------------------------


def test_the_plan_counts_each_scope_in_precedence_order_and_each_end_user_apart():
    tenant = SimpleNamespace(
        tenant_id=1, requests_per_minute=100, tokens_per_minute=0, tokens_per_day=5000, zone=ZoneInfo("UTC"),
        limit_rules=[
            LimitInfo(scope="end_user", project_id=3, rpm=2),  # each end user of project 3
            LimitInfo(scope="end_user", project_id=4, rpm=9),  # another project's: not this request's
            LimitInfo(scope="tenant", model="gpt-4o", tpm=200000),
            LimitInfo(scope="tenant", model="other", rpm=1),  # a model this request is not to
            LimitInfo(scope="key", key_id=7, tpd=100),
        ],
    )
    key = SimpleNamespace(key_id=7, requests_per_minute=10, tokens_per_minute=None, tokens_per_day=None)
    project = ProjectInfo(project_id=3, slug="support", rpm=50, tpm=9000)
    covers = {"gpt-4o": frozenset({11})}.get
    now = 1_800_000_030.0
    minute = int(now // 60)
    plan = scopes.plan(tenant=tenant, key=key, project=project, end_user="cust-42", covers=covers,
                       worst_tokens=1234, now=now)
    wheres = [(kind, scope, model) for kind, scope, _, _, model in plan.refusals]
    assert wheres == [("rpm", "tenant", ""), ("tpd", "tenant", ""), ("tpm", "tenant", "gpt-4o"),
                      ("rpm", "project", ""), ("tpm", "project", ""), ("rpm", "key", ""), ("tpd", "key", ""),
                      ("rpm", "end_user", "")]
    keys = [c.key for c in plan.counters]
    user = spend.hashed("cust-42")
    assert keys[0] == f"tg:rl:t1:m{minute}" and keys[3] == f"tg:rl:t1:p3:m{minute}"
    assert keys[2] == f"tg:tpm:t1:f{spend.hashed('gpt-4o')}:m{minute}"
    assert keys[-1] == f"tg:rl:t1:p3:u{user}:m{minute}"
    assert [c.add for c in plan.counters] == [1, 0, 1234, 1, 1234, 1, 0, 1]
    # tokens per minute are corrected at settlement; tokens per day are added then, in every
    # scope with such a limit, to the counter of the tenant's local day; a lost counter is rebuilt
    # from the scope's rollup rows
    assert plan.tpm == ((keys[2], 1234), (keys[4], 1234))
    assert plan.token_keys == (keys[1], keys[6]) == ("tg:tokens:t1:d20270115", "tg:tokens:t1:k7:d20270115")
    assert [c.kept for c in plan.counters] == [False, True, False, False, False, False, True, False]
    assert plan.sources == {2: spend.SpendSource(), 7: spend.SpendSource(key_id=7)}
    # the day is the tenant's: in Los Angeles this instant is 30 s past midnight, and 60 s earlier
    # the counter was the previous day's, freeing up 30 s later
    pacific = SimpleNamespace(**{**vars(tenant), "zone": ZoneInfo("America/Los_Angeles")})
    after = scopes.plan(tenant=pacific, key=key, project=project, end_user="", covers=covers, worst_tokens=1, now=now)
    before = scopes.plan(tenant=pacific, key=key, project=project, end_user="", covers=covers, worst_tokens=1,
                         now=now - 60)
    assert (after.counters[1].key, after.counters[1].frees) == ("tg:tokens:t1:d20270115", 86400 - 30)
    assert (before.counters[1].key, before.counters[1].frees) == ("tg:tokens:t1:d20270114", 30)
    assert plan.counters[1].frees == 16 * 3600 - 30  # UTC: at 08:00:30, midnight is 16 hours off
    # another end user: its own counter
    other = scopes.plan(tenant=tenant, key=key, project=project, end_user="cust-43", covers=covers, worst_tokens=1,
                        now=now)
    assert other.counters[-1].key != keys[-1]
    # no end user: no end-user scope
    anonymous = scopes.plan(tenant=tenant, key=key, project=project, end_user="", covers=covers, worst_tokens=1,
                            now=now)
    assert [r[1] for r in anonymous.refusals].count("end_user") == 0


def test_a_rule_without_a_model_on_a_scopes_own_limit_is_one_counter_at_the_lower_limit():
    """A tenant rule for every model names the tenant's own counters: counted once, never twice."""
    tenant = SimpleNamespace(
        tenant_id=1, requests_per_minute=100, tokens_per_minute=0, tokens_per_day=5000, zone=ZoneInfo("UTC"),
        limit_rules=[LimitInfo(scope="tenant", rpm=300, tpd=4000), LimitInfo(scope="key", key_id=7, tpm=50)],
    )
    key = SimpleNamespace(key_id=7, requests_per_minute=None, tokens_per_minute=80, tokens_per_day=None)
    plan = scopes.plan(tenant=tenant, key=key, project=None, end_user="", covers={}.get, worst_tokens=9,
                       now=1_800_000_030.0)
    keys = [c.key for c in plan.counters]
    assert len(keys) == len(set(keys)) == 3
    assert [(r[0], r[1], r[3]) for r in plan.refusals] == [("rpm", "tenant", 100), ("tpd", "tenant", 4000),
                                                           ("tpm", "key", 50)]
    assert [c.limit for c in plan.counters] == [100, 4000, 50]
    assert plan.token_keys == (keys[1],) and plan.tpm == ((keys[2], 9),)
    assert plan.sources == {2: spend.SpendSource()}


# --- each scope's limits through /v1 ------------------------------------------------------------


def test_a_project_limit_refuses_its_keys_only_and_says_so(world, live):
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        early_in_the_minute()
        _, support = project_key(world, "support", requests_per_minute=2)
        _, sales = project_key(world, "sales")
        assert [post(live, support).status_code for _ in range(2)] == [200, 200]
        refused = post(live, support)
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        error = error_of(refused)
        assert error["code"] == "project_rate_limit" and error["type"] == "rate_limit_error"
        assert "2 requests per minute for project 'support'" in error["message"]
        assert post(live, sales).status_code == 200  # another project's key
        assert post(live, world.chat_key).status_code == 200  # the default project's
        row = wait_usage(refused.headers["x-request-id"])
        assert (row.status, row.error_type) == ("rejected", "project_rate_limit")
        assert len(fake.requests_to("/v1/chat/completions")) == 4


def test_each_end_user_gets_the_rules_limit_on_its_own(world, live):
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        early_in_the_minute()
        support, key = project_key(world, "support")
        _, sales = project_key(world, "sales")
        LimitRule.objects.create(tenant=world.tenant, scope="end_user", project=support, requests_per_minute=2)
        assert [post(live, key, end_user="alice").status_code for _ in range(2)] == [200, 200]
        refused = post(live, key, end_user="alice")
        error = error_of(refused)
        assert refused.status_code == 429 and error["code"] == "end_user_rate_limit"
        assert "2 requests per minute for end user 'alice' (each end user of project 'support')" in error["message"]
        # the body's `user` names the end user too (the header wins when both are there)
        assert post(live, key, user="alice").status_code == 429
        assert post(live, key, end_user="bob", user="alice").status_code == 200
        assert post(live, key, end_user="bob").status_code == 200
        assert post(live, key).status_code == 200  # no end user: not in any end-user scope
        assert post(live, sales, end_user="alice").status_code == 200  # the rule is project support's


def test_a_rule_on_one_model_counts_requests_to_it_and_to_aliases_over_it(world, live):
    with FakeOpenAI(models=["m", "cheap"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "smart", "targets": [{"model": "up:m"}]})
        early_in_the_minute()
        LimitRule.objects.create(tenant=world.tenant, scope="tenant", model="up:m", requests_per_minute=2)
        assert post(live, world.chat_key).status_code == 200
        assert post(live, world.chat_key, model="smart").status_code == 200  # the alias is served by up:m
        refused = post(live, world.chat_key, model="smart")
        assert refused.status_code == 429 and error_of(refused)["code"] == "tenant_rate_limit"
        assert "for this tenant on model 'up:m'" in error_of(refused)["message"]
        assert post(live, world.chat_key, model="up:cheap").status_code == 200  # another model


def test_the_refusal_that_frees_up_last_wins_and_a_refusal_counts_nothing(world, live):
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        early_in_the_minute()
        support, key = project_key(world, "support", tokens_per_day=10)
        sales, sales_key = project_key(world, "sales", requests_per_minute=5)
        tenant_limits(world, requests_per_minute=1)
        LimitRule.objects.create(tenant=world.tenant, scope="end_user", requests_per_minute=1)  # each end user
        assert post(live, key, end_user="alice").status_code == 200
        # the tenant and end user alice both refuse and free up next minute: the broadest scope is named
        refused = post(live, sales_key, end_user="alice")
        assert error_of(refused)["code"] == "tenant_rate_limit"
        assert "1 requests per minute for this tenant (1 requests counted)" in error_of(refused)["message"]
        minute = int(time.time() // 60)
        sales_counter = rpm_key(spend.scope_id(world.tenant.pk, project_id=sales.pk), minute)
        assert get_redis().get(sales_counter) is None, "the refused request counted nowhere"
        # once the first request's 30 tokens are counted, project support's tokens per day refuse
        # too; they free up at midnight, after the minute: they are named
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            response = post(live, key, end_user="bob")
            if error_of(response)["code"] != "tenant_rate_limit":
                break
            time.sleep(0.2)
        assert error_of(response)["code"] == "project_token_limit"
        assert "10 tokens per day for project 'support' (30 tokens counted)" in error_of(response)["message"]
        assert int(response.headers["retry-after"]) > 60 or time.gmtime().tm_hour == 23


# --- tokens per minute ---------------------------------------------------------------------------


def test_tokens_per_minute_hold_across_two_instances_and_settle_to_what_was_used(world, live, second_instance):
    """Each request reserves its worst case (every two bytes of its body a prompt token, plus
    max_tokens) against 9,000 tokens a minute: 4 fit at once whatever instance they reach; once
    they settle, the counter holds the 30 tokens each really used and 4 more fit."""
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        tenant_limits(world, tokens_per_minute=9000)
        fake.set_fault("slow", delay=1.5, times=10)
        early_in_the_minute(35)
        body = {"model": "up:m", "messages": HELLO, "max_tokens": 2000}
        bases = [live.url, second_instance] * 5

        async def burst():
            async with aiohttp.ClientSession() as session:
                async def one(base):
                    async with session.post(f"{base}/v1/chat/completions", json=body,
                                            headers={"Authorization": f"Bearer {world.chat_key}"}) as resp:
                        return resp.status, await resp.json()
                return await asyncio.gather(*(one(b) for b in bases))

        answers = asyncio.run(burst())
        statuses = [status for status, _ in answers]
        assert statuses.count(200) == 4 and statuses.count(429) == 6, statuses
        refused = next(payload["error"] for status, payload in answers if status == 429)
        assert refused["code"] == "tenant_token_rate_limit"
        assert "9000 tokens per minute for this tenant" in refused["message"] and "may use up to 20" in \
            refused["message"]
        counter = tpm_key(f"t{world.tenant.pk}", int(time.time() // 60))
        deadline = time.monotonic() + 10
        while int(get_redis().get(counter) or 0) != 4 * 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert int(get_redis().get(counter)) == 4 * 30, "corrected to the tokens used"
        again = [post(live, world.chat_key, base=base, max_tokens=2000).status_code
                 for base in (live.url, second_instance, live.url, second_instance)]
        assert again == [200] * 4


def test_a_request_larger_than_a_tokens_per_minute_limit_is_told_to_shrink(world, live):
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        _, key = project_key(world, "support", tokens_per_minute=1000)
        refused = post(live, key, max_tokens=5000)
        assert refused.status_code == 400
        error = error_of(refused)
        assert error["code"] == "project_token_rate_limit"
        assert "more than the limit of 1000 tokens per minute for project 'support'" in error["message"]
        assert "lower max_tokens" in error["message"]
        assert post(live, key, max_tokens=100).status_code == 200
        assert fake.requests_to("/v1/chat/completions")[0].body["max_tokens"] == 100


# --- budgets in the new scopes ------------------------------------------------------------------


def test_200_concurrent_requests_over_20_end_users_overspend_each_scope_by_at_most_one_worst_case(world, live):
    """Every end user of project support may spend $0.01 a day and has $0.0085 of it spent; the
    project may spend $1 a day and has $0.985 spent. 200 requests at once, 10 per end user, each
    able to cost $0.00061: no end user and not the project ends above its budget by more than one
    request's worst case, and both budgets refuse some."""
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 1000}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        support, key = project_key(world, "support")
        today = datetime.now(ZoneInfo(world.tenant.timezone)).date()
        users = [f"customer-{i:02d}" for i in range(20)]
        user_amount, user_spent = Decimal("0.01"), Decimal("0.0085")
        project_amount, project_spent = Decimal("1"), Decimal("0.985")
        Budget.objects.create(tenant=world.tenant, name="Per customer", scope="end_user", project=support,
                              amount=user_amount, period="day", action="block")
        Budget.objects.create(tenant=world.tenant, name="Support bot", scope="project", project=support,
                              amount=project_amount, period="day", action="block")
        for user in users:
            EndUserDaily.objects.create(tenant=world.tenant, day=today, project_id=support.pk, end_user=user,
                                        requests=1, cost=user_spent)
        key_id = support.api_keys.get().pk
        UsageDaily.objects.create(tenant=world.tenant, day=today, api_key_id=key_id, requests=1, cost=project_spent)
        body = {"model": "up:gpt-4o-mini", "messages": HELLO, "max_tokens": 1000}

        async def burst():
            async with aiohttp.ClientSession() as session:
                async def one(user):
                    async with session.post(f"{live.url}/v1/chat/completions", json=body, headers={
                            "Authorization": f"Bearer {key}", "x-tollgate-end-user": user}) as resp:
                        payload = await resp.json()
                        return user, resp.status, payload
                return await asyncio.gather(*(one(users[i % 20]) for i in range(200)))

        answers = asyncio.run(burst())
        asyncio.run_coroutine_threadsafe(gateway.usage.flush(), gateway.usage._task.get_loop()).result(timeout=10)
    assert {status for _, status, _ in answers} <= {200, 429}
    refusals = [payload["error"]["message"] for _, status, payload in answers if status == 429]
    assert all("is exhausted" in message for message in refusals)
    by_project = sum(m.startswith("Budget 'Support bot' of project 'support'") for m in refusals)
    by_user = sum(m.startswith("Budget 'Per customer' for end user 'customer-") for m in refusals)
    assert by_project and by_user and by_project + by_user == len(refusals)
    # the most one request could cost: its body's bytes as prompt tokens, and 1,000 output tokens
    worst = spend.worst_case_nanos(prompt_bytes=len(__import__("json").dumps(body)) + 2, max_output_tokens=1000,
                                   input_price=Decimal("0.15"), output_price=Decimal("0.6")) / spend.NANOS
    rows = UsageLog.objects.filter(tenant=world.tenant, status="ok")
    served = rows.count()
    spent_by_user = dict(rows.values_list("end_user").annotate(total=Sum("cost")))
    project_total = project_spent + sum(spent_by_user.values(), Decimal(0))
    worst_user = max(user_spent + spent for spent in spent_by_user.values())
    print(f"\n200 requests over 20 end users: {served} served, {by_project} refused by the project budget, "
          f"{by_user} by the end-user budget; project ${project_total:.6f} of ${project_amount} "
          f"(over by ${max(project_total - project_amount, Decimal(0)):.6f}), highest end user "
          f"${worst_user:.6f} of ${user_amount} (over by ${max(worst_user - user_amount, Decimal(0)):.6f}); "
          f"one request's worst case ${worst:.6f}")
    assert served == sum(1 for _, status, _ in answers if status == 200)
    assert project_total <= project_amount + worst
    assert worst_user <= user_amount + worst
    assert max(Counter_of(answers).values()) <= 2  # $0.0015 left each: two requests' worth


def Counter_of(answers) -> dict[str, int]:
    served: dict[str, int] = {}
    for user, status, _ in answers:
        if status == 200:
            served[user] = served.get(user, 0) + 1
    return served


def test_end_user_and_project_budgets_are_rebuilt_from_the_rollups_when_redis_loses_them(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        support, key = project_key(world, "support")
        sales, sales_key = project_key(world, "sales")
        today = datetime.now(ZoneInfo(world.tenant.timezone)).date()
        Budget.objects.create(tenant=world.tenant, name="Per customer", scope="end_user", amount=Decimal("2"),
                              period="day", action="block")  # each end user of the whole tenant
        Budget.objects.create(tenant=world.tenant, name="Sales", scope="project", project=sales,
                              amount=Decimal("5"), period="month", action="block")
        EndUserDaily.objects.create(tenant=world.tenant, day=today, project_id=support.pk, end_user="big-spender",
                                    requests=9, cost=Decimal("2.5"))
        UsageDaily.objects.create(tenant=world.tenant, day=today, api_key_id=sales.api_keys.get().pk, requests=9,
                                  cost=Decimal("6"))
        body = {"model": "up:gpt-4o-mini"}
        for _ in range(2):  # the second time after Redis lost everything
            refused = post(live, key, body, end_user="big-spender")
            assert refused.status_code == 429
            assert "Budget 'Per customer' for end user 'big-spender' (each end user) is exhausted: $2.5000 of " \
                   "$2.00" in error_of(refused)["message"]
            assert post(live, key, body, end_user="small-spender").status_code == 200
            refused = post(live, sales_key, body)
            assert "Budget 'Sales' of project 'sales' is exhausted: $6.0000 of $5.00" in error_of(refused)["message"]
            assert post(live, key, body).status_code == 200  # project support has no budget
            settled()
            get_redis().flushdb()
        served = UsageLog.objects.filter(tenant=world.tenant, status="ok").count()
        assert served == len(fake.requests_to("/v1/chat/completions")) == 4


def test_tokens_per_day_count_the_tenants_local_day_and_hold_across_a_flushdb(world, live):
    """Tokens per day are counted per local day (Kiritimati is UTC+14: its day is not UTC's for
    most of the UTC day), rebuilt from the rollups when Redis has no counter (the first request
    of the day, or after FLUSHDB): tokens used before the flush still count."""
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:  # 30 tokens a request
        add_provider(world.tenant, fake)
        _, key = project_key(world, "support")
        zone = ZoneInfo("Pacific/Kiritimati")
        tenant_limits(world, timezone="Pacific/Kiritimati", tokens_per_day=150)
        LimitRule.objects.create(tenant=world.tenant, scope="end_user", tokens_per_day=60)  # each end user
        today = datetime.now(zone).date()
        before = today - timedelta(days=1)  # the local day before: never counted today
        UsageDaily.objects.create(tenant=world.tenant, day=today, requests=1, input_tokens=40, output_tokens=5)
        UsageDaily.objects.create(tenant=world.tenant, day=before, requests=9, input_tokens=10**6)
        EndUserDaily.objects.create(tenant=world.tenant, day=today, end_user="alice", requests=1, input_tokens=40,
                                    output_tokens=5)
        EndUserDaily.objects.create(tenant=world.tenant, day=before, end_user="bob", requests=9, input_tokens=10**6)

        def counted(response) -> int:
            return int(error_of(response)["message"].split("(")[-1].split(" tokens counted")[0])

        assert post(live, key, end_user="alice").status_code == 200  # 45 of 60 before: alice at 75
        settled()
        refused = post(live, key, end_user="alice")
        assert error_of(refused)["code"] == "end_user_token_limit" and counted(refused) == 75
        midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=zone)
        assert abs(int(refused.headers["retry-after"]) - (midnight - datetime.now(zone)).total_seconds()) < 5
        assert post(live, key, end_user="bob").status_code == 200  # bob's yesterday does not count: the tenant at 105
        settled()
        get_redis().flushdb()  # Redis loses every counter: rebuilt from the rollups, nothing forgotten
        refused = post(live, key, end_user="alice")
        assert error_of(refused)["code"] == "end_user_token_limit" and counted(refused) == 75
        assert post(live, key, end_user="bob").status_code == 200  # the tenant at 105 + 30
        settled()
        assert post(live, key, end_user="carol").status_code == 200  # 135 of 150 before: the tenant at 165
        settled()
        refused = post(live, key, end_user="dave")
        assert error_of(refused)["code"] == "tenant_token_limit" and counted(refused) == 165
        assert "150 tokens per day for this tenant" in error_of(refused)["message"]
        assert get_redis().get(f"tg:tokens:t{world.tenant.pk}:d{today:%Y%m%d}") == b"165"
        assert len(fake.requests_to("/v1/chat/completions")) == 4


def test_a_budget_downgrade_counts_the_request_on_the_cheaper_alias_only(world, live):
    with FakeOpenAI(models=["gpt-4o", "gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "smart", "targets": [{"model": "up:gpt-4o"}]})
        alias_create(tenant=world.tenant, actor=SYSTEM,
                     data={"name": "cheap", "targets": [{"model": "up:gpt-4o-mini"}]})
        support, key = project_key(world, "support")
        Budget.objects.create(tenant=world.tenant, name="Smart spend", scope="project", project=support,
                              model="smart", amount=Decimal("0.000001"), period="day", action="downgrade",
                              downgrade_alias="cheap")
        today = datetime.now(ZoneInfo(world.tenant.timezone)).date()
        dear = ProviderModel.objects.get(provider__owner=world.tenant, model_id="gpt-4o").pk
        UsageDaily.objects.create(tenant=world.tenant, day=today, api_key_id=support.api_keys.get().pk,
                                  provider_model_id=dear, requests=1, cost=Decimal("1"))
        response = post(live, key, model="smart")
        assert response.status_code == 200 and response.headers["x-tollgate-budget-downgrade"] == "Smart spend"
        assert response.headers["x-tollgate-model"] == "up:gpt-4o-mini"
        minute = traffic.minute_of(time.time())
        assert int(get_redis().get(traffic.requests_key(world.tenant.pk, dear, minute)) or 0) == 0
        assert post(live, world.chat_key, model="smart").headers["x-tollgate-model"] == "up:gpt-4o"  # other project


def test_a_blocked_end_user_is_refused_at_the_door(world, live):
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        support, key = project_key(world, "support")
        EndUserBlock.objects.create(tenant=world.tenant, end_user="mallory")
        EndUserBlock.objects.create(tenant=world.tenant, project=support, end_user="trudy")
        refused = post(live, key, end_user="mallory")
        assert refused.status_code == 403
        assert error_of(refused)["code"] == "end_user_blocked"
        assert "'mallory' is blocked" in error_of(refused)["message"]
        assert post(live, world.chat_key, user="mallory").status_code == 403  # every project
        assert post(live, key, end_user="trudy").status_code == 403
        assert post(live, world.chat_key, end_user="trudy").status_code == 200  # blocked in support only
        assert post(live, key, end_user="alice").status_code == 200
        row = wait_usage(refused.headers["x-request-id"])
        assert (row.status, row.error_type, row.end_user) == ("rejected", "end_user_blocked", "mallory")
        EndUserBlock.objects.filter(end_user="mallory").delete()
        assert post(live, key, end_user="mallory").status_code == 200
