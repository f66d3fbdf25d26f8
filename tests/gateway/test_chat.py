"""/v1 with the official openai SDK as the client, against fake upstreams of each protocol."""

from decimal import Decimal

import httpx
import openai
import pytest

from providers.models import ProviderModel
from providers.services import alias_create, provider_get_or_create, provider_model_set_enabled
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tenants.services import tenant_update
from tests.fakes import FakeAnthropic, FakeOllama, FakeOpenAI, FakeOpenRouter
from tests.utils.live import add_provider, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 200, "reasoning_tokens": 100}


def hello():
    return [{"role": "user", "content": "Say hello"}]


def test_non_stream_openai_compatible(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE, reply="Hello there!") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        client = sdk(live, world.chat_key)
        raw = client.chat.completions.with_raw_response.create(model="up:gpt-4o-mini", messages=hello())
        completion = raw.parse()
        assert completion.choices[0].message.content == "Hello there!"
        assert completion.usage.prompt_tokens == 1000
        request_id = raw.headers["x-request-id"]
        assert raw.headers["x-tollgate-model"] == "up:gpt-4o-mini"
        sent = fake.requests_to("/v1/chat/completions")[-1]
        assert sent.body["model"] == "gpt-4o-mini" and sent.body["messages"] == hello()

    row = wait_usage(request_id)
    assert (row.status, row.stream, row.attempts) == ("ok", False, 1)
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens) == (1000, 200, 500, 100)
    model = ProviderModel.objects.get(pk=row.provider_model_id)
    expected = (800 * model.input_price + 200 * model.cached_input_price + 500 * model.output_price) / Decimal(10**6)
    assert row.cost == expected.quantize(Decimal("0.000000000001"))
    assert row.model_requested == "up:gpt-4o-mini" and row.api_key.tenant_id == world.tenant.pk


