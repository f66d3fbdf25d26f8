"""Every error in the OpenAI shape, limits, the response cache, models and embeddings."""

import time
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from billing.models import UsageLog
from gateway.app import gateway
from providers.services import alias_create
from tenants.access import SYSTEM
from tenants.keys import key_hash
from tenants.models import ApiKey
from tenants.services import api_key_create, api_key_revoke, tenant_update
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)


def hello():
    return [{"role": "user", "content": "hi"}]


def post(live, key, body, *, headers=None):
    sent = {"Authorization": f"Bearer {key}"} if key else {}
    sent.update(headers or {})
    return httpx.post(f"{live.url}/v1/chat/completions", headers=sent, json=body, timeout=10)


def assert_openai_error(response, status, *words):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"], error["message"]
    assert response.headers["x-request-id"].startswith("req_")
    return error


def test_missing_and_invalid_keys(world, live):
    assert_openai_error(post(live, None, {"messages": hello()}), 401, "Missing API key")
    assert_openai_error(post(live, "tg_" + "x" * 40, {"messages": hello()}), 401, "no such key")
    assert_openai_error(post(live, "sk-abc", {"messages": hello()}), 401, "tg_")
    with pytest.raises(openai.AuthenticationError):
        sdk(live, "tg_" + "y" * 40).chat.completions.create(model="m", messages=hello())


def test_revoked_and_expired_keys_stop_working(world, live, settings):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        key, raw = api_key_create(tenant=world.tenant, name="short-lived", actor=SYSTEM)
        assert post(live, raw, {"model": "m", "messages": hello()}).status_code == 200
        api_key_revoke(key=key, actor=SYSTEM)
        gateway.keys.clear()  # what API_KEY_CACHE_SECONDS does on its own a few seconds later
        assert_openai_error(post(live, raw, {"model": "m", "messages": hello()}), 401, "revoked")
        _, raw2 = api_key_create(tenant=world.tenant, name="expiring", actor=SYSTEM,
                                 expires_at=timezone.now() + timedelta(seconds=30))
        assert post(live, raw2, {"model": "m", "messages": hello()}).status_code == 200
        ApiKey.objects.filter(key_hash=key_hash(raw2)).update(expires_at=timezone.now() - timedelta(seconds=1))
        gateway.keys.clear()
        assert_openai_error(post(live, raw2, {"model": "m", "messages": hello()}), 401, "expired")


def test_unknown_model_lists_what_is_available(world, live):
    with FakeOpenAI(models=["alpha", "beta"]) as fake:
        add_provider(world.tenant, fake)
        error = assert_openai_error(post(live, world.chat_key, {"model": "gpt-5x", "messages": hello()}), 404,
                                    "'gpt-5x' is not enabled", "up:alpha", "up:beta")
        assert error["code"] == "model_not_found" and error["param"] == "model"
        with pytest.raises(openai.NotFoundError):
            sdk(live, world.chat_key).chat.completions.create(model="nope", messages=hello())


def test_outsider_key_cannot_reach_another_tenants_models(world, live):
    with FakeOpenAI(models=["private-model"]) as fake:
        add_provider(world.tenant, fake)
        response = post(live, world.other_chat_key, {"model": "up:private-model", "messages": hello()})
        assert_openai_error(response, 404, "not enabled")
        assert "private-model" not in response.json()["error"]["message"].split("available:")[1]
        assert fake.requests_to("/v1/chat/completions") == []
        listed = httpx.get(f"{live.url}/v1/models", headers={"Authorization": f"Bearer {world.other_chat_key}"})
        assert listed.json()["data"] == []


