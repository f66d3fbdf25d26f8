"""An Amazon Bedrock provider end to end against FakeBedrock, which verifies every SigV4
signature with botocore: the catalog from ListFoundationModels (text output, on-demand only)
priced from genai-prices' aws list, /v1/chat/completions plain and streamed (openai SDK) with
cache reads and writes priced exactly in the ledger, tool calls both ways, the Messages and
Responses doors through the chat translation, a Bedrock API key as a bearer token, throttling
that falls back, a too-long prompt, a stream reset and an exception mid-stream."""

import json
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from providers.fetchers.base import UpstreamError
from providers.models import ModelMode, Provider, ProviderModel
from providers.services import provider_create
from providers.sync import provider_sync
from tests.fakes import FakeBedrock, FakeOpenAI
from tests.utils.live import add_provider, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "AKIAFAKEACCESSKEY123:fakeSecretAccessKey/with+slash0123456789"
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
CENT = Decimal("0.000000000001")
# inputTokens (uncached), cache reads, cache writes, output
USAGE = {"prompt_tokens": 300, "cached_tokens": 1000, "cache_creation_tokens": 200, "completion_tokens": 50}
HELLO = [{"role": "user", "content": "Say hello"}]
# genai-prices (aws) for anthropic.claude-3-5-haiku-20241022-v1:0, USD per million tokens
IN, CACHED, WRITE, OUT = Decimal("0.8"), Decimal("0.08"), Decimal("1"), Decimal("4")


def expected_cost(uncached: int, read: int, written: int, output: int) -> Decimal:
    return ((uncached * IN + read * CACHED + written * WRITE + output * OUT) / Decimal(10**6)).quantize(CENT)


def bedrock(world, fake, **data) -> Provider:
    data.setdefault("options", {"region": "us-east-1"})
    return add_provider(world.tenant, fake, name="aws", provider_type="bedrock", api_key=KEY, **data)


SONNET = "anthropic.claude-sonnet-4-5-20250929-v1:0"
PROFILE_ONLY = {"inferenceTypesSupported": ["INFERENCE_PROFILE"]}


