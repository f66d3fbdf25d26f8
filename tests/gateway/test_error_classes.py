"""A prompt too long for the model (context_window) or refused by the provider's safety system
(content_policy) goes straight back to the client with the upstream's status, tried once (no
retry, no fallback to another target of the route): an OpenAI error with code
``context_length_exceeded`` / ``content_policy_violation`` at /v1/chat/completions and
/v1/responses, an Anthropic ``invalid_request_error`` at the Messages door; the ledger row says
which."""

import httpx
import pytest

from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]


def post(live, key, path, body, *, anthropic=False):
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"} if anthropic else \
        {"authorization": f"Bearer {key}"}
    return httpx.post(f"{live.url}{path}", json=body, headers=headers, timeout=20)


def chat(model, stream=False):
    return {"model": model, "messages": HELLO, "stream": stream}


def assert_openai_error(resp, status, code, words):
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    assert words in error["message"]
    row = wait_usage(resp.headers["x-request-id"])
    assert (row.status, row.error_type, row.attempts) == ("error", code, 1)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_door_context_window_is_a_400_context_length_exceeded_tried_once(world, live, stream):
    with FakeOpenAI(models=["gpt-4o"]) as fake:
        add_provider(world.tenant, fake, name="oa", provider_type="openai", api_key="sk-up", max_retries=3)
        fake.set_fault("context_window")
        resp = post(live, world.chat_key, "/v1/chat/completions", chat("oa:gpt-4o", stream))
        assert_openai_error(resp, 400, "context_length_exceeded", "maximum context length is 128000 tokens")
        assert len(fake.requests_to("/chat/completions")) == 1


def test_chat_door_content_policy_is_a_400_content_policy_violation(world, live):
    with FakeOpenAI(models=["gpt-4o"]) as fake:
        add_provider(world.tenant, fake, name="oa", provider_type="openai", api_key="sk-up", max_retries=3)
        fake.set_fault("content_policy")
        resp = post(live, world.chat_key, "/v1/chat/completions", chat("oa:gpt-4o"))
        assert_openai_error(resp, 400, "content_policy_violation", "safety system")
        assert len(fake.requests_to("/chat/completions")) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_gemini_blocked_prompt_in_a_200_answer_is_a_400_content_policy_violation(world, live, stream):
    with FakeGemini(models=["gemini-2.5-flash"]) as fake:
        add_provider(world.tenant, fake, name="gem", provider_type="gemini", api_key="AIzaFake0123", max_retries=2)
        fake.set_fault("content_policy")
        resp = post(live, world.chat_key, "/v1/chat/completions", chat("gem:gemini-2.5-flash", stream))
        assert_openai_error(resp, 400, "content_policy_violation", "prompt was blocked (SAFETY)")
        assert len(fake.requests) == 1 + 1  # the catalog sync, then one generateContent


def test_messages_door_answers_anthropic_invalid_request_error(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5-20250929"]) as fake:
        add_provider(world.tenant, fake, name="claude", provider_type="anthropic", api_key="sk-ant-up",
                     max_retries=3)
        fake.set_fault("context_window")
        resp = post(live, world.chat_key, "/v1/messages", {
            "model": "claude:claude-sonnet-4-5-20250929", "max_tokens": 100, "messages": HELLO}, anthropic=True)
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "prompt is too long: 208656 tokens > 200000 maximum" in body["error"]["message"]
        assert len(fake.requests_to("/v1/messages")) == 1
        row = wait_usage(resp.headers["x-request-id"])
        assert (row.status, row.error_type) == ("error", "context_length_exceeded")


def test_messages_door_translated_to_gemini_refusal(world, live):
    with FakeGemini(models=["gemini-2.5-flash"]) as fake:
        add_provider(world.tenant, fake, name="gem", provider_type="gemini", api_key="AIzaFake0123")
        fake.set_fault("content_policy", variant="finish")
        resp = post(live, world.chat_key, "/v1/messages", {
            "model": "gem:gemini-2.5-flash", "max_tokens": 100, "messages": HELLO, "stream": True}, anthropic=True)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["type"] == "invalid_request_error"
        assert "stopped (SAFETY) before any content" in resp.json()["error"]["message"]


def test_responses_door_relayed_and_translated(world, live):
    with FakeOpenAI(models=["gpt-4o"]) as oa, FakeGemini(models=["gemini-2.5-flash"]) as gem:
        add_provider(world.tenant, oa, name="oa", provider_type="openai", api_key="sk-up", max_retries=3)
        add_provider(world.tenant, gem, name="gem", provider_type="gemini", api_key="AIzaFake0123")
        oa.set_fault("context_window")
        resp = post(live, world.chat_key, "/v1/responses", {"model": "oa:gpt-4o", "input": "Say hello"})
        assert_openai_error(resp, 400, "context_length_exceeded", "maximum context length")
        assert len(oa.requests_to("/responses")) == 1
        gem.set_fault("context_window")
        resp = post(live, world.chat_key, "/v1/responses",
                    {"model": "gem:gemini-2.5-flash", "input": "Say hello", "stream": True})
        assert_openai_error(resp, 400, "context_length_exceeded", "exceeds the maximum number of tokens allowed")
