"""Deployments and strategies through /v1, against loopback fakes: weights honoured over 2,000
requests, least-busy and usage across two app instances, limits skipped not called, a
retry-after cooling a deployment, session affinity, latency and cost, bare models spread."""

import asyncio
import json
import time
from collections import Counter
from decimal import Decimal

import aiohttp
import httpx
import pytest

from billing.models import UsageLog
from core.redis import get_redis
from providers import traffic
from providers.cooldowns import cooldown_key
from providers.models import ProviderModel
from providers.services import alias_create
from tenants.access import SYSTEM
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hi"}]
CHI2_3_DF = 21.11  # chi-square, 3 degrees of freedom: exceeded with probability 1e-4


def deployments(world, fakes: dict[str, FakeOpenAI], **fields) -> dict[str, int]:
    """One provider per fake (named as its key), each serving model "m"; their provider model ids."""
    ids = {}
    for name, fake in fakes.items():
        add_provider(world.tenant, fake, name=name, max_retries=0, **fields)
        ids[name] = ProviderModel.objects.get(provider__name=name, provider__owner=world.tenant, model_id="m").pk
    return ids


def alias(world, name: str, targets: list[dict], **settings) -> None:
    alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": name, "retries": 0, "targets": targets, **settings})


async def _posts(urls: list[str], key: str, body: dict, concurrency: int, headers=None) -> list[tuple[int, str]]:
    """POST ``body`` once to each url, ``concurrency`` at a time: (status, x-tollgate-model)."""
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one(url):
            async with gate, session.post(url, json=body, headers={"Authorization": f"Bearer {key}",
                                                                   **(headers or {})}) as resp:
                await resp.read()
                return resp.status, resp.headers.get("x-tollgate-model", "")
        return await asyncio.gather(*(one(u) for u in urls))


def post_many(urls: list[str], key: str, body: dict, concurrency: int = 16, headers=None):
    return asyncio.run(_posts(urls, key, body, concurrency, headers))


def one(live, world, model: str, **extra) -> httpx.Response:
    headers = {"Authorization": f"Bearer {world.chat_key}", **extra.pop("headers", {})}
    return httpx.post(f"{live.url}/v1/chat/completions", json={"model": model, "messages": HELLO, **extra},
                      headers=headers, timeout=30)


def settle_traffic(seconds: float = 0.35) -> None:
    """Let the gateway release ended requests (deployments.TALLY_SECONDS)."""
    time.sleep(seconds)


def test_weights_are_honoured_over_2000_requests(world, live):
    weights = {"w1": 1, "w2": 2, "w3": 3, "w4": 4}
    with FakeOpenAI(models=["m"]) as f1, FakeOpenAI(models=["m"]) as f2, FakeOpenAI(models=["m"]) as f3, \
            FakeOpenAI(models=["m"]) as f4:
        fakes = {"w1": f1, "w2": f2, "w3": f3, "w4": f4}
        deployments(world, fakes)
        alias(world, "spread", [{"model": f"{n}:m", "priority": 0, "weight": w} for n, w in weights.items()])
        n = 2000
        answers = post_many([f"{live.url}/v1/chat/completions"] * n, world.chat_key,
                            {"model": "spread", "messages": HELLO}, concurrency=32)
        assert Counter(status for status, _ in answers) == {200: n}
        served = Counter(model.partition(":")[0] for _, model in answers)
        # what each upstream saw is what the answers say
        assert {name: len(f.requests_to("/v1/chat/completions")) for name, f in fakes.items()} == dict(served)
    total = sum(weights.values())
    chi2 = sum((served[k] - n * w / total) ** 2 / (n * w / total) for k, w in weights.items())
    shares = {k: round(served[k] / n, 3) for k in weights}
    print(f"weights 1:2:3:4 over {n} requests -> shares {shares}, chi-square {chi2:.2f} (df 3)")
    assert chi2 < CHI2_3_DF, shares
    deadline = time.monotonic() + 10
    while UsageLog.objects.filter(model_requested="spread").count() < n and time.monotonic() < deadline:
        time.sleep(0.1)
    by_model = Counter(UsageLog.objects.filter(model_requested="spread")
                       .values_list("provider_model__provider__name", flat=True))
    assert by_model == served