def test_catalog_sync_is_signed_keeps_on_demand_text_models_and_profiles_and_prices_them(world):
    models = [HAIKU, "amazon.nova-pro-v1:0",
              {"id": "amazon.titan-embed-text-v2:0", "outputModalities": ["EMBEDDING"], "inputModalities": ["TEXT"]},
              {"id": "cohere.embed-english-v3", "outputModalities": ["EMBEDDING"], "inputModalities": ["TEXT"]},
              {"id": f"{HAIKU}:200k", "inferenceTypesSupported": ["PROVISIONED"]},
              {"id": SONNET, **PROFILE_ONLY}, {"id": "amazon.nova-premier-v1:0", **PROFILE_ONLY},
              {"id": "cohere.embed-v4:0", "outputModalities": ["EMBEDDING"], **PROFILE_ONLY},
              {"id": "stability.sd3-large-v1:0", "outputModalities": ["IMAGE"]},
              {"id": "meta.llama3-70b-instruct-v1:0", "modelLifecycle": {"status": "LEGACY"}}]
    with FakeBedrock(models=models, api_key=KEY) as fake:
        fake.max_page_size = 2  # the fetcher asks for 1000 profiles a page; this server gives 2
        provider = bedrock(world, fake)
        listed = fake.requests_to("/foundation-models")
        assert len(listed) == 1
        assert listed[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAFAKEACCESSKEY123/")
        pages = fake.requests_to("/inference-profiles")
        assert [(r.query.get("type"), r.query.get("nextToken")) for r in pages] == [
            ("SYSTEM_DEFINED", None), ("SYSTEM_DEFINED", "2")]
        assert fake.verified == 3  # every request signed, query strings included
    provider.refresh_from_db()
    assert provider.sync_status == "ok", provider.last_sync_error
    rows = {m.model_id: m for m in ProviderModel.objects.filter(provider=provider)}
    assert set(rows) == {HAIKU, "amazon.nova-pro-v1:0", "amazon.titan-embed-text-v2:0", f"us.{SONNET}",
                         "us.amazon.nova-premier-v1:0", "cohere.embed-english-v3", "us.cohere.embed-v4:0"}
    for cohere in ("cohere.embed-english-v3", "us.cohere.embed-v4:0"):  # genai-prices' aws list has no Cohere
        assert (rows[cohere].mode, rows[cohere].input_price) == (ModelMode.EMBEDDING, None)
    sonnet = rows[f"us.{SONNET}"]
    assert (sonnet.display_name, sonnet.supports_vision, sonnet.input_price, sonnet.cache_write_price) == (
        "US Claude Sonnet 4 5 20250929", True, Decimal("3.3"), Decimal("4.125"))
    titan = rows["amazon.titan-embed-text-v2:0"]
    assert (titan.mode, titan.input_price, titan.output_price) == (ModelMode.EMBEDDING, Decimal("0.02"), Decimal(0))
    haiku = rows[HAIKU]
    assert (haiku.mode, haiku.supports_vision, haiku.supports_tools) == (ModelMode.CHAT, True, True)
    assert (haiku.input_price, haiku.cached_input_price, haiku.cache_write_price, haiku.output_price,
            haiku.price_source) == (IN, CACHED, WRITE, OUT, "catalog")
    assert haiku.display_name == "Anthropic Claude 3 5 Haiku 20241022"


def test_a_role_that_may_not_list_profiles_still_syncs_its_models(world):
    with FakeBedrock(models=[HAIKU, {"id": SONNET, **PROFILE_ONLY}], api_key=KEY) as fake:
        fake.set_fault("status", status=403, path="/inference-profiles",
                       message="User is not authorized to perform: bedrock:ListInferenceProfiles")
        provider = bedrock(world, fake)
    provider.refresh_from_db()
    assert provider.sync_status == "ok"
    assert set(ProviderModel.objects.filter(provider=provider).values_list("model_id", flat=True)) == {HAIKU}


def test_a_wrong_secret_fails_the_sync_with_aws_words(world):
    with FakeBedrock(api_key=KEY) as fake:
        provider = provider_create(owner=world.tenant, data={
            "name": "aws", "base_url": fake.base_url, "provider_type": "bedrock", "options": {"region": "us-east-1"},
            "api_key": KEY.replace("fakeSecret", "wrongSecret")})
        with pytest.raises(UpstreamError) as caught:
            provider_sync(provider=provider)
    assert caught.value.upstream_status == 403
    provider.refresh_from_db()
    assert provider.sync_status == "error" and "signature we calculated does not match" in provider.last_sync_error
    assert "wrongSecret" not in provider.last_sync_error


def test_chat_non_stream_and_stream_with_cache_tokens_priced_exactly(world, live):
    with FakeBedrock(models=[HAIKU], api_key=KEY, usage=USAGE, reply="one two three four") as fake:
        bedrock(world, fake)
        client = sdk(live, world.chat_key)
        raw = client.chat.completions.with_raw_response.create(
            model=f"aws:{HAIKU}", messages=[{"role": "system", "content": "Be brief."}, *HELLO],
            temperature=0.3, max_tokens=64)
        completion = raw.parse()
        assert completion.choices[0].message.content == "one two three four"
        assert completion.choices[0].finish_reason == "stop"
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1500, 50)
        assert completion.usage.prompt_tokens_details.cached_tokens == 1000
        sent = fake.requests[-1]
        assert sent.path == f"/model/{HAIKU}/converse"
        assert sent.body == {"system": [{"text": "Be brief."}],
                             "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
                             "inferenceConfig": {"maxTokens": 64, "temperature": 0.3}}
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.status, row.input_tokens, row.cached_input_tokens, row.output_tokens) == ("ok", 1500, 1000, 50)
        assert row.cost == expected_cost(300, 1000, 200, 50)

        stream = client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
        assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1500
        assert fake.requests[-1].path == f"/model/{HAIKU}/converse-stream"
        assert fake.verified == 4  # the sync's two lists, the answer, the stream
        row = wait_usage(stream.response.headers["x-request-id"])
    assert row.stream and row.status == "ok" and not row.tokens_estimated
    assert row.cost == expected_cost(300, 1000, 200, 50)


