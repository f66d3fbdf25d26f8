"""The Anthropic Messages door (POST /v1/messages, /v1/messages/count_tokens) driven by the
real ``anthropic`` SDK: relayed to an Anthropic upstream, translated for OpenAI-compatible,
Ollama and mock ones, streams and tools both ways, errors in Anthropic's shape, budgets, the
ledger row (api = messages, exact cost) and a fallback that crosses protocols."""

import json
import logging
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import anthropic
import httpx
import pytest

from billing.models import Budget, UsageDaily
from gateway import messages as messages_door
from providers.adapters.messages_door import count_tokens_estimate
from providers.adapters.usage import estimate_tokens
from providers.models import ProviderModel
from providers.services import alias_create, provider_get_or_create, provider_model_set_enabled
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tenants.services import tenant_update
from tests.fakes import FakeAnthropic, FakeOllama, FakeOpenAI, FakeOpenRouter
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

CENT = Decimal("0.000000000001")
HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER = {"name": "get_weather", "description": "Current weather",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(live, key: str, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.url, api_key=key, max_retries=0, **kwargs)


def post(live, path: str = "/v1/messages", *, key: str | None, body=None, content: bytes | None = None,
         headers: dict | None = None) -> httpx.Response:
    sent = {"content-type": "application/json", **({"x-api-key": key} if key else {}), **(headers or {})}
    return httpx.post(f"{live.url}{path}", headers=sent, content=content if content is not None else json.dumps(body),
                      timeout=20)


def assert_anthropic_error(response: httpx.Response, status: int, error_type: str, words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type, body
    assert words in body["error"]["message"], body
    return body


# --- relayed to Anthropic ------------------------------------------------------------------


def test_create_is_relayed_to_anthropic_as_it_came_with_exact_cost(world, live):
    usage = {"prompt_tokens": 300, "completion_tokens": 40, "cached_tokens": 100, "cache_creation_tokens": 60,
             "cache_creation_1h_tokens": 20}
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-test-1", usage=usage, reply="Bonjour") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test-1")
        raw = client(live, world.chat_key).messages.with_raw_response.create(
            model="up:claude-sonnet-4-5", max_tokens=64, system=[{"type": "text", "text": "Be brief.",
                                                                   "cache_control": {"type": "ephemeral"}}],
            messages=HELLO, metadata={"user_id": "user-7"},
            extra_headers={"anthropic-beta": "prompt-caching-2024-07-31,extended-cache-ttl-2025-04-11"},
            extra_body={"context_management": {"edits": []}, "top_k": 5},
        )
        message = raw.parse()
        sent = fake.requests_to("/v1/messages")[-1]
    assert message.content[0].text == "Bonjour" and message.stop_reason == "end_turn"
    assert message.usage.cache_read_input_tokens == 100 and message.usage.input_tokens == 300
    assert raw.headers["x-tollgate-model"] == "up:claude-sonnet-4-5"
    # The body as it came, but the model; the client's anthropic-beta passed on; the provider's key.
    assert sent.body["model"] == "claude-sonnet-4-5"
    assert sent.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent.body["context_management"] == {"edits": []} and sent.body["top_k"] == 5
    assert sent.body["metadata"] == {"user_id": "user-7"}
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31,extended-cache-ttl-2025-04-11"
    assert sent.headers["x-api-key"] == "sk-ant-test-1"
    assert sent.headers["anthropic-version"] == raw.http_request.headers["anthropic-version"]  # the client's

    row = wait_usage(raw.headers["x-request-id"])
    assert (row.api, row.status, row.stream, row.end_user) == ("messages", "ok", False, "user-7")
    assert (row.input_tokens, row.cached_input_tokens, row.cache_write_tokens, row.output_tokens) == (460, 100, 60, 40)
    model = ProviderModel.objects.get(model_id="claude-sonnet-4-5")
    # 300 fresh at $3, 100 cache reads at $0.30, 40 five-minute writes at $3.75, 20 one-hour writes at
    # 2 × $3, 40 out at $15 (per million)
    expected = (300 * model.input_price + 100 * model.cached_input_price + 40 * model.cache_write_price
                + 20 * 2 * model.input_price + 40 * model.output_price) / Decimal(10**6)
    assert row.cost == expected.quantize(CENT) and row.cost > 0


def test_stream_is_relayed_byte_for_byte_and_priced_from_the_stream(world, live):
    usage = {"prompt_tokens": 20, "completion_tokens": 7, "cached_tokens": 4}
    with FakeAnthropic(models=["claude-sonnet-4-5"], usage=usage, reply="One two three four") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test")
        with client(live, world.chat_key).messages.stream(
            model="up:claude-sonnet-4-5", max_tokens=50, messages=HELLO,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream:
            events = [event.type for event in stream]
            final = stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
    assert final.content[0].type == "thinking" and final.content[0].signature
    assert final.content[1].text == "One two three four" and final.stop_reason == "end_turn"
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "thinking" in events and "signature" in events and "text" in events
    row = wait_usage(request_id)
    assert (row.api, row.stream, row.status, row.tokens_estimated) == ("messages", True, "ok", False)
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens) == (24, 4, 7)


def test_tool_use_round_trip_relayed(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"], tool_call={"arguments": {"city": "Paris"}}) as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test")
        sdk = client(live, world.chat_key)
        first = sdk.messages.create(model="up:claude-sonnet-4-5", max_tokens=100, messages=HELLO, tools=[WEATHER])
        call = first.content[0]
        assert (first.stop_reason, call.type, call.name, call.input) == ("tool_use", "tool_use", "get_weather",
                                                                         {"city": "Paris"})
        with sdk.messages.stream(model="up:claude-sonnet-4-5", max_tokens=100, messages=HELLO,
                                 tools=[WEATHER]) as stream:
            streamed = stream.get_final_message()
        assert streamed.content[0].input == {"city": "Paris"} and streamed.stop_reason == "tool_use"
        fake.tool_call = None
        answer = sdk.messages.create(model="up:claude-sonnet-4-5", max_tokens=100, tools=[WEATHER], messages=[
            *HELLO, {"role": "assistant", "content": [call.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}]}])
        assert answer.content[0].type == "text"
        sent = fake.requests_to("/v1/messages")[-1].body
    assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}


