"""The one admission script (gateway/state.py _ADMIT with billing's BUDGET_LUA) and its in-process
twin (LocalState, the embedded default) decide alike: limits counted only when everything
admits, the refusal that frees up last named (the first among equals), a downgrade asked for
before anything is counted, budget buckets to rebuild reported first, tokens per minute
reserved and corrected."""

import asyncio
import time
from datetime import date
from decimal import Decimal

import pytest

from billing import spend
from core.redis import get_redis
from gateway.app import GatewayApp
from gateway.deployments import Candidate
from gateway.state import Counter, LocalState, Pick, RedisState

TODAY = date(2026, 12, 6)


def pick(request_id: str) -> Pick:
    return Pick((Candidate(1, 0, 1, 0, 0, None),), 0, False, request_id)


def budgets(amount_nanos: int, action: str, reservation: int, *, seed: bool = True):
    budget = spend.BudgetInfo(1, "b", "project", None, Decimal(amount_nanos) / spend.NANOS, "day", action, "cheap",
                              project_id=3)
    plans = [spend.ScopePlan(spend.scope_id(1, project_id=3), [TODAY], [(budget, 1)], resets_in=(3600,))]
    return plans, spend.budget_arguments(plans, reservation=reservation, downgrade_as_alert=False)


def make(kind: str, settings):
    return RedisState(settings.REDIS_URL) if kind == "redis" else LocalState()


