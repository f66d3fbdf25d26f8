"""A Google Gemini provider end to end: the catalog synced from models.list page by page with
genai-prices' google prices, /v1/chat/completions (openai SDK) and the Messages door (anthropic
SDK) translated to generateContent against FakeGemini with the exact cost in the ledger
(thoughts billed as output, cached input at the cache price), tool calls both ways, Vertex AI's
path and bearer token, and a 429 with RetryInfo falling back or answered with retry-after."""

import json
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from providers.models import ModelMode, Provider, ProviderModel
from providers.services import provider_create
from providers.sync import provider_sync
from tests.fakes import FakeGemini, FakeGoogleOAuth, FakeOpenAI
from tests.utils.live import add_provider, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "AIzaSyFakeGeminiKey0123456789"
CENT = Decimal("0.000000000001")
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 200, "reasoning_tokens": 100}
HELLO = [{"role": "user", "content": "Say hello"}]
# genai-prices (google) for gemini-2.5-flash, USD per million tokens
IN, CACHED, OUT = Decimal("0.3"), Decimal("0.03"), Decimal("2.5")


def expected_cost(prompt: int, cached: int, output: int) -> Decimal:
    return ((prompt - cached) * IN + cached * CACHED + output * OUT) / Decimal(10**6)


def gemini(world, fake, **data) -> Provider:
    return add_provider(world.tenant, fake, name="gem", provider_type="gemini", api_key=KEY, **data)


def test_catalog_sync_follows_page_tokens_keeps_chat_models_and_prices_them(world):
    models = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001", "gemini-2.0-flash",
              {"id": "aqa", "supportedGenerationMethods": ["generateAnswer"]}]
    with FakeGemini(models=models, api_key=KEY) as fake:
        fake.max_page_size = 2  # the fetcher asks for 1000 a page; this server gives 2
        provider = provider_create(owner=world.tenant, data={
            "name": "gem", "base_url": fake.base_url, "provider_type": "gemini", "api_key": KEY})
        provider_sync(provider=provider)
        listed = fake.requests_to("/v1beta/models")
        assert [r.query.get("pageToken") for r in listed] == [None, "2", "4"]
        assert all(r.headers["x-goog-api-key"] == KEY for r in listed)
    rows = {m.model_id: m for m in ProviderModel.objects.filter(provider=provider)}
    assert set(rows) == {"gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "gemini-embedding-001"}  # no AQA
    embed = rows["gemini-embedding-001"]
    assert (embed.mode, embed.context_length) == (ModelMode.EMBEDDING, 2048)
    flash = rows["gemini-2.5-flash"]
    assert (flash.mode, flash.context_length, flash.supports_tools, flash.supports_vision) == (
        ModelMode.CHAT, 1_048_576, True, True)
    assert (flash.input_price, flash.cached_input_price, flash.output_price, flash.price_source) == (
        IN, CACHED, OUT, "catalog")
    assert flash.display_name == "Gemini 2.5 Flash"


def test_chat_non_stream_and_stream_through_the_openai_sdk_with_exact_cost(world, live):
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY, usage=USAGE, reply="one two three four") as fake:
        gemini(world, fake)
        client = sdk(live, world.chat_key)
        raw = client.chat.completions.with_raw_response.create(
            model="gem:gemini-2.5-flash", messages=[{"role": "system", "content": "Be brief."}, *HELLO],
            temperature=0.3, max_tokens=64)
        completion = raw.parse()
        assert completion.choices[0].message.content == "one two three four"
        assert completion.choices[0].finish_reason == "stop"
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 600)
        assert completion.usage.completion_tokens_details.reasoning_tokens == 100
        assert completion.usage.prompt_tokens_details.cached_tokens == 200
        sent = fake.requests[-1]
        assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert sent.headers["x-goog-api-key"] == KEY and "authorization" not in sent.headers
        assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
        assert sent.body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 64}
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.status, row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens) == (
            "ok", 1000, 200, 600, 100)
        assert row.cost == expected_cost(1000, 200, 600).quantize(CENT)

        stream = client.chat.completions.create(model="gem:gemini-2.5-flash", messages=HELLO, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 600
        assert fake.requests[-1].path.endswith(":streamGenerateContent") and fake.requests[-1].query == {"alt": "sse"}
        row = wait_usage(stream.response.headers["x-request-id"])
    assert row.stream and row.status == "ok" and not row.tokens_estimated
    assert row.cost == expected_cost(1000, 200, 600).quantize(CENT)


def test_tool_calls_round_trip_with_the_thought_signature(world, live):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY, reply="18 degrees",
                    tool_call={"arguments": {"city": "Paris"}}) as fake:
        gemini(world, fake)
        client = sdk(live, world.chat_key)
        first = client.chat.completions.create(model="gem:gemini-2.5-flash", messages=HELLO, tools=tools)
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Paris"}')
        streamed = client.chat.completions.create(model="gem:gemini-2.5-flash", messages=HELLO, tools=tools,
                                                  stream=True)
        deltas = [c.choices[0].delta.tool_calls[0] for c in streamed if c.choices and c.choices[0].delta.tool_calls]
        assert deltas[0].function.name == "get_weather" and deltas[0].function.arguments == '{"city":"Paris"}'
        second = client.chat.completions.create(model="gem:gemini-2.5-flash", tools=tools, messages=[
            *HELLO, first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}])
        assert second.choices[0].message.content == "18 degrees"
        contents = fake.requests[-1].body["contents"]
    assert contents[1]["role"] == "model" and contents[1]["parts"][0]["thoughtSignature"]
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}}]}