def test_stream_with_usage_chunk(world, live):
    with FakeOpenAI(models=["gpt-4o-mini"], usage=USAGE, reply="one two three four five six") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        client = sdk(live, world.chat_key)
        stream = client.chat.completions.create(model="up:gpt-4o-mini", messages=hello(), stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "one two three four five six"
        assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1000
        request_id = stream.response.headers["x-request-id"]
    row = wait_usage(request_id)
    assert row.stream and row.status == "ok" and row.output_tokens == 500 and not row.tokens_estimated
    assert row.ttft_ms is not None and row.cost is not None


def test_stream_without_include_usage_sends_no_usage_chunk(world, live):
    with FakeOpenAI(models=["m"], usage=USAGE) as fake:
        add_provider(world.tenant, fake)
        chunks = list(sdk(live, world.chat_key).chat.completions.create(model="m", messages=hello(), stream=True))
        assert all(c.usage is None for c in chunks)
        assert fake.requests_to("/v1/chat/completions")[-1].body["stream_options"] == {"include_usage": True}


def test_stream_whose_upstream_sends_no_usage_is_estimated_not_zero(world, live):
    with FakeOpenAI(models=["m"], reply="a fairly long reply " * 10) as fake:
        fake.set_fault("no_usage")
        add_provider(world.tenant, fake)
        stream = sdk(live, world.chat_key).chat.completions.create(model="m", messages=hello(), stream=True)
        list(stream)
        row = wait_usage(stream.response.headers["x-request-id"])
    assert row.tokens_estimated and row.output_tokens > 0 and row.input_tokens > 0


def test_anthropic_upstream_through_openai_sdk(world, live):
    usage = {"prompt_tokens": 300, "completion_tokens": 40, "cached_tokens": 100, "cache_creation_tokens": 50}
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-test-1", usage=usage, reply="Bonjour") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-test-1")
        client = sdk(live, world.chat_key)
        completion = client.chat.completions.create(
            model="up:claude-sonnet-4-5",
            messages=[{"role": "system", "content": "Be brief."}, *hello()],
        )
        assert completion.choices[0].message.content == "Bonjour"
        sent = fake.requests_to("/v1/messages")[-1]
        assert sent.headers["x-api-key"] == "sk-ant-test-1" and sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
        stream = client.chat.completions.create(model="up:claude-sonnet-4-5", messages=hello(), stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Bonjour"
        assert chunks[-1].usage.prompt_tokens == 450  # input + cache read + cache write
        row = wait_usage(stream.response.headers["x-request-id"])
    assert (row.cached_input_tokens, row.cache_write_tokens, row.output_tokens) == (100, 50, 40)
    # genai-prices for claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 cache write, $15 out (per M)
    model = ProviderModel.objects.get(model_id="claude-sonnet-4-5")
    assert (model.input_price, model.cached_input_price, model.cache_write_price, model.output_price) == (
        Decimal(3), Decimal("0.3"), Decimal("3.75"), Decimal(15))
    expected = (300 * Decimal(3) + 100 * Decimal("0.3") + 50 * Decimal("3.75") + 40 * Decimal(15)) / Decimal(10**6)
    assert row.cost == expected.quantize(Decimal("0.000000000001"))


def test_ollama_native_upstream(world, live):
    with FakeOllama(models=["llama3:70b"], reply="Hi from llama") as fake:
        add_provider(world.tenant, fake, name="ollama", provider_type="ollama")
        client = sdk(live, world.chat_key)
        completion = client.chat.completions.create(model="ollama:llama3:70b", messages=hello())
        assert completion.choices[0].message.content == "Hi from llama"
        stream = client.chat.completions.create(model="ollama:llama3:70b", messages=hello(), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hi from llama"
        assert fake.requests_to("/api/chat")[-1].body["model"] == "llama3:70b"
        row = wait_usage(stream.response.headers["x-request-id"])
    assert row.status == "ok" and row.cost == 0 and row.output_tokens > 0


def test_openrouter_prefix_with_slashes_and_provider_cost(world, live):
    catalog = [{"id": "meta-llama/llama-3.1-8b-instruct",
                "pricing": {"prompt": "0.0000001", "completion": "0.0000002"}}]
    with FakeOpenRouter(models=catalog, usage={"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.0000042}) as fake:
        add_provider(world.tenant, fake, name="openrouter", provider_type="openrouter")
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(
            model="openrouter:meta-llama/llama-3.1-8b-instruct", messages=hello())
        assert raw.parse().choices[0].message.content
        row = wait_usage(raw.headers["x-request-id"])
    assert row.provider_cost == Decimal("0.0000042")
    assert row.cost == Decimal("0.000002000000")  # 10 × 0.1 + 5 × 0.2 per million


def test_openrouter_requests_carry_the_attribution_headers(world, live, settings):
    settings.OPENROUTER_SITE_URL = "https://tollgate.example"
    settings.OPENROUTER_APP_NAME = "Tollgate Test"
    with FakeOpenRouter(models=[{"id": "openai/gpt-4o"}]) as fake:
        add_provider(world.tenant, fake, name="openrouter", provider_type="openrouter")
        assert fake.requests_to("/models")[-1].headers["x-title"] == "Tollgate Test"  # the catalog sync
        sdk(live, world.chat_key).chat.completions.create(model="openrouter:openai/gpt-4o", messages=hello())
        sent = fake.requests_to("/chat/completions")[-1].headers
    assert (sent["http-referer"], sent["x-title"]) == ("https://tollgate.example", "Tollgate Test")


def test_mock_platform_provider_works_without_network(world, live):
    provider, _ = provider_get_or_create(name="mock", provider_type="mock")
    provider_sync(provider=provider)
    for model in provider.models.all():
        provider_model_set_enabled(provider_model=model, tenant=world.tenant, enabled=True, actor=SYSTEM)
    client = sdk(live, world.chat_key)
    completion = client.chat.completions.create(model="mock:mock-fast", messages=hello())
    assert "Say hello" in completion.choices[0].message.content
    stream = client.chat.completions.create(model="mock-fast", messages=hello(), stream=True)
    assert "Say hello" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    embedding = client.embeddings.create(model="mock:mock-embed", input=["a", "b"])
    assert len(embedding.data) == 2 and embedding.usage.prompt_tokens > 0


def test_bare_id_default_model_and_defaults(world, live):
    with FakeOpenAI(models=["alpha", "beta"]) as fake:
        add_provider(world.tenant, fake)
        tenant_update(tenant=world.tenant, changes={"default_model": "beta", "temperature": 0.3, "max_tokens": 77},
                      actor=SYSTEM)
        client = sdk(live, world.chat_key)
        client.chat.completions.create(model="alpha", messages=hello(), temperature=1.0)
        first = fake.requests_to("/v1/chat/completions")[-1].body
        assert (first["model"], first["temperature"], first["max_tokens"]) == ("alpha", 1.0, 77)
        httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                   json={"messages": hello()}).raise_for_status()
        second = fake.requests_to("/v1/chat/completions")[-1].body
        assert (second["model"], second["temperature"]) == ("beta", 0.3)


def test_two_providers_offer_a_bare_id_the_higher_priority_wins(world, live):
    with FakeOpenAI(models=["shared"], reply="low") as low, FakeOpenAI(models=["shared"], reply="high") as high:
        add_provider(world.tenant, low, name="low", priority=1)
        add_provider(world.tenant, high, name="high", priority=10)
        answer = sdk(live, world.chat_key).chat.completions.create(model="shared", messages=hello())
        assert answer.choices[0].message.content == "high"


def test_alias_with_overrides_and_fallback(world, live):
    with FakeOpenAI(models=["primary"]) as a, FakeOpenAI(models=["backup"], reply="from backup") as b:
        add_provider(world.tenant, a, name="a")
        add_provider(world.tenant, b, name="b")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={
            "name": "smart-cheap", "retries": 0,
            "targets": [{"model": "a:primary", "overrides": {"temperature": 0.1}},
                        {"model": "b:backup", "overrides": {"max_tokens": 11}}],
        })
        client = sdk(live, world.chat_key)
        client.chat.completions.create(model="smart-cheap", messages=hello())
        assert a.requests_to("/v1/chat/completions")[-1].body["temperature"] == 0.1
        a.set_fault("status", status=500)
        raw = client.chat.completions.with_raw_response.create(model="smart-cheap", messages=hello())
        assert raw.parse().choices[0].message.content == "from backup"
        assert raw.headers["x-tollgate-model"] == "b:backup"
        assert b.requests_to("/v1/chat/completions")[-1].body["max_tokens"] == 11
        row = wait_usage(raw.headers["x-request-id"])
    assert row.attempts == 2 and row.model_requested == "smart-cheap" and row.status == "ok"


@pytest.mark.parametrize("fault, opts", [
    ("status", {"status": 500}),
    ("status", {"status": 503}),
    ("status", {"status": 429, "retry_after": 0}),
    ("reset", {}),
    ("malformed", {}),
])
def test_retry_then_succeed_on_the_same_target(world, live, fault, opts):
    with FakeOpenAI(models=["m"], reply="recovered") as fake:
        add_provider(world.tenant, fake, max_retries=2)
        fake.set_fault(fault, times=1, **opts)
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(model="m", messages=hello())
        assert raw.parse().choices[0].message.content == "recovered"
        assert len(fake.requests_to("/v1/chat/completions")) == 2
        assert wait_usage(raw.headers["x-request-id"]).attempts == 2


def test_timeout_falls_back(world, live):
    with FakeOpenAI(models=["slow"]) as slow, FakeOpenAI(models=["slow"], reply="fast one") as fast:
        add_provider(world.tenant, slow, name="s", priority=5, timeout_seconds=0.5, max_retries=0)
        add_provider(world.tenant, fast, name="f", priority=1)
        slow.set_fault("slow", delay=3)
        answer = sdk(live, world.chat_key).chat.completions.create(model="slow", messages=hello())
        assert answer.choices[0].message.content == "fast one"


def test_no_retry_on_400(world, live):
    with FakeOpenAI(models=["m"]) as fake, FakeOpenAI(models=["m"]) as other:
        add_provider(world.tenant, fake, name="a", priority=5, max_retries=3)
        add_provider(world.tenant, other, name="b", priority=1)
        fake.set_fault("status", status=400, message="messages[0].content is too long")
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model="m", messages=hello())
        assert "too long" in str(caught.value)
        assert len(fake.requests_to("/v1/chat/completions")) == 1
        assert other.requests_to("/v1/chat/completions") == []


def test_insufficient_quota_is_not_retried_but_falls_back(world, live):
    with FakeOpenAI(models=["m"]) as broke, FakeOpenAI(models=["m"], reply="paid") as paid:
        add_provider(world.tenant, broke, name="a", priority=5, max_retries=3)
        add_provider(world.tenant, paid, name="b", priority=1)
        broke.set_fault("status", status=429, variant="insufficient_quota")
        answer = sdk(live, world.chat_key).chat.completions.create(model="m", messages=hello())
        assert answer.choices[0].message.content == "paid"
        assert len(broke.requests_to("/v1/chat/completions")) == 1


def test_all_fallbacks_failed_lists_each_attempt(world, live):
    with FakeOpenAI(models=["m"]) as a, FakeOpenAI(models=["m"]) as b:
        add_provider(world.tenant, a, name="a", priority=5, max_retries=0)
        add_provider(world.tenant, b, name="b", priority=1, max_retries=0)
        a.set_fault("status", status=500)
        b.set_fault("status", status=503)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model="m", messages=hello())
    error = caught.value
    assert error.status_code == 502
    assert "a:m" in error.message and "b:m" in error.message and "500" in error.message and "503" in error.message
    row = wait_usage(error.response.headers["x-request-id"])
    assert row.status == "error" and row.attempts == 2 and row.cost is None