def test_titan_embeddings_through_the_gateway_are_priced(world, live):
    titan = {"id": "amazon.titan-embed-text-v2:0", "outputModalities": ["EMBEDDING"], "inputModalities": ["TEXT"]}
    with FakeBedrock(models=[titan], api_key=KEY, usage={"prompt_tokens": 5000}) as fake:
        bedrock(world, fake)
        raw = sdk(live, world.chat_key).embeddings.with_raw_response.create(
            model="aws:amazon.titan-embed-text-v2:0", input="hello there", dimensions=256)
        result = raw.parse()
        assert len(result.data[0].embedding) == 256 and result.usage.prompt_tokens == 5000
        assert fake.requests[-1].body == {"inputText": "hello there", "dimensions": 256}
        row = wait_usage(raw.headers["x-request-id"])
    assert (row.input_tokens, row.cost) == (5000, (5000 * Decimal("0.02") / Decimal(10**6)).quantize(CENT))


def test_cohere_embeddings_through_the_gateway_record_bedrock_s_token_count(world, live):
    cohere = {"id": "cohere.embed-v4:0", "outputModalities": ["EMBEDDING"], "inputModalities": ["TEXT", "IMAGE"]}
    with FakeBedrock(models=[cohere], api_key=KEY, usage={"prompt_tokens": 4200}) as fake:
        bedrock(world, fake)
        model = ProviderModel.objects.get(model_id="cohere.embed-v4:0")
        model.input_price, model.output_price = Decimal("0.12"), Decimal(0)  # USD per million: set by hand
        model.save(update_fields=["input_price", "output_price"])
        client = sdk(live, world.chat_key)
        raw = client.embeddings.with_raw_response.create(
            model="aws:cohere.embed-v4:0", input=["hello there", "general kenobi"], dimensions=256,
            extra_body={"input_type": "search_query"})
        result = raw.parse()
        assert [len(d.embedding) for d in result.data] == [256, 256] and result.usage.prompt_tokens == 4200
        assert fake.requests[-1].path == "/model/cohere.embed-v4:0/invoke"
        assert fake.requests[-1].body == {"texts": ["hello there", "general kenobi"], "input_type": "search_query",
                                          "embedding_types": ["float"], "output_dimension": 256}
        row = wait_usage(raw.headers["x-request-id"])
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model="aws:cohere.embed-v4:0", input=["x"] * 97)
        assert "at most 96 texts per request (got 97)" in str(caught.value)
    assert (row.input_tokens, row.tokens_estimated) == (4200, False)
    assert row.cost == (4200 * Decimal("0.12") / Decimal(10**6)).quantize(CENT)