def test_the_messages_door_is_translated_to_gemini(world, live):
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY, usage=USAGE, reply="Hi from Gemini") as fake:
        gemini(world, fake)
        claude = anthropic.Anthropic(base_url=live.url, api_key=world.chat_key, max_retries=0)
        raw = claude.messages.with_raw_response.create(
            model="gem:gemini-2.5-flash", max_tokens=50, system="Be brief.", messages=HELLO, stop_sequences=["END"])
        message = raw.parse()
        sent = fake.requests[-1].body
        assert message.content[0].text == "Hi from Gemini" and message.stop_reason == "end_turn"
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
            800, 200, 600)
        assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert sent["generationConfig"] == {"maxOutputTokens": 50, "stopSequences": ["END"]}
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.api, row.cost) == ("messages", expected_cost(1000, 200, 600).quantize(CENT))
        with claude.messages.stream(model="gem:gemini-2.5-flash", max_tokens=50, messages=HELLO) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == "Hi from Gemini" and final.usage.output_tokens == 600


def test_429_with_retry_info_falls_back_and_alone_comes_back_with_retry_after(world, live):
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY) as fake, \
            FakeOpenAI(models=["gemini-2.5-flash"], reply="from the backup") as backup:
        gemini(world, fake, priority=5, max_retries=0)
        fake.set_fault("status", status=429, retry_after=7)
        client = sdk(live, world.chat_key)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gem:gemini-2.5-flash", messages=HELLO)
        assert caught.value.response.headers["retry-after"] == "7"
        assert "exceeded your current quota" in caught.value.message
        add_provider(world.tenant, backup, name="backup", priority=1)
        raw = client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=HELLO)
        assert raw.parse().choices[0].message.content == "from the backup"
        assert raw.headers["x-tollgate-model"] == "backup:gemini-2.5-flash"
        row = wait_usage(raw.headers["x-request-id"])
        # Gemini's retry-after cooled it for 7 s: skipped, not called again.
        assert len(fake.requests_to("/v1beta/models/gemini-2.5-flash:generateContent")) == 1
    assert row.attempts == 1 and row.status == "ok"


@pytest.mark.parametrize("fault, opts", [("status", {"status": 500}), ("status", {"status": 503}),
                                         ("reset", {}), ("malformed", {})])
def test_server_faults_are_retried(world, live, fault, opts):
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY, reply="recovered") as fake:
        gemini(world, fake, max_retries=2)
        fake.set_fault(fault, times=1, **opts)
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(
            model="gem:gemini-2.5-flash", messages=HELLO)
        assert raw.parse().choices[0].message.content == "recovered"
        assert wait_usage(raw.headers["x-request-id"]).attempts == 2


def test_invalid_argument_is_not_retried(world, live):
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY) as fake:
        gemini(world, fake, max_retries=3)
        fake.set_fault("status", status=400, message="Invalid value at 'generation_config.temperature'")
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model="gem:gemini-2.5-flash", messages=HELLO)
        assert "generation_config.temperature" in str(caught.value)
        assert len(fake.requests) == 2  # the catalog sync's list, then the one chat request