def test_anthropics_rate_limit_and_id_headers_come_back_streamed_or_not(world, live):
    limits = {"anthropic-ratelimit-requests-remaining": "49",
              "anthropic-ratelimit-tokens-reset": "2026-12-06T01:40:00Z", "retry-after": "7",
              "x-upstream-secret": "internal", "set-cookie": "session=abc"}
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-test-1", extra_headers=limits) as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test-1")
        sdk = client(live, world.chat_key)
        raw = sdk.messages.with_raw_response.create(model="up:claude-sonnet-4-5", max_tokens=20, messages=HELLO)
        assert raw.parse().content[0].text
        with sdk.messages.stream(model="up:claude-sonnet-4-5", max_tokens=20, messages=HELLO) as stream:
            assert "".join(stream.text_stream)
            streamed = stream.response.headers
    for headers in (raw.headers, streamed):
        assert headers["anthropic-ratelimit-requests-remaining"] == "49"
        assert headers["anthropic-ratelimit-tokens-reset"] == "2026-12-06T01:40:00Z"
        assert headers["retry-after"] == "7" and headers["request-id"].startswith("req_")
        assert headers["request-id"] != headers["x-request-id"]  # the upstream's id, beside ours
        assert "x-upstream-secret" not in headers and "set-cookie" not in headers and "sk-ant" not in str(headers)
    assert raw.request_id == raw.headers["request-id"]  # what the SDK reports as the request's id


def test_count_tokens_is_passed_to_anthropic(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"], usage={"prompt_tokens": 42}) as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test")
        raw = client(live, world.chat_key).messages.with_raw_response.count_tokens(
            model="up:claude-sonnet-4-5", messages=HELLO, extra_headers={"anthropic-beta": "token-counting-2024-11-01"})
        sent = fake.requests_to("/v1/messages/count_tokens")[-1]
    assert raw.parse().input_tokens == 42 and "x-tollgate-estimated" not in raw.headers
    assert sent.body["model"] == "claude-sonnet-4-5" and sent.headers["anthropic-beta"] == "token-counting-2024-11-01"