def test_least_busy_counts_in_flight_across_two_instances(world, live, second_instance):
    with FakeOpenAI(models=["m"]) as a, FakeOpenAI(models=["m"]) as b:
        ids = deployments(world, {"a": a, "b": b})
        alias(world, "busy", [{"model": "a:m", "priority": 0}, {"model": "b:m", "priority": 0}],
              strategy="least-busy")
        a.set_fault("slow", delay=1.5)
        b.set_fault("slow", delay=1.5)
        urls = [f"{live.url}/v1/chat/completions", f"{second_instance}/v1/chat/completions"] * 5
        answers = post_many(urls, world.chat_key, {"model": "busy", "messages": HELLO}, concurrency=10)
        assert [s for s, _ in answers] == [200] * 10
        # Each admission saw the other instance's requests in flight: an exact split.
        assert (len(a.requests_to("/v1/chat/completions")), len(b.requests_to("/v1/chat/completions"))) == (5, 5)
    settle_traffic()
    client = get_redis()
    assert [client.zcard(traffic.inflight_key(world.tenant.pk, pm)) for pm in ids.values()] == [0, 0]


def test_usage_spreads_by_headroom_across_two_instances(world, live, second_instance):
    with FakeOpenAI(models=["m"]) as small, FakeOpenAI(models=["m"]) as big:
        deployments(world, {"small": small, "big": big})
        alias(world, "headroom", [{"model": "small:m", "priority": 0, "rpm_limit": 10},
                                  {"model": "big:m", "priority": 0, "rpm_limit": 30}], strategy="usage")
        if time.time() % 60 > 50:  # the 20 requests must fall in one minute
            time.sleep(61 - time.time() % 60)
        for i in range(20):
            base = live.url if i % 2 == 0 else second_instance
            response = httpx.post(f"{base}/v1/chat/completions", json={"model": "headroom", "messages": HELLO},
                                  headers={"Authorization": f"Bearer {world.chat_key}"}, timeout=30)
            assert response.status_code == 200
        sent = (len(small.requests_to("/v1/chat/completions")), len(big.requests_to("/v1/chat/completions")))
    # the share of its rpm limit each has used stays level: about 1 in 4 to the small one
    assert 4 <= sent[0] <= 6 and sum(sent) == 20, sent


def test_a_deployment_over_its_rpm_limit_is_skipped_not_called(world, live):
    with FakeOpenAI(models=["m"], reply="A") as a, FakeOpenAI(models=["m"], reply="B") as b:
        deployments(world, {"a": a, "b": b})
        alias(world, "capped", [{"model": "a:m", "priority": 0, "weight": 1000, "rpm_limit": 3},
                                {"model": "b:m", "priority": 0, "weight": 1}])
        alias(world, "only-a", [{"model": "a:m", "rpm_limit": 3}])
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        served = [one(live, world, "capped").headers["x-tollgate-model"] for _ in range(8)]
        assert Counter(served) == {"a:m": 3, "b:m": 5}
        assert len(a.requests_to("/v1/chat/completions")) == 3
        # alone and at its limit (the counter is the deployment's, shared by both aliases)
        refused = one(live, world, "only-a")
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "deployments_at_limit" and "a:m" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert len(a.requests_to("/v1/chat/completions")) == 3
        assert wait_usage(refused.headers["x-request-id"]).status == "rejected"


def test_a_deployment_over_its_tpm_limit_is_skipped(world, live):
    usage = {"prompt_tokens": 700, "completion_tokens": 300}
    with FakeOpenAI(models=["m"], usage=usage) as a, FakeOpenAI(models=["m"], usage=usage) as b:
        deployments(world, {"a": a, "b": b})
        alias(world, "tokens", [{"model": "a:m", "priority": 0, "weight": 1000, "tpm_limit": 1000},
                                {"model": "b:m", "priority": 0, "weight": 1}])
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        assert one(live, world, "tokens").headers["x-tollgate-model"] == "a:m"
        settle_traffic()  # its 1,000 tokens counted against this minute
        assert [one(live, world, "tokens").headers["x-tollgate-model"] for _ in range(3)] == ["b:m"] * 3
        assert len(a.requests_to("/v1/chat/completions")) == 1