def test_vertex_ai_path_and_bearer_token(world, live):
    with FakeGemini(models=["gemini-2.5-pro"], api_key="ya29.token", reply="from vertex") as fake:
        provider = add_provider(world.tenant, fake, name="vertex", provider_type="gemini", api_key="ya29.token",
                                base_url=fake.vertex_base_url)
        assert provider.models.filter(model_id="gemini-2.5-pro").exists() and not fake.requests  # listed, not asked
        answer = sdk(live, world.chat_key).chat.completions.create(model="vertex:gemini-2.5-pro", messages=HELLO)
        assert answer.choices[0].message.content == "from vertex"
        sent = fake.requests[-1]
    assert sent.path == ("/v1/projects/fake-project/locations/us-central1/publishers/google/models/"
                         "gemini-2.5-pro:generateContent")
    assert sent.headers["authorization"] == "Bearer ya29.token" and "x-goog-api-key" not in sent.headers


def test_vertex_auth_option_and_reasoning_effort_as_a_thinking_budget(world, live):
    with FakeGemini(models=["gemini-2.5-flash"], api_key="ya29.token", reply="thought about it") as fake:
        provider = add_provider(world.tenant, fake, name="vertex", provider_type="gemini", api_key="ya29.token",
                                base_url=fake.vertex_base_url, options={"auth": "vertex"})
        assert provider.options == {"auth": "vertex"}
        client = sdk(live, world.chat_key)
        answer = client.chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO,
                                                reasoning_effort="low")
        assert answer.choices[0].message.content == "thought about it"
        sent = fake.requests[-1]
        assert sent.headers["authorization"] == "Bearer ya29.token" and "x-goog-api-key" not in sent.headers
        assert sent.body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 1024}}
        stream = client.chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO,
                                                reasoning_effort="none", stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "thought about it"
        assert fake.requests[-1].body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO,
                                           reasoning_effort="extreme")
        assert "reasoning_effort must be one of none, minimal, low, medium, high" in str(caught.value)
        assert len(fake.requests_to(sent.path)) == 1  # the refused one never left


def test_a_stream_reset_after_the_first_bytes_ends_with_an_error_and_a_partial_row(world, live):
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY, reply="word " * 40, stream_chunks=10) as fake:
        gemini(world, fake)
        fake.set_fault("reset", after_chunks=3)
        response = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                              json={"model": "gem:gemini-2.5-flash", "messages": HELLO, "stream": True}, timeout=10)
        assert response.status_code == 200
        assert "word word" in response.text and '"error"' in response.text
        assert response.text.rstrip().endswith("data: [DONE]")
        row = wait_usage(response.headers["x-request-id"])
    assert row.status == "partial" and row.output_tokens > 0 and row.tokens_estimated


def test_the_responses_door_reaches_gemini_through_chat(world, live):
    with FakeGemini(models=["gemini-2.5-flash"], api_key=KEY, usage=USAGE, reply="Hi via Responses") as fake:
        gemini(world, fake)
        raw = sdk(live, world.chat_key).responses.with_raw_response.create(
            model="gem:gemini-2.5-flash", input="Say hello", instructions="Be brief.")
        response = raw.parse()
        sent = fake.requests[-1].body
        row = wait_usage(raw.headers["x-request-id"])
    assert response.output_text == "Hi via Responses"
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert response.usage.output_tokens_details.reasoning_tokens == 100
    assert (row.api, row.cost) == ("responses", expected_cost(1000, 200, 600).quantize(CENT))


def test_embeddings_through_the_openai_sdk_with_estimated_input_and_exact_cost(world, live):
    with FakeGemini(models=["gemini-embedding-001"], api_key=KEY) as fake:
        gemini(world, fake)
        model = ProviderModel.objects.get(model_id="gemini-embedding-001")
        assert model.mode == ModelMode.EMBEDDING
        model.input_price = Decimal("0.15")  # USD per million input tokens; embeddings have no output
        model.save(update_fields=["input_price"])
        raw = sdk(live, world.chat_key).embeddings.with_raw_response.create(
            model="gem:gemini-embedding-001", input=["The quick brown fox", "jumps"], dimensions=32)
        result = raw.parse()
        assert [len(d.embedding) for d in result.data] == [32, 32]
        assert result.usage.prompt_tokens == 5 + 2  # ceil(19 / 4) + ceil(5 / 4): Google counts none
        sent = fake.requests[-1]
        assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        assert sent.headers["x-goog-api-key"] == KEY
        assert [r["content"]["parts"][0]["text"] for r in sent.body["requests"]] == ["The quick brown fox", "jumps"]
        assert all(r["outputDimensionality"] == 32 for r in sent.body["requests"])
        row = wait_usage(raw.headers["x-request-id"])
    assert (row.api, row.status, row.input_tokens, row.output_tokens, row.tokens_estimated) == (
        "embeddings", "ok", 7, 0, True)
    assert row.cost == (7 * Decimal("0.15") / Decimal(10**6)).quantize(CENT)