def test_count_tokens_is_estimated_when_anthropic_fails_and_its_client_errors_come_back(world, live):
    body = {"model": "up:claude-sonnet-4-5", "messages": [{"role": "user", "content": "x" * 400}]}
    with FakeAnthropic(models=["claude-sonnet-4-5"], usage={"prompt_tokens": 42}) as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test")
        for kind, opts in (("status", {"status": 503}), ("status", {"status": 500}), ("reset", {})):
            fake.set_fault(kind, path="/v1/messages/count_tokens", times=1, **opts)
            response = post(live, "/v1/messages/count_tokens", key=world.chat_key, body=body)
            assert response.status_code == 200, (kind, opts, response.text)
            assert response.headers["x-tollgate-estimated"] == "true"
            assert response.json()["input_tokens"] == count_tokens_estimate(body) > 42
        fake.set_fault("status", path="/v1/messages/count_tokens", times=1, status=400, message="messages: too many")
        refused = post(live, "/v1/messages/count_tokens", key=world.chat_key, body=body)
        fine = post(live, "/v1/messages/count_tokens", key=world.chat_key, body=body)
    assert_anthropic_error(refused, 400, "invalid_request_error", "messages: too many")
    assert "x-tollgate-estimated" not in refused.headers
    assert fine.json() == {"input_tokens": 42} and "x-tollgate-estimated" not in fine.headers


# --- translated for other providers --------------------------------------------------------


def test_create_is_translated_for_an_openai_compatible_upstream(world, live):
    usage = {"prompt_tokens": 30, "completion_tokens": 9, "cached_tokens": 10}
    with FakeOpenAI(models=["gpt-4o-mini"], usage=usage, reply="Hi from chat") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        raw = client(live, world.chat_key).messages.with_raw_response.create(
            model="up:gpt-4o-mini", max_tokens=77, system="Be brief.", messages=HELLO,
            stop_sequences=["END"], metadata={"user_id": "user-9"}, extra_body={"top_k": 3, "temperature": 0.2})
        message = raw.parse()
        sent = fake.requests_to("/v1/chat/completions")[-1].body
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].text == "Hi from chat" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        20, 10, 9)
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, *HELLO]
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["user"]) == (77, 0.2, ["END"], "user-9")
    assert "top_k" not in sent  # OpenAI refuses it
    row = wait_usage(raw.headers["x-request-id"])
    model = ProviderModel.objects.get(model_id="gpt-4o-mini")
    expected = (20 * model.input_price + 10 * model.cached_input_price + 9 * model.output_price) / Decimal(10**6)
    assert (row.api, row.end_user, row.input_tokens, row.cost) == ("messages", "user-9", 30, expected.quantize(CENT))


def test_thinking_budget_becomes_reasoning_effort_only_where_the_upstream_takes_it(world, live):
    thinking = {"type": "enabled", "budget_tokens": 8000}
    with FakeOpenAI(models=["gpt-4o-mini"], reply="Hi") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        sdk = client(live, world.chat_key)
        sdk.messages.create(model="up:gpt-4o-mini", max_tokens=9000, messages=HELLO, thinking=thinking)
        assert fake.requests_to("/v1/chat/completions")[-1].body["reasoning_effort"] == "medium"
        sdk.messages.create(model="up:gpt-4o-mini", max_tokens=9000, messages=HELLO, thinking={"type": "disabled"})
        assert "reasoning_effort" not in fake.requests_to("/v1/chat/completions")[-1].body
    with FakeOllama(models=["llama3.2:latest"], reply="Hi from ollama") as fake:
        add_provider(world.tenant, fake, name="ollama", provider_type="ollama")
        sdk.messages.create(model="ollama:llama3.2:latest", max_tokens=9000, messages=HELLO, thinking=thinking)
        sent = fake.requests_to("/api/chat")[-1].body
    assert "reasoning_effort" not in sent and "think" not in sent


