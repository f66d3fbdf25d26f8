"""Picking a deployment (gateway/deployments.py and the admission script): the worker's
preorder, and the same ordering in Redis's Lua and in the in-process state."""

import asyncio
import random
import time
from collections import Counter
from dataclasses import replace
from decimal import Decimal

import pytest

from gateway.app import GatewayApp
from gateway.deployments import (
    AT_RPM,
    AT_TPM,
    COOLING,
    KEEP,
    LATENCY,
    LEAST_BUSY,
    RATE_LIMITED,
    USABLE,
    USAGE,
    Candidate,
    Ended,
    Tally,
    preorder,
)
from gateway.routing import Target, route_make
from gateway.state import LocalState, Pick, RedisState
from providers import traffic
from providers.adapters.types import Deployment
from providers.cooldowns import cooldown_key
from providers.models import RoutingStrategy

# Chi-square with 3 degrees of freedom is above this with probability 1e-4.
CHI2_3_DF = 21.11


def cand(pm: int, *, group: int = 0, weight: int = 1, rpm: int = 0, tpm: int = 0, price: str | None = None):
    return Candidate(pm, group, weight, rpm, tpm, None if price is None else Decimal(price))


def chi_square(counts: Counter, weights: dict[int, int], n: int) -> float:
    total = sum(weights.values())
    return sum((counts[k] - n * w / total) ** 2 / (n * w / total) for k, w in weights.items())


def test_weighted_preorder_picks_first_in_proportion_to_weight():
    random.seed(7)
    weights = {1: 1, 2: 2, 3: 3, 4: 4}
    candidates = [cand(pm, weight=w) for pm, w in weights.items()]
    n = 20_000
    firsts = Counter(candidates[preorder(candidates, RoutingStrategy.WEIGHTED)[0]].provider_model_id for _ in range(n))
    assert chi_square(firsts, weights, n) < CHI2_3_DF, firsts


def test_groups_come_in_order_and_weight_zero_is_last_in_its_group():
    candidates = [cand(1, group=1), cand(2, group=0, weight=0), cand(3, group=0, weight=5), cand(4, group=1)]
    for _ in range(50):
        order = [candidates[i].provider_model_id for i in preorder(candidates, RoutingStrategy.WEIGHTED)]
        assert order[:2] == [3, 2] and set(order[2:]) == {1, 4}


def test_cost_orders_cheapest_first_within_a_group():
    candidates = [cand(1, price="5"), cand(2, price="0.5"), cand(3), cand(4, price="2", group=1),
                  cand(5, price="0.1", group=1)]
    order = [candidates[i].provider_model_id for i in preorder(candidates, RoutingStrategy.COST)]
    assert order == [2, 1, 3, 5, 4]


def test_a_session_keeps_its_deployment_and_sessions_spread_by_weight():
    candidates = [cand(pm) for pm in (11, 12, 13)]
    first = {s: preorder(candidates, RoutingStrategy.WEIGHTED, f"session-{s}")[0] for s in range(3000)}
    assert all(preorder(candidates, RoutingStrategy.WEIGHTED, f"session-{s}")[0] == first[s] for s in range(0, 3000, 7))
    spread = Counter(first.values())
    assert chi_square(Counter({candidates[i].provider_model_id: c for i, c in spread.items()}),
                      {11: 1, 12: 1, 13: 1}, 3000) < CHI2_3_DF
    # Without deployment 12, only the sessions that were on it move.
    fewer = [candidates[0], candidates[2]]
    for s, i in first.items():
        if candidates[i].provider_model_id != 12:
            assert fewer[preorder(fewer, RoutingStrategy.WEIGHTED, f"session-{s}")[0]] is candidates[i]


# --- the ordering in Redis's Lua and in the in-process state agree ------------------------------

TENANT = 9001


def redis_state(settings) -> RedisState:
    return RedisState(settings.REDIS_URL)