def test_a_429_retry_after_cools_the_deployment_for_every_worker(world, live, second_instance):
    with FakeOpenAI(models=["m"], reply="A") as a, FakeOpenAI(models=["m"], reply="B") as b:
        ids = deployments(world, {"a": a, "b": b})
        alias(world, "cool", [{"model": "a:m", "priority": 0, "weight": 1000}, {"model": "b:m", "priority": 0}])
        a.set_fault("status", status=429, retry_after=30, times=1)
        first = one(live, world, "cool")
        assert first.status_code == 200 and first.headers["x-tollgate-model"] == "b:m"  # moved on at once
        assert wait_usage(first.headers["x-request-id"]).attempts == 2
        ttl = get_redis().ttl(cooldown_key(world.tenant.pk, ids["a"]))
        assert 25 <= ttl <= 30
        for base in (live.url, second_instance) * 2:
            response = httpx.post(f"{base}/v1/chat/completions", json={"model": "cool", "messages": HELLO},
                                  headers={"Authorization": f"Bearer {world.chat_key}"}, timeout=30)
            assert response.headers["x-tollgate-model"] == "b:m"
        assert len(a.requests_to("/v1/chat/completions")) == 1


def test_session_affinity_sticks_while_healthy(world, live):
    with FakeOpenAI(models=["m"]) as a, FakeOpenAI(models=["m"]) as b, FakeOpenAI(models=["m"]) as c:
        ids = deployments(world, {"a": a, "b": b, "c": c})
        alias(world, "sticky", [{"model": f"{n}:m", "priority": 0} for n in "abc"], session_affinity=True)
        alias(world, "loose", [{"model": f"{n}:m", "priority": 0} for n in "abc"])

        def served(model: str, **extra) -> str:
            response = one(live, world, model, **extra)
            assert response.status_code == 200, response.text
            return response.headers["x-tollgate-model"]

        home = {served("sticky", headers={"x-tollgate-session": "conv-1"}) for _ in range(12)}
        assert len(home) == 1
        home = home.pop()
        assert {served("sticky", user="end-user-7") for _ in range(6)} == {served("sticky", user="end-user-7")}
        sessions = Counter(served("sticky", headers={"x-tollgate-session": f"s-{i}"}) for i in range(30))
        assert len(sessions) >= 2  # sessions spread over the deployments
        assert len({served("loose", headers={"x-tollgate-session": "conv-1"}) for _ in range(30)}) >= 2

        flag = cooldown_key(world.tenant.pk, ids[home.partition(":")[0]])
        get_redis().set(flag, "1", ex=30)  # its home is cooling down: the session moves, then comes back
        moved = {served("sticky", headers={"x-tollgate-session": "conv-1"}) for _ in range(5)}
        assert len(moved) == 1 and home not in moved
        get_redis().delete(flag)
        assert served("sticky", headers={"x-tollgate-session": "conv-1"}) == home


def test_latency_prefers_the_faster_deployment(world, live):
    with FakeOpenAI(models=["m"]) as slow, FakeOpenAI(models=["m"]) as fast:
        deployments(world, {"slow": slow, "fast": fast})
        alias(world, "quick", [{"model": "slow:m", "priority": 0}, {"model": "fast:m", "priority": 0}],
              strategy="latency")
        slow.set_fault("slow", delay=0.4)
        picks = []
        for _ in range(10):
            picks.append(one(live, world, "quick").headers["x-tollgate-model"])
            settle_traffic(0.25)
        # each is tried while it has no latency on record, then the faster one takes the traffic
        assert "slow:m" in picks[:2] or len(slow.requests_to("/v1/chat/completions")) >= 1
        assert picks[-6:] == ["fast:m"] * 6, picks


def test_cost_prefers_the_cheapest_known_price(world, live):
    with FakeOpenAI(models=["m"], reply="dear") as dear, FakeOpenAI(models=["m"], reply="cheap") as cheap:
        ids = deployments(world, {"dear": dear, "cheap": cheap})
        ProviderModel.objects.filter(pk=ids["dear"]).update(input_price=Decimal(5), output_price=Decimal(15))
        ProviderModel.objects.filter(pk=ids["cheap"]).update(input_price=Decimal("0.1"), output_price=Decimal("0.4"))
        alias(world, "thrifty", [{"model": "dear:m", "priority": 0, "weight": 100},
                                 {"model": "cheap:m", "priority": 0}], strategy="cost")
        assert {one(live, world, "thrifty").headers["x-tollgate-model"] for _ in range(8)} == {"cheap:m"}
        get_redis().set(cooldown_key(world.tenant.pk, ids["cheap"]), "1", ex=30)
        assert one(live, world, "thrifty").headers["x-tollgate-model"] == "dear:m"