def test_upstream_unreachable_names_the_provider_not_the_key(world, live):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake, max_retries=0, api_key="sk-secret-never-shown-1234")
    # the fake is stopped now: connection refused
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(live, world.chat_key).chat.completions.create(model="m", messages=hello())
    assert "up" in caught.value.message and "unreachable" in caught.value.message
    assert "sk-secret" not in caught.value.response.text


def test_stream_failing_after_first_byte_ends_with_error_and_partial_row(world, live):
    with FakeOpenAI(models=["m"], reply="word " * 40, stream_chunks=10) as fake:
        add_provider(world.tenant, fake)
        fake.set_fault("reset", after_chunks=3)
        response = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                              json={"model": "m", "messages": hello(), "stream": True}, timeout=10)
        assert response.status_code == 200
        assert '"error"' in response.text and response.text.rstrip().endswith("data: [DONE]")
        row = wait_usage(response.headers["x-request-id"])
    assert row.status == "partial" and row.output_tokens > 0 and row.tokens_estimated


def test_stream_failing_before_first_byte_falls_back(world, live):
    with FakeOpenAI(models=["m"]) as bad, FakeOpenAI(models=["m"], reply="streamed ok") as good:
        add_provider(world.tenant, bad, name="a", priority=5, max_retries=0)
        add_provider(world.tenant, good, name="b", priority=1)
        bad.set_fault("reset")
        stream = sdk(live, world.chat_key).chat.completions.create(model="m", messages=hello(), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "streamed ok"


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


@pytest.mark.parametrize("fake_class, kind", [(FakeOpenAI, "openai"), (FakeAnthropic, "anthropic")])
def test_tool_calls_pass_through_both_ways(world, live, fake_class, kind):
    with fake_class(models=["toolful"], tool_call={"name": "get_weather", "arguments": {"city": "Paris"}},
                    api_key="sk-tools-0001") as fake:
        add_provider(world.tenant, fake, provider_type=kind, api_key="sk-tools-0001")
        client = sdk(live, world.chat_key)
        completion = client.chat.completions.create(model="up:toolful", messages=hello(), tools=TOOLS,
                                                    tool_choice="auto")
        call = completion.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and '"Paris"' in call.function.arguments
        assert completion.choices[0].finish_reason == "tool_calls"
        stream = client.chat.completions.create(model="up:toolful", messages=hello(), tools=TOOLS, stream=True)
        arguments = "".join(
            (c.choices[0].delta.tool_calls[0].function.arguments or "")
            for c in stream if c.choices and c.choices[0].delta.tool_calls
        )
        assert '"Paris"' in arguments
        sent = fake.requests[-1].body
        tools_sent = sent["tools"]
        assert tools_sent[0].get("name", tools_sent[0].get("function", {}).get("name")) == "get_weather"


def test_ollama_embeddings(world, live):
    with FakeOllama(models=["nomic-embed-text:latest"]) as fake:
        add_provider(world.tenant, fake, name="ollama", provider_type="ollama")
        result = sdk(live, world.chat_key).embeddings.create(model="ollama:nomic-embed-text:latest",
                                                             input=["a", "b"], encoding_format="float")
        assert len(result.data) == 2 and result.usage.prompt_tokens > 0
        assert fake.requests_to("/api/embed")[-1].body["input"] == ["a", "b"]


def test_the_ledger_row_names_the_door_each_request_came_through(world, live):
    with FakeOpenAI(models=["gpt-4o-mini", "text-embedding-3-small"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        client = sdk(live, world.chat_key)
        chat = client.chat.completions.with_raw_response.create(model="up:gpt-4o-mini", messages=hello())
        embedded = client.embeddings.with_raw_response.create(model="up:text-embedding-3-small", input="a")
    assert wait_usage(chat.headers["x-request-id"]).api == "chat"
    assert wait_usage(embedded.headers["x-request-id"]).api == "embeddings"