def test_vertex_sync_lists_google_s_priced_gemini_models_and_its_embedding_models(world):
    with FakeGemini() as fake:
        provider = add_provider(world.tenant, fake, name="vertex", provider_type="gemini", api_key="ya29.token",
                                base_url=fake.vertex_base_url)
        assert not fake.requests  # Vertex has no models.list for publishers/google: nothing is asked
    rows = {m.model_id: m for m in provider.models.all()}
    flash = rows["gemini-2.5-flash"]
    assert (flash.mode, flash.display_name, flash.context_length, flash.supports_tools, flash.supports_vision) == (
        ModelMode.CHAT, "Gemini 2.5 Flash", 1_048_576, True, True)
    assert (flash.input_price, flash.cached_input_price, flash.output_price, flash.price_source) == (
        IN, CACHED, OUT, "catalog")
    for model_id in ("text-embedding-005", "text-multilingual-embedding-002", "gemini-embedding-001"):
        assert (rows[model_id].mode, rows[model_id].context_length) == (ModelMode.EMBEDDING, 2048)
    assert (rows["gemini-embedding-001"].input_price, rows["gemini-embedding-001"].output_price) == (
        Decimal("0.15"), 0)
    assert rows["text-embedding-005"].input_price is None  # genai-prices does not know it: priced by hand
    # not chat models generateContent serves: speech, image output, Live; Anthropic's models on Vertex
    # (publishers/anthropic); retired 1.x; genai-prices' aliases that are no Vertex id
    assert not [m for m in rows if any(bit in m for bit in ("-tts", "-image", "live", "claude", "gemini-1.",
                                                             "gemini-pro", "gemini-flash-1"))]
    assert all(m.startswith(("gemini-", "text-")) for m in rows) and len(rows) > 5


def test_vertex_embeddings_with_a_minted_token_record_google_s_exact_token_count(world, live):
    with FakeGoogleOAuth() as oauth, FakeGemini(models=["text-embedding-005"]) as fake:
        fake.google_oauth = oauth
        provider = provider_create(owner=world.tenant, data={
            "name": "vertex", "provider_type": "gemini", "base_url": fake.vertex_base_url,
            "api_key": json.dumps(oauth.service_account()), "options": {"auth": "vertex"}})
        ProviderModel.objects.create(provider=provider, model_id="text-embedding-005", mode=ModelMode.EMBEDDING,
                                     input_price=Decimal("0.025"), output_price=Decimal(0))
        client = sdk(live, world.chat_key)
        raw = client.embeddings.with_raw_response.create(  # the openai SDK asks for base64
            model="vertex:text-embedding-005", input=["The quick brown fox", "jumps"], dimensions=24)
        result = raw.parse()
        assert [len(d.embedding) for d in result.data] == [24, 24]
        assert result.usage.prompt_tokens == 4 + 1  # Google's statistics.token_count, summed
        sent = fake.requests[-1]
        assert sent.path.endswith("/publishers/google/models/text-embedding-005:predict")
        assert sent.headers["authorization"] == f"Bearer {oauth.issued[-1]}"
        assert sent.body == {"instances": [{"content": "The quick brown fox"}, {"content": "jumps"}],
                             "parameters": {"outputDimensionality": 24}}
        row = wait_usage(raw.headers["x-request-id"])
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model="vertex:text-embedding-005", input=["x"] * 251)
        assert "at most 250 texts per request (got 251); split the input" in str(caught.value)
        assert len(fake.requests) == 1  # refused before it left
    assert (row.api, row.status, row.input_tokens, row.output_tokens, row.tokens_estimated) == (
        "embeddings", "ok", 5, 0, False)
    assert row.cost == (5 * Decimal("0.025") / Decimal(10**6)).quantize(CENT)
