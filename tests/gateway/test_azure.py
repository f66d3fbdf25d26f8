"""/v1 against a fake Azure OpenAI resource: chat (streamed and not) and embeddings with the
openai SDK priced as OpenAI prices the deployed model, api-key and Entra auth, a 429 with
retry-after falling back and cooling down, the Messages door translated to Azure's chat and
the Responses door relayed to Azure's /openai/v1/responses."""

from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from providers.models import ProviderModel
from providers.services import alias_create, provider_create
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tests.fakes import FakeAzure, FakeOpenAI
from tests.utils.live import add_provider, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "azure-key-0123456789"
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 200, "reasoning_tokens": 100}
DEPLOYMENTS = {"my-gpt4o": "gpt-4o", "my-embed": "text-embedding-3-small"}
CHAT_PATH = "/openai/deployments/my-gpt4o/chat/completions"
MICRO = Decimal("0.000000000001")


def add_azure(tenant, fake, *, name="az", options=None, api_key=KEY, **data):
    provider = provider_create(owner=tenant, actor=SYSTEM, data={
        "name": name, "provider_type": "azure", "base_url": fake.url, "api_key": api_key,
        "options": {"deployments": DEPLOYMENTS, **(options or {})}, **data})
    provider_sync(provider=provider)
    return provider


def hello():
    return [{"role": "user", "content": "Say hello"}]


def gpt4o_cost(input_tokens, cached, output) -> Decimal:
    # genai-prices, OpenAI's gpt-4o: $2.50 in, $1.25 cached, $10 out per million
    return ((input_tokens - cached) * Decimal("2.5") + cached * Decimal("1.25") + output * Decimal(10)) / Decimal(10**6)


def test_chat_non_stream_with_api_key_and_exact_cost(world, live):
    with FakeAzure(api_key=KEY, usage=USAGE, reply="Hello from Azure") as fake:
        add_azure(world.tenant, fake)
        model = ProviderModel.objects.get(model_id="my-gpt4o")
        assert (model.input_price, model.cached_input_price, model.output_price) == (
            Decimal("2.5"), Decimal("1.25"), Decimal(10))
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(
            model="az:my-gpt4o", messages=hello())
        completion = raw.parse()
        assert completion.choices[0].message.content == "Hello from Azure"
        assert completion.model == "gpt-4o"  # Azure answers with the deployed model
        assert completion.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
        sent = fake.requests_to(CHAT_PATH)[-1]
        assert sent.query == {"api-version": "2024-10-21"}
        assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers
        assert sent.body["messages"] == hello()
    row = wait_usage(raw.headers["x-request-id"])
    assert (row.status, row.stream, row.attempts) == ("ok", False, 1)
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens) == (1000, 200, 500, 100)
    assert row.cost == gpt4o_cost(1000, 200, 500).quantize(MICRO)


def test_chat_stream_drops_the_prompt_filter_chunk_and_prices_the_usage(world, live):
    with FakeAzure(api_key=KEY, usage=USAGE, reply="one two three four") as fake:
        add_azure(world.tenant, fake, options={"api_version": "2025-04-01-preview"})
        stream = sdk(live, world.chat_key).chat.completions.create(
            model="az:my-gpt4o", messages=hello(), stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert all(c.id for c in chunks)  # Azure's id-less prompt_filter_results chunk is not relayed
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
        assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1000
        assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 200
        sent = fake.requests_to(CHAT_PATH)[-1]
        assert sent.query == {"api-version": "2025-04-01-preview"}
        assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
        request_id = stream.response.headers["x-request-id"]
    row = wait_usage(request_id)
    assert row.stream and row.status == "ok" and not row.tokens_estimated
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens) == (1000, 200, 500)
    assert row.cost == gpt4o_cost(1000, 200, 500).quantize(MICRO)


def test_embeddings_priced_as_the_deployed_model(world, live):
    with FakeAzure(api_key=KEY, usage={"prompt_tokens": 40}) as fake:
        add_azure(world.tenant, fake)
        raw = sdk(live, world.chat_key).embeddings.with_raw_response.create(model="az:my-embed", input=["a", "b"])
        result = raw.parse()
        assert len(result.data) == 2 and result.usage.prompt_tokens == 40
        sent = fake.requests_to("/openai/deployments/my-embed/embeddings")[-1]
        assert sent.query == {"api-version": "2024-10-21"} and sent.headers["api-key"] == KEY
    row = wait_usage(raw.headers["x-request-id"])
    price = ProviderModel.objects.get(model_id="my-embed").input_price
    assert price == Decimal("0.02")  # text-embedding-3-small
    assert row.input_tokens == 40 and row.cost == (40 * price / Decimal(10**6)).quantize(MICRO)


def test_entra_token_is_sent_as_bearer(world, live):
    with FakeAzure(entra_token="eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.token") as fake:
        add_azure(world.tenant, fake, api_key="eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.token", options={"auth": "entra"})
        answer = sdk(live, world.chat_key).chat.completions.create(model="az:my-gpt4o", messages=hello())
        assert answer.choices[0].message.content.startswith("Hello from fake-azure")
        sent = fake.requests_to(CHAT_PATH)[-1]
        assert sent.headers["authorization"] == "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.token"
        assert "api-key" not in sent.headers