def test_a_bare_model_spreads_over_providers_of_equal_priority(world, live):
    with FakeOpenAI(models=["m"]) as a, FakeOpenAI(models=["m"]) as b, FakeOpenAI(models=["m"]) as low:
        add_provider(world.tenant, a, name="a", priority=3)
        add_provider(world.tenant, b, name="b", priority=3)
        add_provider(world.tenant, low, name="low", priority=1)
        answers = post_many([f"{live.url}/v1/chat/completions"] * 60, world.chat_key,
                            {"model": "m", "messages": HELLO}, concurrency=8)
        served = Counter(model for _, model in answers)
        assert set(served) == {"a:m", "b:m"} and min(served.values()) >= 10, served
        assert not low.requests_to("/v1/chat/completions")


# --- error-class fallbacks --------------------------------------------------------------------------


def test_a_context_window_error_falls_back_to_the_alias_s_context_window_fallbacks(world, live):
    with FakeOpenAI(models=["m"]) as small, FakeOpenAI(models=["m"]) as twin, \
            FakeOpenAI(models=["m"], reply="from the big one") as big:
        deployments(world, {"small": small, "twin": twin, "big": big})
        alias(world, "long-context", [{"model": "big:m"}])
        alias(world, "short", [{"model": "small:m", "priority": 0}, {"model": "twin:m", "priority": 0}],
              context_window_fallbacks=["long-context"])
        small.set_fault("context_window")
        twin.set_fault("context_window")
        for stream in (False, True):
            response = one(live, world, "short", stream=stream)
            assert response.status_code == 200, response.text
            assert response.headers["x-tollgate-model"] == "big:m"
            if stream:
                events = [json.loads(line[6:]) for line in response.text.splitlines()
                          if line.startswith("data: {")]
                text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
            else:
                text = response.json()["choices"][0]["message"]["content"]
            assert text == "from the big one"
            row = wait_usage(response.headers["x-request-id"])
            assert (row.status, row.attempts, row.model_requested) == ("ok", 2, "short")
        # one of the group was tried, never both: the other would overflow too
        assert len(small.requests_to("/v1/chat/completions")) + len(twin.requests_to("/v1/chat/completions")) == 2


def test_a_content_policy_refusal_falls_back_to_content_policy_fallbacks_only(world, live):
    with FakeOpenAI(models=["m"]) as strict, FakeOpenAI(models=["m"], reply="lenient answer") as lenient:
        deployments(world, {"strict": strict, "lenient": lenient})
        alias(world, "guarded", [{"model": "strict:m"}], content_policy_fallbacks=["lenient:m"])
        strict.set_fault("content_policy", times=1)
        response = one(live, world, "guarded")
        assert response.status_code == 200 and response.headers["x-tollgate-model"] == "lenient:m"
        # a context-window error has no fallbacks here: straight back, as the upstream said it
        strict.set_fault("context_window", times=1)
        response = one(live, world, "guarded")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "context_length_exceeded"
        # and any other 400 goes straight back too
        strict.set_fault("status", status=400, times=1)
        assert one(live, world, "guarded").status_code == 400
        assert len(lenient.requests_to("/v1/chat/completions")) == 1


def test_error_class_fallbacks_work_at_the_messages_door(world, live):
    with FakeOpenAI(models=["m"]) as small, FakeOpenAI(models=["m"], reply="roomy") as big:
        deployments(world, {"small": small, "big": big})
        alias(world, "claude-ish", [{"model": "small:m"}], context_window_fallbacks=["big:m"])
        small.set_fault("context_window")
        response = httpx.post(f"{live.url}/v1/messages", headers={"x-api-key": world.chat_key,
                                                                  "anthropic-version": "2023-06-01"},
                              json={"model": "claude-ish", "max_tokens": 50, "messages": HELLO}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["content"][0]["text"] == "roomy"
        small.set_fault("context_window")
        alias_none = one(live, world, "small:m")
        assert alias_none.status_code == 400 and alias_none.json()["error"]["code"] == "context_length_exceeded"