def test_no_model_and_no_default(world, live):
    assert_openai_error(post(live, world.chat_key, {"messages": hello()}), 400, "No model given")


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, ["not valid JSON"]),
    ({"content": b"[1, 2]"}, 400, ["JSON object"]),
    ({"content": b""}, 400, ["Empty body"]),
    ({"json": {"model": "m", "messages": []}}, 400, ["'messages'"]),
    ({"json": {"model": "m", "messages": hello(), "stream": "yes"}}, 400, ["'stream'"]),
    ({"json": {"model": 5, "messages": hello()}}, 400, ["'model' must be a string"]),
])
def test_malformed_requests(world, live, kwargs, status, words):
    headers = {"Authorization": f"Bearer {world.chat_key}", **kwargs.pop("headers", {})}
    response = httpx.post(f"{live.url}/v1/chat/completions", headers=headers, timeout=10, **kwargs)
    assert_openai_error(response, status, *words)


def test_oversized_body_is_413(world, live, settings):
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}]}
    assert_openai_error(post(live, world.chat_key, big), 413, "limit")


def test_unknown_route_and_method(world, live):
    assert_openai_error(httpx.get(f"{live.url}/v1/completions"), 404, "Unknown endpoint")
    assert_openai_error(httpx.get(f"{live.url}/v1/chat/completions"), 405, "POST")


def test_key_allowed_models_restrict(world, live):
    with FakeOpenAI(models=["alpha", "beta"]) as fake:
        add_provider(world.tenant, fake)
        key, raw = api_key_create(tenant=world.tenant, name="limited", actor=SYSTEM)
        ApiKey.objects.filter(pk=key.pk).update(allowed_models=["up:alpha"])
        assert post(live, raw, {"model": "up:alpha", "messages": hello()}).status_code == 200
        assert_openai_error(post(live, raw, {"model": "beta", "messages": hello()}), 403, "may not use 'beta'")
        models = httpx.get(f"{live.url}/v1/models", headers={"Authorization": f"Bearer {raw}"}).json()
        assert [m["id"] for m in models["data"]] == ["up:alpha"]