def test_tool_calls_round_trip(world, live):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    with FakeBedrock(models=[HAIKU], api_key=KEY, reply="18 degrees",
                     tool_call={"id": "tooluse_abc", "arguments": {"city": "Paris"}}) as fake:
        bedrock(world, fake)
        client = sdk(live, world.chat_key)
        first = client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO, tools=tools)
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert (call.id, call.function.name, call.function.arguments) == (
            "tooluse_abc", "get_weather", '{"city":"Paris"}')
        streamed = list(client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO, tools=tools,
                                                       stream=True))
        deltas = [c.choices[0].delta.tool_calls[0] for c in streamed if c.choices and c.choices[0].delta.tool_calls]
        assert deltas[0].id == "tooluse_abc" and deltas[0].function.name == "get_weather"
        assert "".join(d.function.arguments or "" for d in deltas) == '{"city": "Paris"}'
        assert [c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason] == [
            "tool_calls"]
        second = client.chat.completions.create(model=f"aws:{HAIKU}", tools=tools, messages=[
            *HELLO, first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}])
        assert second.choices[0].message.content == "18 degrees"
        messages = fake.requests[-1].body["messages"]
    assert messages[1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}}]}
    assert messages[2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_abc", "content": [{"json": {"temp_c": 18}}], "status": "success"}}]}


def test_the_messages_and_responses_doors_reach_bedrock_through_chat(world, live):
    with FakeBedrock(models=[HAIKU], api_key=KEY, usage=USAGE, reply="Hi from Bedrock") as fake:
        bedrock(world, fake)
        claude = anthropic.Anthropic(base_url=live.url, api_key=world.chat_key, max_retries=0)
        raw = claude.messages.with_raw_response.create(
            model=f"aws:{HAIKU}", max_tokens=50, system="Be brief.", messages=HELLO, stop_sequences=["END"])
        message = raw.parse()
        sent = fake.requests[-1].body
        assert message.content[0].text == "Hi from Bedrock" and message.stop_reason == "end_turn"
        assert message.usage.cache_read_input_tokens == 1000 and message.usage.output_tokens == 50
        assert sent["system"] == [{"text": "Be brief."}]
        assert sent["inferenceConfig"] == {"maxTokens": 50, "stopSequences": ["END"]}
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.api, row.cost) == ("messages", expected_cost(300, 1000, 200, 50))
        with claude.messages.stream(model=f"aws:{HAIKU}", max_tokens=50, messages=HELLO) as stream:
            assert "".join(stream.text_stream) == "Hi from Bedrock"

        raw = sdk(live, world.chat_key).responses.with_raw_response.create(
            model=f"aws:{HAIKU}", input="Say hello", instructions="Be brief.")
        response = raw.parse()
        sent = fake.requests[-1].body
        row = wait_usage(raw.headers["x-request-id"])
    assert response.output_text == "Hi from Bedrock" and sent["system"] == [{"text": "Be brief."}]
    assert (row.api, row.cost) == ("responses", expected_cost(300, 1000, 200, 50))


def test_cache_control_markers_reach_bedrock_as_cache_points_from_chat_and_the_messages_door(world, live):
    mark = {"type": "ephemeral"}
    with FakeBedrock(models=[HAIKU], api_key=KEY, usage=USAGE, reply="cached") as fake:
        bedrock(world, fake)
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(model=f"aws:{HAIKU}", messages=[
            {"role": "system", "content": [{"type": "text", "text": "Long rules.", "cache_control": mark}]},
            {"role": "user", "content": [{"type": "text", "text": "Say hello", "cache_control": mark}]}])
        completion = raw.parse()
        sent = fake.requests[-1].body
        assert sent["system"] == [{"text": "Long rules."}, {"cachePoint": {"type": "default"}}]
        assert sent["messages"][0]["content"] == [{"text": "Say hello"}, {"cachePoint": {"type": "default"}}]
        assert completion.usage.prompt_tokens_details.cached_tokens == 1000
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.input_tokens, row.cached_input_tokens, row.cost) == (1500, 1000, expected_cost(300, 1000, 200, 50))

        claude = anthropic.Anthropic(base_url=live.url, api_key=world.chat_key, max_retries=0)
        raw = claude.messages.with_raw_response.create(
            model=f"aws:{HAIKU}", max_tokens=50, system=[{"type": "text", "text": "Be brief.", "cache_control": mark}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello", "cache_control": mark}]}])
        message = raw.parse()
        sent = fake.requests[-1].body
        assert sent["system"] == [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}]
        assert sent["messages"][0]["content"] == [{"text": "Say hello"}, {"cachePoint": {"type": "default"}}]
        assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (1000, 200)
        row = wait_usage(raw.headers["x-request-id"])
    assert (row.api, row.cost) == ("messages", expected_cost(300, 1000, 200, 50))


def test_a_provider_guardrail_is_sent_and_its_intervention_is_a_content_filter_stop(world, live):
    options = {"region": "us-east-1", "guardrail_identifier": "abcd1234efgh", "guardrail_version": "DRAFT",
               "guardrail_trace": "enabled"}
    with FakeBedrock(models=[HAIKU], api_key=KEY, usage=USAGE, reply="fine", guardrail_blocks="forbidden") as fake:
        bedrock(world, fake, options=options)
        client = sdk(live, world.chat_key)
        answer = client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO)
        assert answer.choices[0].message.content == "fine"
        assert fake.requests[-1].body["guardrailConfig"] == {
            "guardrailIdentifier": "abcd1234efgh", "guardrailVersion": "DRAFT", "trace": "enabled"}
        raw = client.chat.completions.with_raw_response.create(
            model=f"aws:{HAIKU}", messages=[{"role": "user", "content": "something forbidden"}])
        blocked = raw.parse()
        assert blocked.choices[0].finish_reason == "content_filter"
        assert blocked.choices[0].message.content == "Sorry, the model cannot answer this question."
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.status, row.cost) == ("ok", expected_cost(300, 1000, 200, 50))  # Bedrock bills the tokens
        stream = client.chat.completions.create(model=f"aws:{HAIKU}", messages=[
            {"role": "user", "content": "something forbidden"}], stream=True)
        assert [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason] == [
            "content_filter"]
        assert fake.requests[-1].path.endswith("/converse-stream") and "guardrailConfig" in fake.requests[-1].body


SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"


def priced(row, model_id: str) -> Decimal:
    """``row``'s cost at the catalog prices of ``model_id`` (uncached input + reads + writes + output)."""
    m = ProviderModel.objects.get(model_id=model_id)
    uncached = row.input_tokens - row.cached_input_tokens - row.cache_write_tokens
    return ((uncached * m.input_price + row.cached_input_tokens * m.cached_input_price
             + row.cache_write_tokens * m.cache_write_price + row.output_tokens * m.output_price)
            / Decimal(10**6)).quantize(CENT)


def test_reasoning_effort_turns_on_claude_thinking_and_the_reasoning_comes_back(world, live):
    with FakeBedrock(models=[SONNET_37], api_key=KEY, usage=USAGE, reply="42", reasoning="Six times seven.") as fake:
        bedrock(world, fake)
        client = sdk(live, world.chat_key)
        raw = client.chat.completions.with_raw_response.create(
            model=f"aws:{SONNET_37}", messages=HELLO, reasoning_effort="medium", max_tokens=10000)
        answer = raw.parse()
        message = answer.choices[0].message
        assert message.content == "42" and message.reasoning_content == "Six times seven."
        assert message.thinking_blocks == [{"type": "thinking", "thinking": "Six times seven.",
                                            "signature": "EqoBCkgIARABGAIiQFakeReasoningSignature+/="}]
        assert fake.requests[-1].body["additionalModelRequestFields"] == {
            "thinking": {"type": "enabled", "budget_tokens": 8192}}
        row = wait_usage(raw.headers["x-request-id"])
        assert (row.input_tokens, row.output_tokens) == (1500, 50) and row.cost == priced(row, SONNET_37)
        assert row.cost > 0

        stream = client.chat.completions.create(model=f"aws:{SONNET_37}", messages=HELLO, reasoning_effort="low",
                                                stream=True)
        deltas = [c.choices[0].delta for c in stream if c.choices]
        assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "Six times seven."
        assert "".join(d.content or "" for d in deltas) == "42"
        row = wait_usage(stream.response.headers["x-request-id"])
    assert row.stream and not row.tokens_estimated and row.cost == priced(row, SONNET_37)