async def _scenario(state, code: int, stream: bool, cooling: dict[int, str], requests: dict[int, int],
                    tokens: dict[int, int], in_flight: dict[int, int], latency: dict[int, tuple]):
    """Set the shared state of deployments 1..4 through the state's own writes, then order."""
    for pm, count in requests.items():
        for r in range(count):
            await state.take(tenant_id=TENANT, provider_model_id=pm, request_id=f"warm-{pm}-{r}")
    ended = [Ended(TENANT, f"warm-{pm}-{r}", (pm,), pm, 0, None, False)
             for pm, count in requests.items() for r in range(count - in_flight.get(pm, 0))]
    ended += [Ended(TENANT, f"tok-{pm}", (), pm, n, None, False) for pm, n in tokens.items()]
    for pm, (lat, ttft) in latency.items():
        if lat is not None:
            ended.append(Ended(TENANT, f"lat-{pm}", (), pm, 0, lat, False))
        if ttft is not None:
            ended.append(Ended(TENANT, f"ttft-{pm}", (), pm, 0, ttft, True))
    await state.traffic_settle(ended)
    for pm, flag in cooling.items():
        if flag == "rate":
            await state.cool(tenant_id=TENANT, provider_model_id=pm, seconds=30)
        else:
            await state.record_failure(tenant_id=TENANT, provider_model_id=pm, allowed_fails=0, cooldown_seconds=30)
    candidates = (cand(1, rpm=5), cand(2, tpm=1000), cand(3, group=1, rpm=10, tpm=500), cand(4, group=1))
    order = await state.pick(tenant_id=TENANT, pick=Pick(candidates, code, stream, "req-x"))
    return order


SCENARIOS = [
    # code, stream, cooling, requests, tokens, in_flight, latency
    (KEEP, False, {}, {}, {}, {}, {}),
    (KEEP, False, {1: "fail"}, {}, {}, {}, {}),
    (KEEP, False, {1: "rate", 2: "fail", 3: "fail", 4: "fail"}, {}, {}, {}, {}),
    (KEEP, False, {}, {1: 5}, {2: 1000}, {}, {}),
    (LEAST_BUSY, False, {}, {1: 3, 2: 1, 3: 4, 4: 2}, {}, {1: 3, 2: 1, 3: 4, 4: 2}, {}),
    (LEAST_BUSY, False, {}, {1: 2, 2: 2}, {}, {1: 2, 2: 2}, {}),
    (LATENCY, False, {}, {}, {}, {}, {1: (300.0, 50.0), 2: (100.0, 900.0), 3: (None, 10.0), 4: (20.0, None)}),
    (LATENCY, True, {}, {}, {}, {}, {1: (300.0, 50.0), 2: (100.0, 900.0), 3: (None, 10.0), 4: (20.0, None)}),
    (USAGE, False, {}, {1: 4, 3: 1}, {2: 100, 3: 400}, {}, {}),
    (USAGE, False, {}, {1: 1, 3: 9}, {2: 900, 3: 100}, {}, {}),
]


@pytest.mark.parametrize("scenario", range(len(SCENARIOS)))
def test_redis_and_in_process_states_order_alike(settings, scenario):
    code, stream, cooling, requests, tokens, in_flight, latency = SCENARIOS[scenario]

    async def both():
        redis = redis_state(settings)
        try:
            from_redis = await _scenario(redis, code, stream, cooling, requests, tokens, in_flight, latency)
        finally:
            await redis.close()
        local = await _scenario(LocalState(), code, stream, cooling, requests, tokens, in_flight, latency)
        return from_redis, local

    from_redis, local = asyncio.run(both())
    assert [(i, state) for i, state, _ in from_redis] == [(i, state) for i, state, _ in local]
    assert all(abs(a[2] - b[2]) <= 1 for a, b in zip(from_redis, local, strict=True))  # seconds, read apart
    states = {i: (state, wait) for i, state, wait in from_redis}
    for pm, flag in cooling.items():
        state, wait = states[pm - 1]
        if flag == "rate":
            assert state == RATE_LIMITED and 0 < wait <= 30
        else:
            assert (state, wait) == (COOLING, 0)
    if requests.get(1) == 5 and not cooling:
        assert states[0][0] == AT_RPM
    if tokens.get(2) == 1000:
        assert states[1][0] == AT_TPM
    if code == LEAST_BUSY and requests == {1: 3, 2: 1, 3: 4, 4: 2}:
        assert [i for i, _, _ in from_redis] == [1, 0, 3, 2]  # fewest in flight first, groups kept
    if code == LATENCY:
        expected = [0, 1, 2, 3] if stream else [1, 0, 2, 3]  # (no sample counts as 0 ms: tried to learn)
        assert [i for i, _, _ in from_redis] == expected
    if code == USAGE and requests == {1: 4, 3: 1}:
        # 1: 4/5 of its rpm, 2: 100/1000 of its tpm; 3: max(1/10, 400/500), 4: no limits (0)
        assert [i for i, _, _ in from_redis] == [1, 0, 3, 2]


