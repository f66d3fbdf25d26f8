"""POST /v1/responses with the official openai SDK as the client: relayed to an OpenAI fake,
translated to an Anthropic fake (and back), tools round trips, streams, errors, budgets,
fallbacks across the two, and the ledger row with the door and the exact cost."""

import json
import socket
import time
from decimal import Decimal

import httpx
import openai
import pytest

from billing.models import Budget
from providers.models import ProviderModel
from providers.services import alias_create, provider_get_or_create, provider_model_set_enabled
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tenants.services import tenant_update
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.gateway.test_billing_path import spend_today
from tests.utils.live import add_provider, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 200, "reasoning_tokens": 100}
ANTHROPIC_USAGE = {"prompt_tokens": 300, "completion_tokens": 40, "cached_tokens": 100, "cache_creation_tokens": 50}
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
MICRO = Decimal("0.000000000001")


def openai_cost(row) -> Decimal:
    """What an OpenAI-priced row must cost: uncached input, cached input, output (reasoning within)."""
    model = ProviderModel.objects.get(pk=row.provider_model_id)
    cached = row.cached_input_tokens
    return ((row.input_tokens - cached) * model.input_price + cached * model.cached_input_price
            + row.output_tokens * model.output_price) / Decimal(10**6)


def anthropic_cost() -> Decimal:
    # genai-prices for claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 cache write, $15 out (per M)
    return (300 * Decimal(3) + 100 * Decimal("0.3") + 50 * Decimal("3.75") + 40 * Decimal(15)) / Decimal(10**6)


def post(live, key, body, **headers):
    return httpx.post(f"{live.url}/v1/responses", timeout=20,
                      headers={"Authorization": f"Bearer {key}", **headers},
                      **({"content": body} if isinstance(body, bytes) else {"json": body}))


# --- relayed to OpenAI -----------------------------------------------------------------------

def test_create_relayed_to_openai_with_exact_cost(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE, reply="Hello there!") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        raw = sdk(live, world.chat_key).responses.with_raw_response.create(
            model="up:gpt-4o-mini", input="Say hello", instructions="Be terse.", max_output_tokens=600,
            user="end-user-7", metadata={"conversation_id": "conv-1"}, store=False,
            include=["reasoning.encrypted_content"])
        resp = raw.parse()
        assert resp.output_text == "Hello there!" and resp.status == "completed"
        assert resp.usage.input_tokens == 1000 and resp.usage.input_tokens_details.cached_tokens == 200
        assert raw.headers["x-tollgate-model"] == "up:gpt-4o-mini"
        sent = fake.requests_to("/v1/responses")[-1].body
        assert sent == {"model": "gpt-4o-mini", "input": "Say hello", "instructions": "Be terse.",
                        "max_output_tokens": 600, "user": "end-user-7", "metadata": {"conversation_id": "conv-1"},
                        "store": False, "include": ["reasoning.encrypted_content"]}
        assert fake.requests_to("/v1/chat/completions") == []
    row = wait_usage(raw.headers["x-request-id"])
    assert (row.api, row.status, row.stream, row.attempts) == ("responses", "ok", False, 1)
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens) == (1000, 200, 500, 100)
    assert row.cost == openai_cost(row).quantize(MICRO) and row.cost > 0
    assert (row.end_user, row.conversation_id, row.model_requested) == ("end-user-7", "conv-1", "up:gpt-4o-mini")


def test_stream_relayed_to_openai_byte_for_byte(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE, reply="one two three four five six") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        with sdk(live, world.chat_key).responses.stream(model="up:gpt-4o-mini", input="count") as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
            request_id = stream._response.headers["x-request-id"]
        assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
        assert final.output_text == "one two three four five six"
        assert fake.requests_to("/v1/responses")[-1].body["stream"] is True
    row = wait_usage(request_id)
    assert (row.api, row.status, row.stream, row.tokens_estimated) == ("responses", "ok", True, False)
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens) == (1000, 200, 500)
    assert row.cost == openai_cost(row).quantize(MICRO) and row.ttft_ms is not None