def test_stream_is_translated_into_anthropic_events_in_order(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], reply="Alpha beta gamma delta",
                    usage={"prompt_tokens": 12, "completion_tokens": 4}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        response = post(live, key=world.chat_key, body={"model": "up:gpt-4o-mini", "max_tokens": 20,
                                                         "messages": HELLO, "stream": True})
        with client(live, world.chat_key).messages.stream(model="up:gpt-4o-mini", max_tokens=20,
                                                          messages=HELLO) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line[len("event: "):] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = json.loads(response.text.split("event: message_start\ndata: ")[1].split("\n")[0])
    sent = json.dumps({"model": "up:gpt-4o-mini", "max_tokens": 20, "messages": HELLO, "stream": True})
    assert start["message"]["usage"]["input_tokens"] == estimate_tokens(len(sent)) > 0  # the admission's estimate
    delta = json.loads(response.text.split("event: message_delta\ndata: ")[1].split("\n")[0])
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 4
    assert text == "Alpha beta gamma delta" and final.usage.output_tokens == 4 and final.usage.input_tokens == 12
    assert fake.requests_to("/v1/chat/completions")[-1].body["stream_options"] == {"include_usage": True}
    row = wait_usage(stream.response.headers["x-request-id"])
    assert (row.api, row.stream, row.input_tokens, row.output_tokens, row.tokens_estimated) == (
        "messages", True, 12, 4, False)


def test_tools_are_translated_both_ways_streamed_or_not(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], tool_call={"arguments": {"city": "Paris"}, "id": "call_1"}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        sdk = client(live, world.chat_key)
        first = sdk.messages.create(model="up:gpt-4o-mini", max_tokens=100, messages=HELLO, tools=[WEATHER],
                                    tool_choice={"type": "tool", "name": "get_weather"})
        sent = fake.requests_to("/v1/chat/completions")[-1].body
        assert sent["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather", "parameters": WEATHER["input_schema"]}}]
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        call = first.content[0]
        assert (first.stop_reason, call.type, call.id, call.name, call.input) == (
            "tool_use", "tool_use", "call_1", "get_weather", {"city": "Paris"})
        with sdk.messages.stream(model="up:gpt-4o-mini", max_tokens=100, messages=HELLO, tools=[WEATHER],
                                 tool_choice={"type": "any"}) as stream:
            events = list(stream)
            streamed = stream.get_final_message()
        assert any(e.type == "input_json" for e in events)
        assert streamed.content[-1].input == {"city": "Paris"} and streamed.stop_reason == "tool_use"
        assert fake.requests_to("/v1/chat/completions")[-1].body["tool_choice"] == "required"
        fake.tool_call = None
        sdk.messages.create(model="up:gpt-4o-mini", max_tokens=100, tools=[WEATHER], messages=[
            *HELLO, {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, call.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"},
                                         {"type": "text", "text": "And tomorrow?"}]}])
        sent = fake.requests_to("/v1/chat/completions")[-1].body
    assert sent["messages"][1] == {"role": "assistant", "content": "Let me look.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent["messages"][2:] == [{"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
                                    {"role": "user", "content": "And tomorrow?"}]