def value(state, key: str) -> int | None:
    if isinstance(state, LocalState):
        return state.counters.get(key)
    raw = get_redis().get(key)
    return None if raw is None else int(raw)


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_limits_count_only_when_everything_admits(settings, kind):
    async def scenario():
        state = make(kind, settings)
        try:
            rpm = Counter("tg:rl:t1:m1", 2, 1, 120, 30.0)  # frees in 30 s
            tpm = Counter("tg:tpm:t1:p3:m1", 1000, 400, 120, 30.0)
            tpd = Counter("tg:tpd:t1:k7:d20261206", 10_000, 0, 86400, 5000.0)
            counters = [rpm, tpm, tpd]
            first = await state.admit(tenant_id=1, pick=pick("r1"), versions=("*", "*"), counters=counters)
            assert first.refused == 0 and first.order[0][1] == 0
            assert (value(state, rpm.key), value(state, tpm.key), value(state, tpd.key)) == (1, 400, None)
            second = await state.admit(tenant_id=1, pick=pick("r2"), versions=("*", "*"), counters=counters)
            assert second.refused == 0 and value(state, tpm.key) == 800
            # the third: rpm (2 used) and tpm (800 + 400 > 1000) refuse, both free in 30 s: the first
            third = await state.admit(tenant_id=1, pick=pick("r3"), versions=("*", "*"), counters=counters)
            assert (third.refused, third.used) == (1, 2)
            assert (value(state, rpm.key), value(state, tpm.key)) == (2, 800), "nothing counted"
            # a tokens-per-day limit that frees up later is the one named
            full = Counter("tg:tpd:t1:d20261206", 5, 0, 86400, 5000.0)
            if isinstance(state, LocalState):
                state.counters[full.key] = 9
            else:
                get_redis().set(full.key, 9)
            fourth = await state.admit(tenant_id=1, pick=pick("r4"), versions=("*", "*"),
                                       counters=[rpm, tpm, full])
            assert (fourth.refused, fourth.used) == (3, 9)
            # tokens per minute corrected at settlement: the two requests used 30 each
            await state.tpm_correct({tpm.key: -370, "tg:tpm:gone:m1": -5})
            await state.tpm_correct({tpm.key: -370})
            assert value(state, tpm.key) == 60 and value(state, "tg:tpm:gone:m1") is None
        finally:
            await state.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_lost_tokens_per_day_counters_are_asked_for_all_at_once_before_anything_counts(settings, kind):
    async def scenario():
        state = make(kind, settings)
        try:
            rpm = Counter("tg:rl:t1:m1", 100, 1, 120, 30.0)
            tenant_day = Counter("tg:tokens:t1:d20261206", 1000, 0, 86400, 5000.0, True)
            key_day = Counter("tg:tokens:t1:k7:d20261206", 50, 0, 86400, 5000.0, True)
            plans, args = budgets(1000, "block", 600)  # its bucket is missing too: asked for next
            counters = [rpm, tenant_day, key_day]
            lost = await state.admit(tenant_id=1, pick=pick("a"), versions=("*", "*"), counters=counters,
                                     budgets=args)
            assert lost.lost == (2, 3) and lost.budget == () and value(state, rpm.key) is None
            await state.budget_seed({tenant_day.key: 10, key_day.key: 50}, ttl=86400)
            rebuild = await state.admit(tenant_id=1, pick=pick("b"), versions=("*", "*"), counters=counters,
                                        budgets=args)
            assert rebuild.lost == () and rebuild.budget == (4, 1, 1)
            await state.budget_seed({spend.bucket_of(plans[0].sid, TODAY): 0})
            # the key's 50 tokens a day are used (the seeded count holds): refused, nothing counted
            refused = await state.admit(tenant_id=1, pick=pick("c"), versions=("*", "*"), counters=counters,
                                        budgets=args)
            assert (refused.refused, refused.used) == (3, 50) and value(state, rpm.key) is None
            # settled tokens go only to counters that exist: a lost one is rebuilt, never restarted at 0
            await state.budget_settle(*spend.settle_arguments([], {tenant_day.key: 5, "tg:tokens:t1:p3:d20261206": 7}))
            assert value(state, tenant_day.key) == 15 and value(state, "tg:tokens:t1:p3:d20261206") is None
            ok = await state.admit(tenant_id=1, pick=pick("d"), versions=("*", "*"), counters=[rpm, tenant_day],
                                   budgets=args)
            assert ok.order and value(state, rpm.key) == 1
        finally:
            await state.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_budgets_and_limits_in_one_admission(settings, kind):
    async def scenario():
        state = make(kind, settings)
        try:
            rpm = Counter("tg:rl:t1:p3:m1", 100, 1, 120, 30.0)
            plans, args = budgets(1000, "block", 600)
            bucket = spend.bucket_of(plans[0].sid, TODAY)
            # the bucket is missing: rebuild it first, nothing counted
            rebuild = await state.admit(tenant_id=1, pick=pick("a"), versions=("*", "*"), counters=[rpm],
                                        budgets=args)
            assert rebuild.budget == (4, 1, 1) and value(state, rpm.key) is None
            await state.budget_seed({bucket: 100})
            ok = await state.admit(tenant_id=1, pick=pick("b"), versions=("*", "*"), counters=[rpm], budgets=args)
            assert ok.budget == () and ok.order and value(state, rpm.key) == 1
            # 100 spent + 600 held + 600 asked > 1000: the budget refuses (frees in an hour, after the
            # minute of the rate limit had it refused too) and nothing is counted
            blocked = await state.admit(tenant_id=1, pick=pick("c"), versions=("*", "*"), counters=[rpm],
                                        budgets=args)
            assert blocked.budget == (2, 1, 1, 100, 600) and value(state, rpm.key) == 1
            tight = Counter(rpm.key, 1, 1, 120, 30.0)
            both = await state.admit(tenant_id=1, pick=pick("d"), versions=("*", "*"), counters=[tight],
                                     budgets=args)
            assert both.budget[0] == 2 and both.refused == 0, "the budget frees up later: it is named"
            # a downgrade budget: asked for before anything is counted
            _, down = budgets(1000, "downgrade", 600)
            downgrade = await state.admit(tenant_id=1, pick=pick("e"), versions=("*", "*"), counters=[rpm],
                                          budgets=down)
            assert downgrade.budget == (3, 1, 1, 100, 600) and value(state, rpm.key) == 1
            # released: room again
            await state.budget_settle(*spend.settle_arguments([(spend.reserved_of(plans[0].sid), "b")], {}))
            again = await state.admit(tenant_id=1, pick=pick("f"), versions=("*", "*"), counters=[rpm],
                                      budgets=args)
            assert again.budget == () and value(state, rpm.key) == 2
        finally:
            await state.close()

    asyncio.run(scenario())