def test_429_with_retry_after_falls_back_then_cools_down(world, live):
    with FakeAzure(api_key=KEY) as az, FakeOpenAI(models=["gpt-4o"], reply="from backup") as backup:
        add_azure(world.tenant, az, max_retries=0)
        add_provider(world.tenant, backup, name="b")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={
            "name": "chain", "retries": 0, "allowed_fails": 1, "cooldown_seconds": 60,
            "targets": [{"model": "az:my-gpt4o"}, {"model": "b:gpt-4o"}],
        })
        az.set_fault("status", status=429, retry_after=7)
        client = sdk(live, world.chat_key)
        raw = client.chat.completions.with_raw_response.create(model="chain", messages=hello())
        assert raw.parse().choices[0].message.content == "from backup"
        assert wait_usage(raw.headers["x-request-id"]).attempts == 2
        # Azure's retry-after cooled the deployment for 7 s on every worker: skipped, not called.
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(model="chain", messages=hello())
            assert raw.headers["x-tollgate-model"] == "b:gpt-4o"
        assert len(az.requests_to(CHAT_PATH)) == 1
        row = wait_usage(raw.headers["x-request-id"])
    assert row.attempts == 1 and row.status == "ok"


def test_server_errors_resets_and_bad_json_are_retried_on_azure(world, live):
    with FakeAzure(api_key=KEY, reply="recovered") as fake:
        add_azure(world.tenant, fake, max_retries=3)
        fake.set_fault("status", status=500, times=1)
        fake.set_fault("reset", times=1)
        fake.set_fault("malformed", times=1)
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(model="az:my-gpt4o",
                                                                                  messages=hello())
        assert raw.parse().choices[0].message.content == "recovered"
        assert wait_usage(raw.headers["x-request-id"]).attempts >= 2


def test_content_filter_refusal_comes_back_as_400_without_retry(world, live):
    with FakeAzure(api_key=KEY) as fake:
        add_azure(world.tenant, fake, max_retries=3)
        fake.set_fault("status", status=400, variant="content_filter")
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model="az:my-gpt4o", messages=hello())
        assert "content management policy" in str(caught.value)
        assert caught.value.code == "content_policy_violation"
        assert len(fake.requests_to(CHAT_PATH)) == 1


def test_messages_door_is_translated_to_azure_chat(world, live):
    with FakeAzure(api_key=KEY, usage=USAGE, reply="Bonjour") as fake:
        add_azure(world.tenant, fake)
        client = anthropic.Anthropic(base_url=live.url, api_key=world.chat_key, max_retries=0)
        message = client.messages.create(model="az:my-gpt4o", max_tokens=300, extra_body={"top_k": 5},
                                         system="Be brief.", messages=[{"role": "user", "content": "Say hello"}])
        assert message.content[0].text == "Bonjour" and message.usage.output_tokens == 500
        sent = fake.requests_to(CHAT_PATH)[-1]
        assert sent.headers["api-key"] == KEY and "top_k" not in sent.body
        assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
        with client.messages.stream(model="az:my-gpt4o", max_tokens=300,
                                    messages=[{"role": "user", "content": "Say hello"}]) as stream:
            assert "".join(stream.text_stream) == "Bonjour"
            request_id = stream.response.headers["x-request-id"]
    row = wait_usage(request_id)
    assert row.api == "messages" and row.status == "ok" and row.stream
    assert row.cost == gpt4o_cost(1000, 200, 500).quantize(MICRO)


def test_responses_door_is_relayed_to_azure_v1(world, live):
    with FakeAzure(api_key=KEY, usage=USAGE, reply="Hello there!") as fake:
        add_azure(world.tenant, fake)
        raw = sdk(live, world.chat_key).responses.with_raw_response.create(model="az:my-gpt4o", input="Say hello")
        assert raw.parse().output_text == "Hello there!"
        sent = fake.requests_to("/openai/v1/responses")[-1]
        assert sent.body == {"model": "my-gpt4o", "input": "Say hello"} and sent.headers["api-key"] == KEY
        assert fake.requests_to(CHAT_PATH) == []
        with sdk(live, world.chat_key).responses.stream(model="az:my-gpt4o", input="count") as stream:
            kinds = [event.type for event in stream]
            request_id = stream._response.headers["x-request-id"]
        assert kinds[-1] == "response.completed"
    row = wait_usage(request_id)
    assert (row.api, row.status, row.stream) == ("responses", "ok", True)
    assert row.cost == gpt4o_cost(1000, 200, 500).quantize(MICRO)


def test_stream_reset_mid_way_ends_with_error_and_a_partial_row(world, live):
    with FakeAzure(api_key=KEY, reply="word " * 40, stream_chunks=10) as fake:
        add_azure(world.tenant, fake, max_retries=0)
        fake.set_fault("reset", after_chunks=4)  # the prompt-filter chunk, the role chunk, two deltas
        response = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                              json={"model": "az:my-gpt4o", "messages": hello(), "stream": True}, timeout=10)
        assert response.status_code == 200 and "word" in response.text
        assert '"error"' in response.text and response.text.rstrip().endswith("data: [DONE]")
        row = wait_usage(response.headers["x-request-id"])
    assert row.status == "partial" and row.output_tokens > 0 and row.tokens_estimated


def test_slow_azure_times_out_and_falls_back(world, live):
    with FakeAzure(api_key=KEY) as slow, FakeOpenAI(models=["gpt-4o"], reply="fast one") as fast:
        add_azure(world.tenant, slow, priority=5, timeout_seconds=0.5, max_retries=0)
        add_provider(world.tenant, fast, name="b", priority=1)
        alias_create(tenant=world.tenant, actor=SYSTEM, data={
            "name": "chain", "retries": 0, "targets": [{"model": "az:my-gpt4o"}, {"model": "b:gpt-4o"}]})
        slow.set_fault("slow", delay=3)
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(model="chain", messages=hello())
        assert raw.parse().choices[0].message.content == "fast one"
        assert raw.headers["x-tollgate-model"] == "b:gpt-4o"
        assert wait_usage(raw.headers["x-request-id"]).attempts == 2