def test_openrouter_ollama_and_mock_upstreams_answer_in_the_messages_shape(world, live):
    catalog = [{"id": "meta-llama/llama-3.1-8b-instruct",
                "pricing": {"prompt": "0.0000001", "completion": "0.0000002"}}]
    with FakeOpenRouter(models=catalog, reply="Hi from openrouter",
                        usage={"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.0000042}) as router:
        add_provider(world.tenant, router, name="openrouter", provider_type="openrouter")
        sdk = client(live, world.chat_key)
        raw = sdk.messages.with_raw_response.create(model="openrouter:meta-llama/llama-3.1-8b-instruct",
                                                    max_tokens=30, messages=HELLO, extra_body={"top_k": 7})
        assert raw.parse().content[0].text == "Hi from openrouter"
        assert router.requests_to("/chat/completions")[-1].body["top_k"] == 7  # OpenRouter takes it
    row = wait_usage(raw.headers["x-request-id"])
    assert (row.api, row.provider_cost, row.cost) == ("messages", Decimal("0.0000042"), Decimal("0.000002000000"))
    with FakeOllama(models=["llama3.2:latest"], reply="Hi from ollama") as fake:
        add_provider(world.tenant, fake, name="ollama", provider_type="ollama")
        assert sdk.messages.create(model="ollama:llama3.2:latest", max_tokens=30,
                                   messages=HELLO).content[0].text == "Hi from ollama"
        with sdk.messages.stream(model="ollama:llama3.2:latest", max_tokens=30, messages=HELLO) as stream:
            assert "".join(stream.text_stream) == "Hi from ollama"
    provider, _ = provider_get_or_create(name="mock", provider_type="mock")
    provider_sync(provider=provider)
    for model in provider.models.all():
        provider_model_set_enabled(provider_model=model, tenant=world.tenant, enabled=True, actor=SYSTEM)
    assert "Say hello" in sdk.messages.create(model="mock:mock-fast", max_tokens=30, messages=HELLO).content[0].text
    with sdk.messages.stream(model="mock:mock-fast", max_tokens=30, messages=HELLO) as stream:
        assert "Say hello" in "".join(stream.text_stream)
        assert stream.get_final_message().usage.output_tokens > 0


def test_count_tokens_is_estimated_and_marked_for_other_upstreams(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        raw = client(live, world.chat_key).messages.with_raw_response.count_tokens(
            model="up:gpt-4o-mini", messages=[{"role": "user", "content": "x" * 400}])
        assert fake.requests == [] or all(r.path != "/v1/chat/completions" for r in fake.requests)
    assert raw.headers["x-tollgate-estimated"] == "true"
    assert 100 <= raw.parse().input_tokens <= 120  # about four characters a token


# --- across protocols ----------------------------------------------------------------------


def test_a_fallback_crosses_protocols_streamed_or_not(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"], reply="from claude") as claude, \
            FakeOpenAI(models=["gpt-4o-mini"], reply="from gpt") as gpt:
        add_provider(world.tenant, claude, name="claude", provider_type="anthropic", api_key="sk-ant-test")
        add_provider(world.tenant, gpt, name="gpt", provider_type="openai")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={
            "name": "coder", "retries": 0,
            "targets": [{"model": "claude:claude-sonnet-4-5"}, {"model": "gpt:gpt-4o-mini"}]})
        sdk = client(live, world.chat_key)
        assert sdk.messages.create(model="coder", max_tokens=20, messages=HELLO).content[0].text == "from claude"
        claude.set_fault("status", status=529)
        raw = sdk.messages.with_raw_response.create(model="coder", max_tokens=20, messages=HELLO)
        assert raw.parse().content[0].text == "from gpt" and raw.headers["x-tollgate-model"] == "gpt:gpt-4o-mini"
        claude.set_fault("status", status=500)
        with sdk.messages.stream(model="coder", max_tokens=20, messages=HELLO) as stream:
            assert "".join(stream.text_stream) == "from gpt"
            streamed_id = stream.response.headers["x-request-id"]
    row = wait_usage(raw.headers["x-request-id"])
    assert (row.api, row.attempts, row.model_requested, row.status) == ("messages", 2, "coder", "ok")
    assert wait_usage(streamed_id).attempts == 2


@pytest.mark.parametrize("fault", ["stream_error", "reset"])
def test_a_stream_cut_after_it_started_ends_with_an_error_event_and_a_partial_row(world, live, fault):
    with FakeAnthropic(models=["claude-sonnet-4-5"], reply="one two three four five six") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test", max_retries=0)
        fake.set_fault(fault, after_chunks=3)
        response = post(live, key=world.chat_key, body={"model": "up:claude-sonnet-4-5", "max_tokens": 20,
                                                         "messages": HELLO, "stream": True})
    assert response.status_code == 200
    assert "event: error" in response.text and "message_stop" not in response.text
    row = wait_usage(response.headers["x-request-id"])
    assert (row.api, row.status) == ("messages", "partial")


def test_a_translated_stream_cut_after_it_started_ends_with_an_error_event(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], reply="one two three four five six") as fake:
        add_provider(world.tenant, fake, provider_type="openai", max_retries=0)
        fake.set_fault("reset", after_chunks=2)
        response = post(live, key=world.chat_key, body={"model": "up:gpt-4o-mini", "max_tokens": 20,
                                                         "messages": HELLO, "stream": True})
    assert response.status_code == 200
    names = [line[len("event: "):] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "error" and "message_stop" not in names
    row = wait_usage(response.headers["x-request-id"])
    assert (row.api, row.status, row.tokens_estimated) == ("messages", "partial", True)


# --- errors, in Anthropic's shape ----------------------------------------------------------


def test_auth_errors_are_in_the_anthropic_shape(world, live):
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(live, "tg_" + "x" * 40).messages.create(model="m", max_tokens=5, messages=HELLO)
    assert bad_key.value.status_code == 401 and bad_key.value.body["error"]["type"] == "authentication_error"
    missing = post(live, key=None, body={"model": "m", "max_tokens": 5, "messages": HELLO})
    assert_anthropic_error(missing, 401, "authentication_error", "x-api-key")
    bearer = httpx.post(f"{live.url}/v1/messages", headers={"authorization": f"Bearer {world.chat_key}"},
                        json={"model": "nope", "max_tokens": 5, "messages": HELLO})
    assert_anthropic_error(bearer, 404, "not_found_error", "nope")  # the Bearer key was accepted


def test_request_errors_say_what_to_fix(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        key = world.chat_key
        with pytest.raises(anthropic.NotFoundError) as unknown:
            client(live, key).messages.create(model="gpt-5x", max_tokens=5, messages=HELLO)
        assert unknown.value.body["error"]["type"] == "not_found_error" and "gpt-5x" in unknown.value.message
        assert_anthropic_error(post(live, key=key, content=b'{"model": "up:gpt-4o-mini",'), 400,
                               "invalid_request_error", "not valid JSON")
        assert_anthropic_error(post(live, key=key, body={"model": "up:gpt-4o-mini", "max_tokens": "10",
                                                         "messages": HELLO}), 400, "invalid_request_error",
                               "'max_tokens' is required: a positive integer")
        assert_anthropic_error(post(live, key=key, body={"model": "up:gpt-4o-mini", "max_tokens": 10,
                                                         "messages": [{"role": "tool", "content": "x"}]}),
                               400, "invalid_request_error", "role 'tool'")
        assert_anthropic_error(post(live, key=key, body={"model": "up:gpt-4o-mini", "max_tokens": 10,
                                                         "messages": [{"role": "user", "content": 5}]}),
                               400, "invalid_request_error", "messages.0.content")
        assert_anthropic_error(httpx.get(f"{live.url}/v1/messages"), 405, "invalid_request_error", "POST")
        assert fake.requests_to("/v1/chat/completions") == []


def test_an_exhausted_budget_refuses_before_any_upstream_call(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"]) as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test")
        Budget.objects.create(tenant=world.tenant, name="Monthly", amount=Decimal("1"), action="block")
        day = datetime.now(ZoneInfo(world.tenant.timezone)).date()
        UsageDaily.objects.create(tenant=world.tenant, day=day, api_key_id=0, requests=1, cost=Decimal("0.99"))
        sdk = client(live, world.chat_key)
        # The worst case is max_tokens at the output price: 100 tokens fit what is left, 100,000 do not.
        assert sdk.messages.create(model="up:claude-sonnet-4-5", max_tokens=100, messages=HELLO).content
        response = post(live, key=world.chat_key, body={"model": "up:claude-sonnet-4-5", "max_tokens": 100_000,
                                                         "messages": HELLO})
        assert len(fake.requests_to("/v1/messages")) == 1
    body = assert_anthropic_error(response, 429, "billing_error", "Budget 'Monthly' is exhausted")
    assert "resets at" in body["error"]["message"] and response.headers["x-should-retry"] == "false"
    row = wait_usage(response.headers["x-request-id"])
    assert (row.api, row.status, row.error_type) == ("messages", "rejected", "budget_exceeded")


def test_rate_limits_and_suspension_answer_in_the_anthropic_shape(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        tenant_update(tenant=world.tenant, changes={"requests_per_minute": 1}, actor=SYSTEM)
        body = {"model": "up:gpt-4o-mini", "max_tokens": 5, "messages": HELLO}
        assert post(live, key=world.chat_key, body=body).status_code == 200
        refused = post(live, key=world.chat_key, body=body)
        assert_anthropic_error(refused, 429, "rate_limit_error", "1 requests per minute for this tenant")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert wait_usage(refused.headers["x-request-id"]).api == "messages"
        world.tenant.is_active = False  # suspended (by support, in the admin)
        world.tenant.save()
        assert_anthropic_error(post(live, key=world.chat_key, body=body), 403, "permission_error", "suspended")
        # another tenant is not affected, and cannot use this tenant's models
        assert_anthropic_error(post(live, key=world.other_chat_key, body=body), 404, "not_found_error",
                               "up:gpt-4o-mini")


def test_the_response_cache_serves_messages_and_keeps_them_apart_from_chat(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], reply="cached words") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        tenant_update(tenant=world.tenant, changes={"cache_enabled": True}, actor=SYSTEM)
        body = {"model": "up:gpt-4o-mini", "max_tokens": 5, "messages": HELLO, "temperature": 0}
        first, second = (post(live, key=world.chat_key, body=body) for _ in range(2))
        assert (first.headers["x-tollgate-cache"], second.headers["x-tollgate-cache"]) == ("miss", "hit")
        assert first.json() == second.json() and second.json()["content"][0]["text"] == "cached words"
        # The same JSON is a valid chat request too: it must not get the Messages answer.
        chat = httpx.post(f"{live.url}/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {world.chat_key}"})
        assert chat.headers["x-tollgate-cache"] == "miss" and chat.json()["object"] == "chat.completion"
        assert len(fake.requests_to("/v1/chat/completions")) == 2
    row = wait_usage(second.headers["x-request-id"])
    assert (row.api, row.status, row.cost) == ("messages", "cache_hit", 0)


def test_models_list_in_the_anthropic_shape_for_anthropic_clients(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        alias_create(tenant=world.tenant, actor=SYSTEM,
                     data={"name": "coder", "targets": [{"model": "up:gpt-4o-mini"}]})
        page = client(live, world.chat_key).models.list()
        assert [m.id for m in page.data] == ["coder", "up:gpt-4o-mini"] and page.has_more is False
        openai_shape = httpx.get(f"{live.url}/v1/models", headers={"authorization": f"Bearer {world.chat_key}"})
        assert openai_shape.json()["object"] == "list"  # without anthropic-version: OpenAI's shape
    with pytest.raises(anthropic.AuthenticationError):
        client(live, "tg_" + "y" * 40).models.list()


@pytest.mark.parametrize("fake_class, provider_type", [(FakeOpenAI, "openai"), (FakeAnthropic, "anthropic")])
def test_a_silent_stream_gets_ping_events_between_whole_events(world, live, monkeypatch, fake_class, provider_type):
    monkeypatch.setattr(messages_door, "PING_SECONDS", 0.05)
    model = "gpt-4o-mini" if fake_class is FakeOpenAI else "claude-sonnet-4-5"
    with fake_class(models=[model], reply="one two three four", api_key="sk-k") as fake:
        add_provider(world.tenant, fake, provider_type=provider_type, api_key="sk-k")
        fake.set_fault("slow", chunk_delay=0.3)
        response = post(live, key=world.chat_key, body={"model": f"up:{model}", "max_tokens": 20,
                                                         "messages": HELLO, "stream": True})
        with client(live, world.chat_key).messages.stream(model=f"up:{model}", max_tokens=20,
                                                          messages=HELLO) as stream:
            assert "".join(stream.text_stream) == "one two three four"  # the SDK reads through the pings
    events = response.text.split("\n\n")
    pings = [e for e in events if e.startswith("event: ping")]
    assert len(pings) >= 3 and all(e == 'event: ping\ndata: {"type":"ping"}' for e in pings)
    assert all(e.startswith("event: ") for e in events if e)  # every one a whole event
    assert [e.split("\n")[0] for e in events if e][-1] == "event: message_stop"


def test_an_upstream_client_error_comes_back_with_its_words_and_one_log_line(world, live, caplog):
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-k") as claude, \
            FakeOpenAI(models=["gpt-4o-mini"]) as gpt:
        add_provider(world.tenant, claude, name="claude", provider_type="anthropic", api_key="sk-k")
        add_provider(world.tenant, gpt, name="gpt", provider_type="openai")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={
            "name": "coder", "targets": [{"model": "claude:claude-sonnet-4-5"}, {"model": "gpt:gpt-4o-mini"}]})
        claude.set_fault("status", status=400, message="prompt is too long: 250000 tokens > 200000 maximum")
        with caplog.at_level(logging.INFO, logger="tollgate.requests"):
            response = post(live, key=world.chat_key, body={"model": "coder", "max_tokens": 5, "messages": HELLO})
        assert gpt.requests_to("/v1/chat/completions") == []  # the same request would fail there too
    # Claude Code compacts its context when it reads these words.
    assert_anthropic_error(response, 400, "invalid_request_error", "prompt is too long: 250000 tokens")
    request_id = response.headers["x-request-id"]
    records = [r for r in caplog.records if getattr(r, "request_id", "") == request_id]
    assert len(records) == 1 and (records[0].api, records[0].status) == ("messages", "error")


def test_a_body_over_the_limit_is_request_too_large_in_the_anthropic_shape(world, live, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 100_000}]}
    response = post(live, key=world.chat_key, body=body)
    assert_anthropic_error(response, 413, "request_too_large", "65536")


CLAUDE_ON_OPENROUTER = [{"id": "anthropic/claude-sonnet-4.5", "pricing": {
    "prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003",
    "input_cache_write": "0.00000375"}}]
# prompt_tokens (reads and writes included), reads, writes, output
ROUTER_USAGE = {"prompt_tokens": 1500, "cached_tokens": 1000, "cache_creation_tokens": 300, "completion_tokens": 40}


def cost_of(uncached: int, read: int, written: int, output: int, *, write_price: Decimal = Decimal("3.75")) -> Decimal:
    total = uncached * 3 + read * Decimal("0.3") + written * write_price + output * 15
    return (total / Decimal(10**6)).quantize(CENT)


def test_cache_control_markers_reach_openrouter_on_content_parts_and_the_cost_is_exact(world, live):
    mark = {"type": "ephemeral"}
    with FakeOpenRouter(models=CLAUDE_ON_OPENROUTER, reply="Cached answer", usage=ROUTER_USAGE) as router:
        add_provider(world.tenant, router, name="openrouter", provider_type="openrouter")
        sdk = client(live, world.chat_key)
        model = "openrouter:anthropic/claude-sonnet-4.5"
        messages = [
            {"role": "user", "content": [{"type": "text", "text": "A long document", "cache_control": mark},
                                         {"type": "text", "text": "Summarize it"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C",
                                          "cache_control": mark}]}]
        raw = sdk.messages.with_raw_response.create(
            model=model, max_tokens=50, messages=messages, tools=[{**WEATHER, "cache_control": mark}],
            system=[{"type": "text", "text": "You are terse.", "cache_control": mark}])
        message = raw.parse()
        sent = router.requests_to("/chat/completions")[-1].body
        assert message.content[0].text == "Cached answer"
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
                message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (200, 1000, 300, 40)
        assert sent["messages"][0] == {"role": "system", "content": [
            {"type": "text", "text": "You are terse.", "cache_control": mark}]}
        assert sent["messages"][1]["content"][0] == {"type": "text", "text": "A long document", "cache_control": mark}
        assert sent["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": [
            {"type": "text", "text": "18 C", "cache_control": mark}]}
        assert sent["tools"][0]["cache_control"] == mark
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.cached_input_tokens, row.cache_write_tokens) == (1000, 300)
        assert row.cost == cost_of(200, 1000, 300, 40)

        with sdk.messages.stream(model=model, max_tokens=50, messages=messages[:1]) as stream:
            assert "".join(stream.text_stream) == "Cached answer"
            final = stream.get_final_message()
        assert final.usage.cache_read_input_tokens == 1000

        hour = {"type": "ephemeral", "ttl": "1h"}
        raw = sdk.messages.with_raw_response.create(model=model, max_tokens=50, messages=[{"role": "user", "content": [
            {"type": "text", "text": "A long document", "cache_control": hour}]}])
        assert raw.parse().usage.cache_creation.ephemeral_1h_input_tokens == 300
        assert wait_usage(raw.headers["x-request-id"]).cost == cost_of(200, 1000, 300, 40, write_price=Decimal(6))

        raw = sdk.messages.with_raw_response.create(model=model, max_tokens=50, messages=HELLO)  # nothing marked
        assert raw.parse().usage.cache_read_input_tokens == 0
        assert wait_usage(raw.headers["x-request-id"]).cost == cost_of(1500, 0, 0, 40)