def test_previous_response_id_is_relayed_to_openai(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        resp = sdk(live, world.chat_key).responses.create(model="up:gpt-4o-mini", input="and then?",
                                                         previous_response_id="resp_earlier")
        assert resp.status == "completed"
        assert fake.requests_to("/v1/responses")[-1].body["previous_response_id"] == "resp_earlier"


def test_function_tool_round_trip_relayed(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], tool_call={"arguments": {"city": "Paris"}}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        client = sdk(live, world.chat_key)
        first = client.responses.create(model="up:gpt-4o-mini", input="Weather in Paris?", tools=[WEATHER])
        call = first.output[0]
        assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})
        fake.tool_call = None
        second = client.responses.create(model="up:gpt-4o-mini", tools=[WEATHER], input=[
            {"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "{\"temp_c\": 18}"}])
        assert second.output_text == fake.reply
        sent = fake.requests_to("/v1/responses")[-1].body["input"]
        assert sent[1]["call_id"] == call.call_id and sent[2] == {
            "type": "function_call_output", "call_id": call.call_id, "output": "{\"temp_c\": 18}"}


# --- translated through Anthropic ------------------------------------------------------------

def test_create_and_stream_translated_to_anthropic(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1", usage=ANTHROPIC_USAGE,
                       reply="Bonjour tout le monde") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-1")
        client = sdk(live, world.chat_key)
        raw = client.responses.with_raw_response.create(
            model="up:claude-sonnet-4-5", instructions="Be brief.", max_output_tokens=256, input=[
                {"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}])
        resp = raw.parse()
        assert resp.output_text == "Bonjour tout le monde" and resp.id.startswith("resp_")
        assert resp.usage.input_tokens == 450 and resp.usage.input_tokens_details.cached_tokens == 100
        sent = fake.requests_to("/v1/messages")[-1].body
        assert sent["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
        assert sent["max_tokens"] == 256 and sent["messages"] == [{"role": "user", "content": "Say hello"}] or \
            sent["messages"][0]["role"] == "user"
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.api, row.status, row.cached_input_tokens, row.cache_write_tokens, row.output_tokens) == (
            "responses", "ok", 100, 50, 40)
        assert row.cost == anthropic_cost().quantize(MICRO)

        with client.responses.stream(model="up:claude-sonnet-4-5", input="Say hello") as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
            request_id = stream._response.headers["x-request-id"]
        assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                             "response.content_part.added"]
        assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                              "response.output_item.done", "response.completed"]
        assert final.output_text == "Bonjour tout le monde" and final.usage.output_tokens == 40
    row = wait_usage(request_id)
    assert (row.api, row.status, row.stream, row.tokens_estimated) == ("responses", "ok", True, False)
    assert row.cost == anthropic_cost().quantize(MICRO)


def test_function_tool_round_trip_translated(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1",
                       tool_call={"arguments": {"city": "Paris"}, "id": "toolu_01"}) as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-1")
        client = sdk(live, world.chat_key)
        first = client.responses.create(model="up:claude-sonnet-4-5", input="Weather in Paris?", tools=[WEATHER])
        [call] = first.output
        assert (call.type, call.call_id, call.name, json.loads(call.arguments)) == (
            "function_call", "toolu_01", "get_weather", {"city": "Paris"})
        sent_tools = fake.requests_to("/v1/messages")[-1].body["tools"]
        assert sent_tools[0]["name"] == "get_weather" and sent_tools[0]["input_schema"] == WEATHER["parameters"]
        with client.responses.stream(model="up:claude-sonnet-4-5", input="Weather in Paris?", tools=[WEATHER]) as s:
            kinds = [event.type for event in s]
            streamed = s.get_final_response()
        assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
        assert json.loads(streamed.output[0].arguments) == {"city": "Paris"}
        fake.tool_call = None
        second = client.responses.create(model="up:claude-sonnet-4-5", tools=[WEATHER], input=[
            {"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": "toolu_01", "output": "18 C"}])
        assert second.output_text == fake.reply
        messages = fake.requests_to("/v1/messages")[-1].body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"][-1] == {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                                              "input": {"city": "Paris"}}
        assert messages[2]["content"][0]["type"] == "tool_result"
        assert messages[2]["content"][0]["tool_use_id"] == "toolu_01"


def test_previous_response_id_off_openai_is_a_clear_400(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-1")
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(live, world.chat_key).responses.create(model="up:claude-sonnet-4-5", input="and then?",
                                                       previous_response_id="resp_earlier")
        error = caught.value.body
        assert error["param"] == "previous_response_id"
        assert "send the whole conversation in 'input'" in error["message"]
        assert fake.requests_to("/v1/messages") == []


def test_fallback_crosses_from_relay_to_translation(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as oa, FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1",
                                                                reply="from claude") as an:
        add_provider(world.tenant, oa, name="oa", provider_type="openai", max_retries=0)
        add_provider(world.tenant, an, name="an", provider_type="anthropic", api_key="sk-ant-1")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "smart", "targets": [
            {"model": "oa:gpt-4o-mini"}, {"model": "an:claude-sonnet-4-5"}]})
        oa.set_fault("status", status=500)
        raw = sdk(live, world.chat_key).responses.with_raw_response.create(model="smart", input="hi")
        assert raw.parse().output_text == "from claude"
        assert raw.headers["x-tollgate-model"] == "an:claude-sonnet-4-5"
        tries = len(oa.requests_to("/v1/responses"))  # the relay, retried as the alias says
        assert tries >= 1 and an.requests_to("/v1/messages")
    row = wait_usage(raw.headers["x-request-id"])
    assert (row.api, row.status, row.attempts, row.model_requested) == ("responses", "ok", tries + 1, "smart")


# --- errors and budgets ----------------------------------------------------------------------

def test_errors_in_the_openai_shape(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        with pytest.raises(openai.AuthenticationError):
            sdk(live, "tg-not-a-key").responses.create(model="up:gpt-4o-mini", input="hi")
        with pytest.raises(openai.NotFoundError) as caught:
            sdk(live, world.chat_key).responses.create(model="up:gpt-9", input="hi")
        assert caught.value.body["code"] == "model_not_found"
        malformed = post(live, world.chat_key, b'{"model": "up:gpt-4o-mini", "input": ')
        assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
        for body, param in (({"input": 3}, "input"), ({"input": "x", "stream": "yes"}, "stream"),
                            ({"input": "x", "max_output_tokens": "many"}, "max_output_tokens"),
                            ({"input": "x", "temperature": "hot"}, "temperature"), ({}, "input")):
            response = post(live, world.chat_key, {"model": "up:gpt-4o-mini", **body})
            assert response.status_code == 400, body
            error = response.json()["error"]
            assert error["param"] == param and error["type"] == "invalid_request_error"
        fake.set_fault("status", status=400, message="Unsupported parameter: 'foo'.")
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(live, world.chat_key).responses.create(model="up:gpt-4o-mini", input="hi")
        assert "Unsupported parameter" in caught.value.body["message"]
        assert len(fake.requests_to("/v1/responses")) == 1


def test_budget_reserves_the_true_worst_case(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 10}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        Budget.objects.create(tenant=world.tenant, name="Monthly", amount=Decimal("0.001"), action="block")
        spend_today(world.tenant, Decimal("0.0009"))  # $0.0001 left
        client = sdk(live, world.chat_key)
        # 100,000 output tokens at $0.60 / M could cost $0.06: refused before any upstream call
        with pytest.raises(openai.RateLimitError) as caught:
            client.responses.with_raw_response.create(model="up:gpt-4o-mini", input="hi", max_output_tokens=100_000)
        assert caught.value.body["code"] == "budget_exceeded"
        assert "Budget 'Monthly' is exhausted" in caught.value.body["message"]
        assert fake.requests_to("/v1/responses") == []
        assert wait_usage(caught.value.response.headers["x-request-id"]).status == "rejected"
        # 20 output tokens fit
        assert client.responses.create(model="up:gpt-4o-mini", input="hi", max_output_tokens=20).status == "completed"


# --- other provider types and broken streams ---------------------------------------------------

def test_openai_compatible_and_mock_providers_are_translated(world, live):
    with FakeOpenAI(models=["llama-3"], usage={"prompt_tokens": 7, "completion_tokens": 3}, reply="via chat") as fake:
        add_provider(world.tenant, fake, name="vllm", provider_type="openai_compatible")
        client = sdk(live, world.chat_key)
        resp = client.responses.create(model="vllm:llama-3", input="hi", max_output_tokens=32, store=False,
                                       reasoning={"effort": "low"})
        assert resp.output_text == "via chat" and resp.usage.total_tokens == 10
        sent = fake.requests_to("/v1/chat/completions")[-1].body
        assert sent["max_completion_tokens"] == 32 and sent["reasoning_effort"] == "low" and "store" not in sent
        assert fake.requests_to("/v1/responses") == []
        with client.responses.stream(model="vllm:llama-3", input="hi") as stream:
            assert stream.get_final_response().output_text == "via chat"
    provider, _ = provider_get_or_create(name="mock", provider_type="mock")
    provider_sync(provider=provider)
    for model in provider.models.all():
        provider_model_set_enabled(provider_model=model, tenant=world.tenant, enabled=True, actor=SYSTEM)
    assert "Say hello" in client.responses.create(model="mock:mock-fast", input="Say hello").output_text
    with client.responses.stream(model="mock:mock-fast", input="Say hello") as stream:
        assert "Say hello" in stream.get_final_response().output_text


def raw_events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_a_relayed_stream_that_breaks_says_so_and_is_recorded_partial(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        fake.set_fault("stream_error", status=500, after_chunks=3)
        errored = post(live, world.chat_key, {"model": "up:gpt-4o-mini", "input": "hi", "stream": True})
        assert [e["type"] for e in raw_events(errored)][-1] == "error"
        assert wait_usage(errored.headers["x-request-id"]).status == "partial"
        fake.clear_faults()
        fake.set_fault("reset", after_chunks=3)
        reset = post(live, world.chat_key, {"model": "up:gpt-4o-mini", "input": "hi", "stream": True})
        last = raw_events(reset)[-1]
        assert last["type"] == "error" and "failed after it started" in last["message"]
        assert last["sequence_number"] == 3
        row = wait_usage(reset.headers["x-request-id"])
        assert (row.status, row.error_type, row.tokens_estimated) == ("partial", "connection", True)


def test_a_translated_stream_that_breaks_ends_with_response_failed(world, live):
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-1")
        fake.set_fault("stream_error", after_chunks=3)
        fake.set_fault("slow", chunk_delay=0.05)  # the stream opens before the error arrives
        response = post(live, world.chat_key, {"model": "up:claude-sonnet-4-5", "input": "hi", "stream": True})
        events = raw_events(response)
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "response.failed"
        failed = events[-1]["response"]
        assert failed["status"] == "failed" and "Overloaded" in failed["error"]["message"]
        assert wait_usage(response.headers["x-request-id"]).status == "partial"


@pytest.mark.parametrize(("provider_type", "fake_class"), [("openai", FakeOpenAI), ("anthropic", FakeAnthropic)])
def test_client_leaving_mid_stream_cancels_upstream_and_records_partial(world, live, provider_type, fake_class):
    with fake_class(models=["m"], reply="tick " * 40, stream_chunks=20, api_key="sk-up-1") as fake:
        add_provider(world.tenant, fake, provider_type=provider_type, api_key="sk-up-1")
        fake.set_fault("slow", chunk_delay=0.25)
        body = b'{"model": "up:m", "stream": true, "input": "count"}'
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {world.chat_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        received = b""
        while b"response.output_text.delta" not in received:
            received += sock.recv(65536)
        request_id = received.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
        sock.close()  # the client goes away after the first delta
        row = wait_usage(request_id, timeout=10)
        deadline = time.monotonic() + 5
        while fake.abandoned == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (row.api, row.status, row.error_type) == ("responses", "partial", "client_disconnected")
    # an OpenAI stream reports usage only at its end (estimated here); Anthropic's from its start
    assert row.tokens_estimated == (provider_type == "openai")
    assert row.input_tokens > 0 and row.output_tokens > 0 and fake.abandoned == 1


@pytest.mark.parametrize(("path", "provider_type", "fake_class", "last_event"), [
    ("/v1/responses", "openai", FakeOpenAI, b"response.completed"),
    ("/v1/messages", "anthropic", FakeAnthropic, b"message_stop"),
])
def test_client_leaving_after_the_last_event_had_the_whole_answer(world, live, path, provider_type, fake_class,
                                                                  last_event):
    """Codex hangs up as soon as it reads ``response.completed``, before the upstream closes its
    end: the answer was whole, so the row is ``ok`` with the upstream's exact usage."""
    with fake_class(models=["m"], reply="Hello", usage={"prompt_tokens": 1000, "completion_tokens": 500},
                    api_key="sk-up-1") as fake:
        add_provider(world.tenant, fake, provider_type=provider_type, api_key="sk-up-1")
        fake.set_fault("slow", end_delay=3.0)  # the upstream keeps its end open after the last event
        asked = ({"max_tokens": 600, "messages": [{"role": "user", "content": "hi"}]} if path == "/v1/messages"
                 else {"input": "hi"})
        body = json.dumps({"model": "up:m", "stream": True, **asked}).encode()
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
                     + f"Authorization: Bearer {world.chat_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        received = b""
        while last_event not in received:
            received += sock.recv(65536)
        request_id = received.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
        sock.close()  # before the upstream ends its stream
        started = time.monotonic()
        row = wait_usage(request_id, timeout=10)
    assert time.monotonic() - started < 2.5  # recorded when the client left, not when the upstream closed
    assert (row.status, row.error_type, row.tokens_estimated) == ("ok", "", False)
    assert (row.input_tokens, row.output_tokens) == (1000, 500)


def test_wrong_method_and_unknown_paths(world, live):
    response = httpx.get(f"{live.url}/v1/responses", headers={"Authorization": f"Bearer {world.chat_key}"})
    assert response.status_code == 405 and response.json()["error"]["message"] == "Use POST on /v1/responses."
    unknown = httpx.post(f"{live.url}/v1/responsez", headers={"Authorization": f"Bearer {world.chat_key}"})
    assert unknown.status_code == 404 and "POST /v1/responses" in unknown.json()["error"]["message"]


def test_tenant_defaults_and_default_model_reach_both_kinds_of_target(world, live):
    with FakeOpenAI(models=["alpha"]) as oa, FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1") as an:
        add_provider(world.tenant, oa, name="oa", provider_type="openai")
        add_provider(world.tenant, an, name="an", provider_type="anthropic", api_key="sk-ant-1")
        tenant_update(tenant=world.tenant, changes={"default_model": "oa:alpha", "temperature": 0.3, "max_tokens": 77},
                      actor=SYSTEM)
        client = sdk(live, world.chat_key)
        post(live, world.chat_key, {"input": "hi"}).raise_for_status()  # no model: the tenant's default
        relayed = oa.requests_to("/v1/responses")[-1].body
        assert (relayed["model"], relayed["temperature"], relayed["max_output_tokens"]) == ("alpha", 0.3, 77)
        client.responses.create(model="oa:alpha", input="hi", temperature=1.0, max_output_tokens=5)
        relayed = oa.requests_to("/v1/responses")[-1].body
        assert (relayed["temperature"], relayed["max_output_tokens"]) == (1.0, 5)
        client.responses.create(model="an:claude-sonnet-4-5", input="hi")
        translated = an.requests_to("/v1/messages")[-1].body
        assert (translated["temperature"], translated["max_tokens"]) == (0.3, 77)


def test_response_cache_serves_repeated_deterministic_requests(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        tenant_update(tenant=world.tenant, changes={"cache_enabled": True}, actor=SYSTEM)
        client = sdk(live, world.chat_key)
        first = client.responses.with_raw_response.create(model="up:gpt-4o-mini", input="hi", temperature=0)
        again = client.responses.with_raw_response.create(model="up:gpt-4o-mini", input="hi", temperature=0)
        assert (first.headers["x-tollgate-cache"], again.headers["x-tollgate-cache"]) == ("miss", "hit")
        assert again.parse().output_text == first.parse().output_text
        assert len(fake.requests_to("/v1/responses")) == 1
        chat = client.chat.completions.with_raw_response.create(
            model="up:gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature=0)
        assert chat.headers["x-tollgate-cache"] == "miss"  # another door, another key
        warm = client.responses.with_raw_response.create(model="up:gpt-4o-mini", input="hi", temperature=0.7)
        assert "x-tollgate-cache" not in warm.headers
    row = wait_usage(again.headers["x-request-id"])
    assert (row.api, row.status, row.cost) == ("responses", "cache_hit", Decimal(0))