def test_the_script_takes_one_round_trip_whatever_the_scopes(settings):
    """Four scopes with three limits each and two budget scopes: still one EVALSHA."""
    async def scenario():
        state = RedisState(settings.REDIS_URL)
        calls = []
        original = state._admit

        async def counting(**kwargs):
            calls.append(kwargs)
            return await original(**kwargs)

        state._admit = counting
        try:
            minute = int(time.time() // 60)
            counters = [Counter(f"tg:rl:t1:s{i}:m{minute}", 1000, 1, 120, 30.0) for i in range(12)]
            _, args = budgets(10**12, "block", 1)
            await state.budget_seed({spend.bucket_of(spend.scope_id(1, project_id=3), TODAY): 0})
            admission = await state.admit(tenant_id=1, pick=pick("x"), versions=("*", "*"), counters=counters,
                                          budgets=args)
            assert admission.order and len(calls) == 1
        finally:
            await state.close()

    asyncio.run(scenario())


def test_each_worker_lists_what_it_holds_and_a_takeover_releases_only_the_dead_ones(settings):
    """The admission script lists each reservation in the admitting worker's held hash
    (billing.spend.held_key) in the same call, settlement strikes it off, and HELD_RELEASE_SCRIPT
    releases what a dead worker's hash still lists — but the requests its journal's replay
    settles — in every scope, then deletes the hash; a live worker's reservations stay."""
    tenant_budget = spend.BudgetInfo(1, "t", "tenant", None, Decimal(1), "day", "block", "")
    project_budget = spend.BudgetInfo(2, "p", "project", None, Decimal(1), "day", "block", "", project_id=3)
    plans = [spend.ScopePlan(spend.scope_id(1), [TODAY], [(tenant_budget, 1)], resets_in=(60,)),
             spend.ScopePlan(spend.scope_id(1, project_id=3), [TODAY], [(project_budget, 1)], resets_in=(60,))]
    args = spend.budget_arguments(plans, reservation=100, downgrade_as_alert=False)
    totals = [spend.reserved_of(p.sid) for p in plans]
    redis = get_redis()

    def amounts(total: str) -> set[str]:
        return {rid.decode() for rid in redis.hkeys(f"{total}:amt")}

    async def scenario():
        dead, live, unlisted = RedisState(settings.REDIS_URL), RedisState(settings.REDIS_URL), RedisState(
            settings.REDIS_URL)
        dead.held, live.held = spend.held_key("host-a-101-0a0a0a0a"), spend.held_key("host-b-202-0b0b0b0b")
        try:
            await dead.budget_seed({spend.bucket_of(p.sid, TODAY): 0 for p in plans})
            for state, rid in ((dead, "d1"), (dead, "d2"), (dead, "d3"), (live, "l1"), (unlisted, "u1")):
                assert (await state.admit(tenant_id=1, pick=pick(rid), versions=("*", "*"), budgets=args)).order
            # listed in the same script call, with the totals reserved in; a state without a held
            # hash (no journal: nothing would take it over) lists nothing
            assert redis.hgetall(dead.held) == {rid.encode(): " ".join(totals).encode() for rid in ("d1", "d2", "d3")}
            assert redis.hgetall(live.held) == {b"l1": " ".join(totals).encode()}
            assert len(redis.keys("tg:held:*")) == 2
            # a list Redis lost (no refresh yet) is made again with a lifetime: it never outlives a dead worker
            assert 0 < redis.ttl(dead.held) <= spend.HELD_TTL
            # a refused request lists nothing
            refused = RedisState(settings.REDIS_URL)
            refused.held = spend.held_key("host-c-303-0c0c0c0c")
            _, too_much = budgets(10, "block", 10**12)
            assert (await refused.admit(tenant_id=1, pick=pick("r1"), versions=("*", "*"), budgets=too_much)).budget
            assert not redis.exists(refused.held)
            await refused.close()

            # d1 was answered and settled before the worker died: struck off its list
            await dead.budget_settle(*spend.settle_arguments([(total, "d1") for total in totals], {}, held=dead.held))
            assert set(redis.hkeys(dead.held)) == {b"d2", b"d3"}
            # the worker dies; the next one takes its journal over, which holds d3's record (its
            # replay settles it, cost and all): d2 alone is released, in both scopes
            assert await live.held_release(held=dead.held, skip={"d3"}) == 1
            assert not redis.exists(dead.held)
            for total in totals:
                assert amounts(total) == {"d3", "l1", "u1"} and int(redis.get(total)) == 300
            assert redis.hgetall(live.held) == {b"l1": " ".join(totals).encode()}, "a live worker's list is untouched"
            assert await live.held_release(held=dead.held) == 0, "a second takeover changes nothing"
            for total in totals:
                assert int(redis.get(total)) == 300
        finally:
            for state in (dead, live, unlisted):
                await state.close()

    asyncio.run(scenario())


def test_a_workers_held_hash_keeps_a_marker_and_outlives_its_reservations(settings):
    """Refreshed, the hash never empties (admission never recreates it without a lifetime) and
    lives HELD_TTL, longer than any reservation it lists; the in-process twin lists nothing."""
    async def scenario():
        state, local = RedisState(settings.REDIS_URL), LocalState()
        state.held = local.held = spend.held_key("host-a-101-0a0a0a0a")
        try:
            plans, args = budgets(10**12, "block", 100)
            await state.budget_seed({spend.bucket_of(plans[0].sid, TODAY): 0})
            await state.held_refresh()
            assert (await state.admit(tenant_id=1, pick=pick("a"), versions=("*", "*"), budgets=args)).order
            await state.budget_settle(*spend.settle_arguments([(spend.reserved_of(plans[0].sid), "a")], {},
                                                              held=state.held))
            redis = get_redis()
            assert redis.hgetall(state.held) == {b"": b""}, "the marker keeps it from emptying"
            assert spend.RESERVATION_TTL < redis.ttl(state.held) <= spend.HELD_TTL
            assert await state.held_release(held=state.held) == 0 and not redis.exists(state.held)
            await local.held_refresh()
            assert await local.held_release(held=local.held, skip={"a"}) == 0
        finally:
            await state.close()

    asyncio.run(scenario())


def test_requests_that_find_the_same_counters_lost_wait_for_one_rebuild():
    """At a tenant's local midnight every request finds its tokens-per-day counter missing: one
    rebuild reads the rollups, the others wait for it; a failed one fails them all, and the next
    request tries again."""
    app = GatewayApp()
    calls: list[str] = []
    release = asyncio.Event()

    async def rebuild(name: str, fail: bool = False) -> None:
        calls.append(name)
        await release.wait()
        if fail:
            raise RuntimeError("the database is down")

    async def scenario():
        waiting = [asyncio.ensure_future(app._once(("tg:tokens:t1:d20270115",), lambda: rebuild("day")))
                   for _ in range(50)]
        other = asyncio.ensure_future(app._once(("tg:tokens:t2:d20270115",), lambda: rebuild("other")))
        await asyncio.sleep(0.01)
        assert calls == ["day", "other"] and not any(w.done() for w in waiting)
        release.set()
        await asyncio.gather(*waiting, other)
        assert app._rebuilding == {}
        release.clear()
        failing = [asyncio.ensure_future(app._once(("k",), lambda: rebuild("fails", fail=True))) for _ in range(3)]
        await asyncio.sleep(0.01)
        release.set()
        results = await asyncio.gather(*failing, return_exceptions=True)
        assert [type(r) for r in results] == [RuntimeError] * 3
        await app._once(("k",), lambda: rebuild("again"))
        assert calls == ["day", "other", "fails", "again"]

    asyncio.run(scenario())