def test_tenant_rate_limit_answers_429_with_retry_after(world, live):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        tenant_update(tenant=world.tenant, changes={"requests_per_minute": 3}, actor=SYSTEM)
        codes = [post(live, world.chat_key, {"model": "m", "messages": hello()}).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        refused = post(live, world.chat_key, {"model": "m", "messages": hello()})
        error = assert_openai_error(refused, 429, "3 requests per minute for this tenant")
        assert 1 <= int(refused.headers["retry-after"]) <= 60 and error["type"] == "rate_limit_error"
        assert len(fake.requests_to("/v1/chat/completions")) == 3
        # another tenant is not affected
        with FakeOpenAI(models=["m"]) as theirs:
            add_provider(world.other, theirs)
            assert post(live, world.other_chat_key, {"model": "m", "messages": hello()}).status_code == 200
        row = wait_usage(refused.headers["x-request-id"])
    assert row.status == "rejected" and row.error_type == "tenant_rate_limit"


def test_key_rate_limit_and_tokens_per_day(world, live):
    with FakeOpenAI(models=["m"], usage={"prompt_tokens": 60, "completion_tokens": 40}) as fake:
        add_provider(world.tenant, fake)
        key, raw = api_key_create(tenant=world.tenant, name="k", actor=SYSTEM)
        ApiKey.objects.filter(pk=key.pk).update(requests_per_minute=1)
        assert post(live, raw, {"model": "m", "messages": hello()}).status_code == 200
        assert_openai_error(post(live, raw, {"model": "m", "messages": hello()}), 429, "for this API key")
        assert post(live, world.chat_key, {"model": "m", "messages": hello()}).status_code == 200  # other key fine

        tenant_update(tenant=world.tenant, changes={"tokens_per_day": 250}, actor=SYSTEM)
        gateway.configs.clear()
        first = post(live, world.chat_key, {"model": "m", "messages": hello()})
        assert first.status_code == 200  # 200 used so far < 250; with this one's 100 it is over
        wait_usage(first.headers["x-request-id"])
        time.sleep(0.5)  # the usage writer adds tokens to the daily counter when it flushes
        assert_openai_error(post(live, world.chat_key, {"model": "m", "messages": hello()}), 429, "tokens per day")


def test_response_cache_hit_is_free_and_marked(world, live):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        tenant_update(tenant=world.tenant, changes={"cache_enabled": True}, actor=SYSTEM)
        body = {"model": "m", "messages": hello(), "temperature": 0}
        first = post(live, world.chat_key, body)
        second = post(live, world.chat_key, body)
        assert first.headers["x-tollgate-cache"] == "miss" and second.headers["x-tollgate-cache"] == "hit"
        assert first.json() == second.json()
        assert len(fake.requests_to("/v1/chat/completions")) == 1
        warm = post(live, world.chat_key, {**body, "temperature": 0.7})
        assert "x-tollgate-cache" not in warm.headers
        forced = post(live, world.chat_key, {**body, "temperature": 0.7}, headers={"x-tollgate-cache": "on"})
        assert forced.headers["x-tollgate-cache"] == "miss"
        row = wait_usage(second.headers["x-request-id"])
    assert row.status == "cache_hit" and row.cost == 0 and row.input_tokens == 0


def test_cache_is_per_tenant(world, live):
    with FakeOpenAI(models=["m"]) as mine, FakeOpenAI(models=["m"]) as theirs:
        add_provider(world.tenant, mine)
        add_provider(world.other, theirs)
        for tenant in (world.tenant, world.other):
            tenant_update(tenant=tenant, changes={"cache_enabled": True}, actor=SYSTEM)
        body = {"model": "m", "messages": hello(), "temperature": 0}
        post(live, world.chat_key, body)
        other = post(live, world.other_chat_key, body)
        assert other.headers["x-tollgate-cache"] == "miss"
        assert len(theirs.requests_to("/v1/chat/completions")) == 1


def test_models_list_in_openai_shape(world, live):
    with FakeOpenAI(models=["alpha", "text-embedding-3-small"]) as fake:
        add_provider(world.tenant, fake)
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "fast", "targets": [{"model": "up:alpha"}]})
        listed = sdk(live, world.chat_key).models.list()
        assert [m.id for m in listed.data] == ["fast", "up:alpha", "up:text-embedding-3-small"]
        assert all(m.object == "model" for m in listed.data)


def test_embeddings_openai_compatible(world, live):
    with FakeOpenAI(models=["text-embedding-3-small", "chatty"]) as fake:
        add_provider(world.tenant, fake)
        client = sdk(live, world.chat_key)
        result = client.embeddings.create(model="text-embedding-3-small", input=["one", "two", "three"])
        assert len(result.data) == 3 and len(result.data[0].embedding) == 8
        assert fake.requests_to("/v1/embeddings")[-1].body["model"] == "text-embedding-3-small"
        with pytest.raises(openai.BadRequestError, match="not an embeddings model"):
            client.embeddings.create(model="chatty", input="x")
        with pytest.raises(openai.BadRequestError, match="not a chat model"):
            client.chat.completions.create(model="text-embedding-3-small", messages=hello())


def test_conversation_and_end_user_are_recorded(world, live):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        a = post(live, world.chat_key, {"model": "m", "messages": hello(), "user": "u-42"},
                 headers={"x-tollgate-conversation": "conv-1"})
        b = post(live, world.chat_key, {"model": "m", "messages": hello(), "metadata": {"conversation_id": "conv-2"}})
        assert b.status_code == 200
        assert fake.requests_to("/v1/chat/completions")[-1].body["metadata"] == {"conversation_id": "conv-2"}
    row_a, row_b = wait_usage(a.headers["x-request-id"]), wait_usage(b.headers["x-request-id"])
    assert (row_a.conversation_id, row_a.end_user) == ("conv-1", "u-42")
    assert row_b.conversation_id == "conv-2"
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 2