def test_admission_counts_the_first_usable_deployment_and_release_frees_it(settings):
    async def run():
        state = redis_state(settings)
        try:
            candidates = (cand(1, rpm=1), cand(2))
            order = await state.pick(tenant_id=TENANT, pick=Pick(candidates, KEEP, False, "req-a"))
            assert [(i, s) for i, s, _ in order] == [(0, USABLE), (1, USABLE)]
            # deployment 1 took req-a: at its rpm now, and one in flight
            order = await state.pick(tenant_id=TENANT, pick=Pick(candidates, LEAST_BUSY, False, "req-b"))
            assert [(i, s) for i, s, _ in order] == [(1, USABLE), (0, AT_RPM)]
            minute = traffic.minute_of(time.time())
            assert int(await state.redis.get(traffic.requests_key(TENANT, 1, minute))) == 1
            assert await state.redis.zcard(traffic.inflight_key(TENANT, 1)) == 1
            await state.traffic_settle([Ended(TENANT, "req-a", (1,), 1, 42, 12.5, False)])
            assert await state.redis.zcard(traffic.inflight_key(TENANT, 1)) == 0
            assert int(await state.redis.get(traffic.tokens_key(TENANT, 1, minute))) == 42
            assert float(await state.redis.hget(traffic.latency_key(TENANT, 1), "lat")) == 12.5
            await state.traffic_settle([Ended(TENANT, "req-c", (), 1, 0, 22.5, False)])
            assert float(await state.redis.hget(traffic.latency_key(TENANT, 1), "lat")) == pytest.approx(
                12.5 + traffic.LATENCY_WEIGHT * 10)
        finally:
            await state.close()

    asyncio.run(run())


def test_a_longer_cooldown_is_not_shortened_by_a_retry_after(settings):
    async def run():
        state = redis_state(settings)
        try:
            await state.record_failure(tenant_id=TENANT, provider_model_id=7, allowed_fails=0, cooldown_seconds=600)
            await state.cool(tenant_id=TENANT, provider_model_id=7, seconds=5)
            ttl = await state.redis.ttl(cooldown_key(TENANT, 7))
            assert ttl > 500
            await state.cool(tenant_id=TENANT, provider_model_id=8, seconds=5)
            assert (await state.redis.get(cooldown_key(TENANT, 8))).startswith(b"r")
        finally:
            await state.close()

    asyncio.run(run())


def test_a_budget_reservation_covers_the_error_class_fallbacks():
    def target(pm: int, price: str) -> Target:
        d = Deployment(provider_id=1, provider_name="p", provider_type="openai", base_url="http://x/v1", api_key="",
                       extra_headers=(), provider_model_id=pm, model_id=f"m{pm}", timeout=5, max_retries=0,
                       input_price=Decimal(price), output_price=Decimal(price), cached_input_price=None,
                       context_length=1000)
        return Target(d, {})

    settings = {"retries": 0, "timeout": None, "allowed_fails": 1, "cooldown_seconds": 1}
    cheap = route_make(requested="cheap", alias="cheap", targets=(target(1, "1"),), **settings)
    dear = route_make(requested="dear", alias="dear", targets=(target(2, "100"),), **settings)
    with_fallback = replace(cheap, context_fallbacks=(dear,))

    class Tenant:
        defaults: dict = {}

    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    alone = GatewayApp._worst_case(cheap, body, Tenant, 400, "chat")
    covered = GatewayApp._worst_case(with_fallback, body, Tenant, 400, "chat")
    assert covered == GatewayApp._worst_case(dear, body, Tenant, 400, "chat") and covered > 50 * alone


def test_a_tally_that_cannot_reach_redis_drops_the_batch_and_warns_once_a_minute(caplog):
    class Down:
        calls = 0

        async def traffic_settle(self, ended):
            Down.calls += 1
            raise ConnectionError("redis is down")

    async def run():
        tally = Tally(Down())
        for i in range(3):
            tally.add(Ended(TENANT, f"req-{i}", (1,), 1, 10, 5.0, False))
            await tally.flush()
        return tally

    with caplog.at_level("WARNING", logger="tollgate.gateway"):
        tally = asyncio.run(run())
    assert Down.calls == 3 and tally.pending == []
    warnings = [r for r in caplog.records if "not released" in r.getMessage()]
    assert len(warnings) == 1 and tally.dropped == 2