def test_the_messages_door_thinks_through_bedrock_and_sends_the_signed_thinking_back_with_tool_results(world, live):
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    with FakeBedrock(models=[SONNET_37], api_key=KEY, usage=USAGE, reply="18 degrees", reasoning="Use the tool.",
                     tool_call={"id": "tooluse_1", "arguments": {"city": "Paris"}}) as fake:
        bedrock(world, fake)
        claude = anthropic.Anthropic(base_url=live.url, api_key=world.chat_key, max_retries=0)
        thinking = {"type": "enabled", "budget_tokens": 2048}
        first = claude.messages.create(model=f"aws:{SONNET_37}", max_tokens=20000, thinking=thinking,
                                       tools=tools, messages=HELLO)
        assert [b.type for b in first.content] == ["thinking", "tool_use"]
        assert first.content[0].signature == "EqoBCkgIARABGAIiQFakeReasoningSignature+/="
        assert fake.requests[-1].body["additionalModelRequestFields"] == {
            "thinking": {"type": "enabled", "budget_tokens": 2048}}  # the client's budget, exact
        history = [*HELLO, {"role": "assistant", "content": first.content},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tooluse_1", "content": "18C"}]}]
        with claude.messages.stream(model=f"aws:{SONNET_37}", max_tokens=20000, thinking=thinking, tools=tools,
                                    messages=history) as stream:
            final = stream.get_final_message()  # the fake refuses the turn unless its signed thinking leads it
        assert [b.type for b in final.content] == ["thinking", "text"] and final.content[1].text == "18 degrees"
        assert final.content[0].signature == "EqoBCkgIARABGAIiQFakeReasoningSignature+/="
        sent = fake.requests[-1].body["messages"][1]["content"]
        assert sent[0] == {"reasoningContent": {"reasoningText": {
            "text": "Use the tool.", "signature": "EqoBCkgIARABGAIiQFakeReasoningSignature+/="}}}


def test_a_bedrock_api_key_goes_as_a_bearer_token(world, live):
    with FakeBedrock(models=[HAIKU], auth="bearer", api_key="ABSKQmVkcm9ja0FQSUtleS1mYWtl", reply="bearer ok") as fake:
        add_provider(world.tenant, fake, name="awskey", provider_type="bedrock", api_key="ABSKQmVkcm9ja0FQSUtleS1mYWtl",
                     options={"region": "us-west-2", "auth": "bearer"})
        answer = sdk(live, world.chat_key).chat.completions.create(model=f"awskey:{HAIKU}", messages=HELLO)
        sent = fake.requests[-1]
    assert answer.choices[0].message.content == "bearer ok"
    assert sent.headers["authorization"] == "Bearer ABSKQmVkcm9ja0FQSUtleS1mYWtl" and "x-amz-date" not in sent.headers


def test_throttling_falls_back_and_alone_is_a_429(world, live):
    with FakeBedrock(models=[HAIKU], api_key=KEY) as fake, \
            FakeOpenAI(models=[HAIKU], reply="from the backup") as backup:
        bedrock(world, fake, priority=5, max_retries=0)
        fake.set_fault("status", status=429)
        client = sdk(live, world.chat_key)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO)
        assert "ThrottlingException: Too many requests" in caught.value.message
        add_provider(world.tenant, backup, name="backup", priority=1)
        raw = client.chat.completions.with_raw_response.create(model=HAIKU, messages=HELLO)
        assert raw.parse().choices[0].message.content == "from the backup"
        row = wait_usage(raw.headers["x-request-id"])
    assert row.attempts == 2 and row.status == "ok"


@pytest.mark.parametrize("fault, opts", [("status", {"status": 500}), ("status", {"status": 503}),
                                         ("reset", {}), ("malformed", {}),
                                         ("status", {"status": 429, "variant": "ModelNotReadyException"})])
def test_server_faults_are_retried(world, live, fault, opts):
    with FakeBedrock(models=[HAIKU], api_key=KEY, reply="recovered") as fake:
        bedrock(world, fake, max_retries=2)
        fake.set_fault(fault, times=1, **opts)
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(model=f"aws:{HAIKU}",
                                                                                 messages=HELLO)
        assert raw.parse().choices[0].message.content == "recovered"
        assert wait_usage(raw.headers["x-request-id"]).attempts == 2


def test_a_prompt_too_long_is_not_retried_and_says_so(world, live):
    with FakeBedrock(models=[HAIKU], api_key=KEY, context_limit=5) as fake:
        bedrock(world, fake, max_retries=3)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(live, world.chat_key).chat.completions.create(
                model=f"aws:{HAIKU}", messages=[{"role": "user", "content": "many words " * 20}])
        assert "Input is too long for requested model" in caught.value.message
        assert len(fake.requests_to(f"/model/{HAIKU}/converse")) == 1


def test_a_slow_upstream_times_out(world, live):
    with FakeBedrock(models=[HAIKU], api_key=KEY) as fake:
        bedrock(world, fake, max_retries=0, timeout_seconds=0.5)
        fake.set_fault("slow", delay=3)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO)
    assert caught.value.status_code == 504


@pytest.mark.parametrize("fault, opts, words", [
    ("reset", {"after_chunks": 3}, None),
    ("stream_error", {"after_chunks": 3, "variant": "modelStreamErrorException", "message": "model crashed"},
     "ModelStreamErrorException: model crashed"),
])
def test_a_stream_broken_after_the_first_bytes_ends_with_an_error_and_a_partial_row(world, live, fault, opts, words):
    with FakeBedrock(models=[HAIKU], api_key=KEY, reply="word " * 40, stream_chunks=10) as fake:
        bedrock(world, fake)
        fake.set_fault(fault, **opts)
        response = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                              json={"model": f"aws:{HAIKU}", "messages": HELLO, "stream": True}, timeout=10)
        assert response.status_code == 200
        assert "word word" in response.text and '"error"' in response.text
        assert words is None or words in response.text
        assert response.text.rstrip().endswith("data: [DONE]")
        row = wait_usage(response.headers["x-request-id"])
    assert row.status == "partial" and row.output_tokens > 0 and row.tokens_estimated


def test_response_format_answers_json_through_a_forced_tool_in_answers_streams_and_after_tool_calls(world, live):
    person = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": person, "strict": True}}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]
    with FakeBedrock(models=[HAIKU], api_key=KEY, usage=USAGE) as fake:
        bedrock(world, fake)
        client = sdk(live, world.chat_key)
        raw = client.chat.completions.with_raw_response.create(model=f"aws:{HAIKU}", messages=HELLO,
                                                               response_format=fmt)
        answer = raw.parse()
        assert json.loads(answer.choices[0].message.content) == {"name": "text", "age": 1}
        assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls
        assert fake.requests[-1].body["toolConfig"]["toolChoice"] == {"tool": {"name": "json_tool_call"}}
        assert wait_usage(raw.headers["x-request-id"]).cost == expected_cost(300, 1000, 200, 50)
        streamed = list(client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO, stream=True,
                                                       response_format={"type": "json_object"}))
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert json.loads(text) == {}  # json_object: any object
        assert [c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason] == ["stop"]

        fake.tool_call = {"id": "tooluse_1", "name": "lookup", "arguments": {"q": "Ada"}}
        first = client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO, tools=tools,
                                               response_format=fmt)
        assert first.choices[0].message.tool_calls[0].function.name == "lookup"
        second = client.chat.completions.create(model=f"aws:{HAIKU}", tools=tools, response_format=fmt, messages=[
            *HELLO, first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "Ada Lovelace, 36"}])
        assert json.loads(second.choices[0].message.content) == {"name": "text", "age": 1}

        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=f"aws:{HAIKU}", messages=HELLO, tools=tools, tool_choice="required",
                                           response_format=fmt)
        assert "cannot go with a tool_choice that forces a tool" in str(refused.value)
