"""Bedrock adapter: Chat Completions → Converse (system, roles, images, documents, tools, tool
calls and results, inferenceConfig), SigV4 signing through botocore (verified by FakeBedrock,
session tokens included) or a bearer API key, Converse answers and ConverseStream event-stream
frames back to OpenAI shape (split anywhere, corrupt frames, exceptions mid-stream), usage with
cache reads and writes, and AWS's errors (x-amzn-errortype, __type, too-long input)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from providers.adapters import bedrock as adapter
from providers.adapters.types import UpstreamFailure
from tests.fakes import FakeBedrock
from tests.fakes.bedrock import event, event_frame

from .helpers import (
    WEATHER_TOOL,
    chunks_of,
    feed_all,
    finish_reasons,
    make_deployment,
    run_stream,
    send,
    stream_text,
    stream_tool_calls,
    validate_completion,
)

KEY = "AKIAFAKEACCESSKEY123:fakeSecretAccessKey/with+slash0123456789"
TEMP_KEY = "ASIAFAKETEMPORARY123:anotherFakeSecret0123456789abcdefghij:FwoGZXIvYXdzEFakeSessionToken+/=="
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
HELLO = [{"role": "user", "content": "Hello"}]


def dep(base_url: str = "https://bedrock-runtime.us-east-1.amazonaws.com", *, api_key: str = KEY,
        model_id: str = MODEL, auth: str = "sigv4", region: str = "us-east-1"):
    return replace(make_deployment("bedrock", name="aws", base_url=base_url, api_key=api_key, model_id=model_id),
                   options=(("region", region), ("auth", auth)))


DEP = dep()


def build(body, stream=False, d=DEP):
    req = adapter.build_chat(d, body, stream=stream)
    return req, json.loads(req.body)


# ----------------------------------------------------------------------------- build_chat
def test_url_keeps_the_colon_encodes_slashes_and_signs_with_sigv4():
    req, sent = build({"model": "x", "messages": HELLO})
    assert req.url == f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{MODEL}/converse"
    assert sent == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}
    auth = req.headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIAFAKEACCESSKEY123/")
    assert "/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date, Signature=" in auth
    assert req.headers["X-Amz-Date"].endswith("Z") and "fakeSecret" not in json.dumps(req.headers)
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    req, _ = build({"messages": HELLO}, stream=True, d=dep(model_id=arn))
    assert req.url.endswith("/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile%2Fabc123"
                            "/converse-stream")
    assert req.headers["Accept"] == "application/vnd.amazon.eventstream"


def test_a_session_token_is_sent_and_signed_and_bearer_sends_the_key_unsigned():
    req, _ = build({"messages": HELLO}, d=dep(api_key=TEMP_KEY))
    assert req.headers["X-Amz-Security-Token"] == "FwoGZXIvYXdzEFakeSessionToken+/=="
    assert "x-amz-date;x-amz-security-token" in req.headers["Authorization"]
    req, _ = build({"messages": HELLO}, d=dep(api_key="ABSKQmVkcm9ja0FQSUtleS1mYWtl", auth="bearer"))
    assert req.headers["Authorization"] == "Bearer ABSKQmVkcm9ja0FQSUtleS1mYWtl" and "X-Amz-Date" not in req.headers


def test_a_key_that_is_not_an_access_key_pair_is_an_auth_failure_without_the_key():
    with pytest.raises(UpstreamFailure) as caught:
        build({"messages": HELLO}, d=dep(api_key="just-one-secret-token"))
    assert caught.value.kind == "auth" and "ACCESS_KEY_ID:SECRET_ACCESS_KEY" in caught.value.message
    assert "just-one-secret-token" not in caught.value.message


def test_system_roles_tools_and_inference_config():
    _, sent = build({
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "tooluse_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": '{"temp_c": 18}'},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": "sunny"},
            {"role": "user", "content": ""},
        ],
        "tools": [WEATHER_TOOL], "tool_choice": "required",
        "max_completion_tokens": 200, "max_tokens": 999, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "top_k": 40,
    })
    assert sent["system"] == [{"text": "Be terse."}, {"text": "Use metric."}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"text": "Weather?"},
                                     {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather",
                                                       "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"temp_c": 18}}], "status": "success"}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "sunny"}], "status": "success"}}]},
    ]
    assert sent["inferenceConfig"] == {"maxTokens": 200, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Current weather for a city",
        "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]}}}], "toolChoice": {"any": {}}}
    assert sent["additionalModelRequestFields"] == {"top_k": 40}  # an Anthropic model takes top_k
    _, nova = build({"messages": HELLO, "top_k": 40, "tools": [WEATHER_TOOL],
                     "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
                    d=dep(model_id="amazon.nova-pro-v1:0"))
    assert "additionalModelRequestFields" not in nova and nova["toolConfig"]["toolChoice"] == {
        "tool": {"name": "get_weather"}}
    _, none = build({"messages": HELLO, "tools": [WEATHER_TOOL], "tool_choice": "none"})
    assert "toolConfig" not in none


@pytest.mark.parametrize("part, words", [
    ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, "base64 data: URL"),
    ({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}, "'image/tiff' is not supported"),
    ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "'input_audio' are not supported"),
])
def test_unsupported_content_is_a_bad_request_that_says_why(part, words):
    with pytest.raises(UpstreamFailure) as caught:
        build({"messages": [{"role": "user", "content": [part]}]})
    assert caught.value.kind == "bad_request" and words in caught.value.message


def test_a_pdf_file_part_becomes_a_named_document_block():
    _, sent = build({"messages": [{"role": "user", "content": [{"type": "file", "file": {
        "filename": "q3_report.v2.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}]}]})
    assert sent["messages"][0]["content"] == [{"document": {"format": "pdf", "name": "q3 report v2",
                                                            "source": {"bytes": "JVBERi0="}}}]


# ----------------------------------------------------------------------------- answers
def test_parse_chat_text_tool_use_stop_reasons_and_cache_usage():
    body = json.dumps({"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Oslo"}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 1242, "cacheReadInputTokens": 1000,
                  "cacheWriteInputTokens": 200}, "metrics": {"latencyMs": 600}}).encode()
    result = adapter.parse_chat(DEP, body, request_id="r1")
    obj = validate_completion(result.body)
    message = obj["choices"][0]["message"]
    assert message["content"] == "Let me check." and obj["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [{"id": "tooluse_9", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]
    assert message["reasoning_content"] == "hmm"
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    usage = result.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens, usage.output_tokens) == (
        1230, 1000, 200, 12)
    assert obj["usage"]["prompt_tokens"] == 1230 and obj["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 1000, "cache_write_tokens": 200}
    for reason, finish in (("max_tokens", "length"), ("guardrail_intervened", "content_filter"),
                           ("stop_sequence", "stop"), ("model_context_window_exceeded", "length")):
        body = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
                           "stopReason": reason}).encode()
        result = adapter.parse_chat(DEP, body, request_id="r2")
        assert json.loads(result.body)["choices"][0]["finish_reason"] == finish and result.usage.estimated


@pytest.mark.parametrize("body", [b'{"output": {"message": {"content": [{"text": "tru', b'{"foo": 1}', b"[1]"])
def test_unreadable_answers_are_retryable_bad_responses(body):
    with pytest.raises(UpstreamFailure) as caught:
        adapter.parse_chat(DEP, body, request_id="r")
    assert caught.value.kind == "bad_response" and caught.value.retryable


# ----------------------------------------------------------------------------- streams
def _stream_bytes(*frames: bytes) -> bytes:
    return b"".join(frames)


TEXT_STREAM = _stream_bytes(
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "thin"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "king"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hel"}, "p": "abc"}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "lo!"}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("messageStop", {"stopReason": "end_turn"}),
    event("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 57, "cacheReadInputTokens": 50},
                       "metrics": {"latencyMs": 9}}),
)


@pytest.mark.parametrize("step", [None, 1, 7, 64])
def test_stream_text_split_anywhere(step):
    translator = adapter.stream_translator(DEP, request_id="s1", created=1)
    chunks = chunks_of(feed_all(translator, TEXT_STREAM, step))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert stream_text(chunks) == "Hello!" and finish_reasons(chunks) == ["stop"]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "thinking"
    assert [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d] == [
        [{"type": "thinking", "thinking": "thinking", "signature": "c2ln"}]]  # once, whole, when the block ends
    assert translator.finish_reason == "stop" and translator.text_chars == 8 + 6  # reasoning is output too
    assert (translator.usage.input_tokens, translator.usage.cached_input_tokens, translator.usage.output_tokens) == (
        55, 50, 2)


def test_stream_tool_use_blocks_become_tool_call_deltas():
    data = _stream_bytes(
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1",
                                                                                    "name": "get_weather"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
    )
    translator = adapter.stream_translator(DEP, request_id="s2", created=1)
    chunks = chunks_of(feed_all(translator, data, 5))
    assert stream_tool_calls(chunks) == {0: {"id": "tu_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}}
    assert stream_text(chunks) == "Checking." and finish_reasons(chunks) == ["tool_calls"]
    assert translator.usage is None  # no metadata event: the engine estimates


def test_chunks_before_an_exception_in_the_same_read_are_relayed_first():
    data = _stream_bytes(event("messageStart", {"role": "assistant"}),
                         event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "partial"}}),
                         event_frame({":exception-type": "modelStreamErrorException", ":message-type": "exception"},
                                     b'{"message":"model crashed","originalStatusCode":500}'))
    translator = adapter.stream_translator(DEP, request_id="p", created=1)
    assert stream_text(chunks_of(translator.feed(data))) == "partial"
    with pytest.raises(UpstreamFailure) as caught:
        translator.finish()
    assert caught.value.kind == "server_error" and "ModelStreamErrorException: model crashed" in caught.value.message


def test_stream_exception_frames_and_corruption_raise():
    throttled = _stream_bytes(event("messageStart", {"role": "assistant"}), event_frame(
        {":exception-type": "throttlingException", ":content-type": "application/json", ":message-type": "exception"},
        b'{"message":"Too many tokens, please wait before trying again."}'))
    with pytest.raises(UpstreamFailure) as caught:
        feed_all(adapter.stream_translator(DEP, request_id="e", created=1), throttled)
    assert (caught.value.kind, caught.value.retryable) == ("rate_limit", True)
    assert "ThrottlingException: Too many tokens" in caught.value.message
    too_long = event_frame({":exception-type": "validationException", ":message-type": "exception"},
                           b'{"message":"Input is too long for requested model."}')
    with pytest.raises(UpstreamFailure) as caught:
        feed_all(adapter.stream_translator(DEP, request_id="e", created=1), too_long)
    assert caught.value.kind == "context_window" and not caught.value.retryable
    frame = bytearray(event("messageStart", {"role": "assistant"}))
    frame[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    with pytest.raises(UpstreamFailure) as caught:
        feed_all(adapter.stream_translator(DEP, request_id="e", created=1), bytes(frame))
    assert caught.value.kind == "bad_response" and "corrupt event-stream frame" in caught.value.message
    cut = TEXT_STREAM[: TEXT_STREAM.index(b"messageStop") - 40]
    with pytest.raises(UpstreamFailure) as caught:
        feed_all(adapter.stream_translator(DEP, request_id="e", created=1), cut)
    assert caught.value.kind == "connection" and "ended before the answer was complete" in caught.value.message


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("status, headers, body, kind, retryable", [
    (429, {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"},
     b'{"message":"Too many requests, please wait before trying again."}', "rate_limit", True),
    (400, {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/"},
     b'{"message":"The model returned the following errors: temperature: range: 0..1"}', "bad_request", False),
    (400, {}, b'{"__type":"com.amazon.coral.validate#ValidationException","message":"Input is too long for '
              b'requested model."}', "context_window", False),
    (400, {"x-amzn-errortype": "ValidationException"},
     b'{"message":"prompt is too long: 250000 tokens > 200000 maximum"}', "context_window", False),
    (403, {"x-amzn-errortype": "AccessDeniedException:http://internal.amazon.com/"},
     b'{"message":"You don\'t have access to the model with the specified model ID."}', "auth", False),
    (429, {"x-amzn-errortype": "ModelNotReadyException"}, b'{"message":"Model is not ready"}', "server_error", True),
    (503, {"x-amzn-errortype": "ServiceUnavailableException"}, b'{"message":"Unavailable"}', "server_error", True),
    (500, {"x-amzn-errortype": "InternalServerException"}, b'{"message":"boom"}', "server_error", True),
    (404, {"x-amzn-errortype": "ResourceNotFoundException"}, b'{"message":"Model not found"}', "not_found", False),
    (502, {}, b"<html>bad gateway</html>", "server_error", True),
])
def test_errors_are_classified_by_aws_exception_name(status, headers, body, kind, retryable):
    failure = adapter.parse_error(DEP, status, headers, body)
    assert (failure.kind, failure.retryable, failure.status) == (kind, retryable, status)
    assert failure.message.startswith(f"aws answered {status}")


def test_an_error_quoting_the_secret_key_does_not_repeat_it():
    secret = KEY.split(":")[1]
    failure = adapter.parse_error(DEP, 403, {"x-amzn-errortype": "InvalidSignatureException"},
                                  json.dumps({"message": f"signed with {secret}"}).encode())
    assert secret not in failure.message and failure.kind == "auth"


# ----------------------------------------------------------------------------- against FakeBedrock
def test_round_trips_against_the_fake_verify_the_signature():
    with FakeBedrock(api_key=TEMP_KEY, reply="Hi there friend", usage={"prompt_tokens": 11, "cached_tokens": 100,
                                                                       "cache_creation_tokens": 20}) as fake:
        d = dep(fake.base_url, api_key=TEMP_KEY)
        response = send(adapter.build_chat(d, {"messages": HELLO, "max_tokens": 5}, stream=False))
        assert response.status_code == 200, response.text
        result = adapter.parse_chat(d, response.content, request_id="f1")
        assert json.loads(result.body)["choices"][0]["message"]["content"] == "Hi there friend"
        assert (result.usage.input_tokens, result.usage.cached_input_tokens, result.usage.cache_write_tokens) == (
            131, 100, 20)
        translator = adapter.stream_translator(d, request_id="f2", created=1)
        chunks = chunks_of(run_stream(adapter.build_chat(d, {"messages": HELLO}, stream=True), translator))
        assert stream_text(chunks) == "Hi there friend" and translator.usage.input_tokens == 131
        assert fake.verified == 2
        wrong = send(adapter.build_chat(dep(fake.base_url, api_key=TEMP_KEY.replace("another", "ANOTHER")),
                                        {"messages": HELLO}, stream=False))
        assert wrong.status_code == 403 and wrong.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
        other_region = send(adapter.build_chat(dep(fake.base_url, api_key=TEMP_KEY, region="eu-west-1"),
                                               {"messages": HELLO}, stream=False))
        assert other_region.status_code == 403 and "us-east-1/bedrock" in other_region.json()["message"]
        failure = adapter.parse_error(d, wrong.status_code, dict(wrong.headers), wrong.content)
        assert failure.kind == "auth" and "InvalidSignatureException" in failure.message


def test_the_fake_refuses_what_converse_refuses():
    with FakeBedrock(api_key=KEY) as fake:
        d = dep(fake.base_url)
        bad = send(adapter.build_chat(d, {"messages": [{"role": "assistant", "content": "first"}]}, stream=False))
        assert bad.status_code == 400 and "must alternate between user and assistant" in bad.json()["message"]
        assert bad.headers["x-amzn-errortype"].startswith("ValidationException:")
        assert adapter.parse_error(d, 400, dict(bad.headers), bad.content).kind == "bad_request"


# ----------------------------------------------------------------------------- embeddings
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
COHERE_V4 = "us.cohere.embed-v4:0"


def test_cohere_embeddings_send_every_text_in_one_signed_invoke():
    req = adapter.build_embeddings(dep(model_id=COHERE), {"input": ["one", "two"], "encoding_format": "base64"})
    assert req.url == f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{COHERE}/invoke"
    assert json.loads(req.body) == {"texts": ["one", "two"], "input_type": "search_document",
                                    "embedding_types": ["float"]}
    assert req.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    v4 = json.loads(adapter.build_embeddings(dep(model_id=COHERE_V4), {
        "input": "q", "dimensions": 256, "input_type": "search_query"}).body)
    assert v4 == {"texts": ["q"], "input_type": "search_query", "embedding_types": ["float"], "output_dimension": 256}


@pytest.mark.parametrize("answer", [{"embeddings": {"float": [[0.1], [0.2]]}, "response_type": "embeddings_by_type"},
                                    {"embeddings": [[0.1], [0.2]], "response_type": "embeddings_floats"}])
def test_cohere_embeddings_take_both_answer_shapes_and_the_header_s_exact_count(answer):
    body, usage = adapter.parse_embeddings(dep(model_id=COHERE), json.dumps(answer).encode(),
                                           request={"input": ["a", "b"]},
                                           headers={"x-amzn-bedrock-input-token-count": "9"})
    out = json.loads(body)
    assert [d["embedding"] for d in out["data"]] == [[0.1], [0.2]] and [d["index"] for d in out["data"]] == [0, 1]
    assert (usage.input_tokens, usage.estimated) == (9, False)
    assert out["usage"] == {"prompt_tokens": 9, "total_tokens": 9}


def test_cohere_embeddings_without_the_count_header_are_estimated_and_marked():
    _, usage = adapter.parse_embeddings(dep(model_id=COHERE), b'{"embeddings": [[1.0]]}',
                                        request={"input": "abcdefgh"}, headers={})
    assert (usage.input_tokens, usage.estimated) == (2, True)
    for raw in (b'{"embeddings": {"int8": [[1]]}}', b'{"embeddings": []}', b"[]"):
        with pytest.raises(UpstreamFailure) as caught:
            adapter.parse_embeddings(dep(model_id=COHERE), raw, request={"input": "x"}, headers={})
        assert caught.value.kind == "bad_response"


def test_cohere_embeddings_against_the_fake():
    with FakeBedrock(api_key=KEY) as fake:
        d = dep(fake.base_url, model_id="cohere.embed-v4:0")
        request = {"input": ["hello there", "general kenobi you are"], "dimensions": 512}
        response = send(adapter.build_embeddings(d, request))
        assert response.status_code == 200, response.text
        body, usage = adapter.parse_embeddings(d, response.content, request=request,
                                               headers={k.lower(): v for k, v in response.headers.items()})
        assert [len(v["embedding"]) for v in json.loads(body)["data"]] == [512, 512]
        assert (usage.input_tokens, usage.estimated) == (2 + 4, False)
        assert fake.verified == 1


def test_titan_embeddings_are_one_signed_invoke_per_text():
    req = adapter.build_embeddings(dep(model_id=TITAN), {"input": ["hello world"], "dimensions": 256})
    assert req.url == f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{TITAN}/invoke"
    assert json.loads(req.body) == {"inputText": "hello world", "dimensions": 256}
    assert req.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    body, usage = adapter.parse_embeddings(dep(model_id=TITAN), b'{"embedding": [0.1, -0.2], "inputTextTokenCount": 3}')
    assert json.loads(body) == {"object": "list", "model": TITAN, "usage": {"prompt_tokens": 3, "total_tokens": 3},
                                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}]}
    assert usage.input_tokens == 3 and not usage.estimated


@pytest.mark.parametrize("model, body, words", [
    (TITAN, {"input": ["a", "b"]}, "one non-empty text per request"),
    (TITAN, {"input": "a", "dimensions": 300}, "'dimensions' is 256, 512 or 1024"),
    ("amazon.titan-embed-text-v1", {"input": "a", "dimensions": 256}, "for Titan Text Embeddings V2 only"),
    ("mistral.mistral-embed", {"input": "a"}, "Amazon Titan text embeddings (amazon.titan-embed-text-*) and "
                                               "Cohere Embed (cohere.embed-*) only"),
    (COHERE, {"input": ["a"] * 97}, "at most 96 texts per request (got 97); split the input"),
    (COHERE, {"input": [1, 2]}, "a list of non-empty strings"),
    (COHERE, {"input": "a", "dimensions": 512}, "for Cohere Embed v4 only (v3 models answer 1024)"),
    (COHERE_V4, {"input": "a", "dimensions": 300}, "'dimensions' is 256, 512, 1024 or 1536"),
    (COHERE, {"input": "a", "input_type": "query"}, "'input_type' is one of search_document, search_query"),
])
def test_embedding_requests_the_model_cannot_take_are_bad_requests(model, body, words):
    with pytest.raises(UpstreamFailure) as caught:
        adapter.build_embeddings(dep(model_id=model), body)
    assert caught.value.kind == "bad_request" and words in caught.value.message


def test_titan_embeddings_against_the_fake():
    with FakeBedrock(api_key=KEY, usage={"prompt_tokens": 7}) as fake:
        d = dep(fake.base_url, model_id=TITAN)
        response = send(adapter.build_embeddings(d, {"input": "hello there", "dimensions": 512}))
        assert response.status_code == 200, response.text
        body, usage = adapter.parse_embeddings(d, response.content)
        assert len(json.loads(body)["data"][0]["embedding"]) == 512 and usage.input_tokens == 7
        assert fake.verified == 1


# ----------------------------------------------------------------------------- prompt caching
EPHEMERAL = {"type": "ephemeral"}
SONNET_37 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"


def test_cache_control_markers_become_cache_points_after_what_they_mark():
    body = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Long rules.", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [{"type": "text", "text": "Doc"},
                                     {"type": "text", "text": "more", "cache_control": {**EPHEMERAL, "ttl": "1h"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "18C", "cache_control": EPHEMERAL},
        {"role": "user", "content": "And now?", "cache_control": {"type": "persistent"}}],  # not a marker we know
        "tools": [{**WEATHER_TOOL, "cache_control": EPHEMERAL}]}
    _, sent = build(body, d=dep(model_id=SONNET_37))
    assert sent["system"] == [{"text": "Long rules."}, {"cachePoint": {"type": "default"}}]
    assert sent["messages"][0]["content"] == [{"text": "Doc"}, {"text": "more"},
                                              {"cachePoint": {"type": "default", "ttl": "1h"}}]
    assert sent["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "18C"}], "status": "success"}},
        {"cachePoint": {"type": "default"}}, {"text": "And now?"}]
    assert sent["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default"}}


@pytest.mark.parametrize("model", ["anthropic.claude-3-haiku-20240307-v1:0", "meta.llama3-70b-instruct-v1:0",
                                   "anthropic.claude-3-5-sonnet-20240620-v1:0"])
def test_markers_are_dropped_for_models_that_do_not_cache(model):
    body = {"messages": [{"role": "system", "content": "Rules.", "cache_control": EPHEMERAL},
                         {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": EPHEMERAL}]}]}
    _, sent = build(body, d=dep(model_id=model))
    assert sent["system"] == [{"text": "Rules."}] and sent["messages"][0]["content"] == [{"text": "Hi"}]
    assert adapter.caching("amazon.nova-pro-v1:0") and adapter.caching(SONNET_37)


def test_cache_points_are_accepted_by_the_fake_and_refused_for_a_model_without_caching():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": EPHEMERAL}]}]}
    with FakeBedrock(api_key=KEY, reply="hello") as fake:
        resp = send(adapter.build_chat(dep(fake.base_url, model_id=SONNET_37), body, stream=False))
        assert resp.status_code == 200, resp.text
        assert fake.last_request.body["messages"][0]["content"][-1] == {"cachePoint": {"type": "default"}}
        # what the fake refuses, as Bedrock does, had the adapter sent it
        sent = {"messages": [{"role": "user", "content": [{"text": "Hi"}, {"cachePoint": {"type": "default"}}]}]}
        assert "unsupported model" in fake.invalid_cache_points(sent, "meta.llama3-70b-instruct-v1:0")
        first = {"messages": [{"role": "user", "content": [{"cachePoint": {"type": "default"}}, {"text": "Hi"}]}]}
        assert "cannot be the first block" in fake.invalid_cache_points(first, SONNET_37)


# ----------------------------------------------------------------------------- guardrails
def guarded(d=DEP, trace=""):
    options = (*d.options, ("guardrail_identifier", "abcd1234efgh"), ("guardrail_version", "2"))
    return replace(d, options=(*options, ("guardrail_trace", trace)) if trace else options)


def test_a_provider_guardrail_goes_on_converse_and_converse_stream():
    for stream in (False, True):
        _, sent = build({"messages": HELLO}, stream=stream, d=guarded(trace="enabled"))
        assert sent["guardrailConfig"] == {"guardrailIdentifier": "abcd1234efgh", "guardrailVersion": "2",
                                           "trace": "enabled"}
    assert build({"messages": HELLO}, d=guarded())[1]["guardrailConfig"] == {
        "guardrailIdentifier": "abcd1234efgh", "guardrailVersion": "2"}
    assert "guardrailConfig" not in build({"messages": HELLO})[1]


def test_a_guardrail_intervening_is_a_content_filter_stop_in_answers_and_streams():
    with FakeBedrock(api_key=KEY, guardrail_blocks="forbidden") as fake:
        d = guarded(dep(fake.base_url), trace="enabled")
        body = {"messages": [{"role": "user", "content": "something forbidden"}]}
        resp = send(adapter.build_chat(d, body, stream=False))
        assert resp.status_code == 200, resp.text
        answer = validate_completion(adapter.parse_chat(d, resp.content, request_id="g1").body)
        assert answer["choices"][0]["finish_reason"] == "content_filter"
        assert answer["choices"][0]["message"]["content"] == "Sorry, the model cannot answer this question."
        chunks = chunks_of(run_stream(adapter.build_chat(d, body, stream=True),
                                      adapter.stream_translator(d, request_id="g2", created=1)))
        assert finish_reasons(chunks) == ["content_filter"]
        assert fake.requests[-1].body["guardrailConfig"]["guardrailIdentifier"] == "abcd1234efgh"


# ----------------------------------------------------------------------------- reasoning
SONNET_4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"


@pytest.mark.parametrize(("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 8192),
                                                ("high", 24576)])
def test_reasoning_effort_becomes_claude_s_thinking_budget(effort, budget):
    _, sent = build({"messages": HELLO, "reasoning_effort": effort, "max_tokens": 30000}, d=dep(model_id=SONNET_4))
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": budget}}
    assert sent["inferenceConfig"] == {"maxTokens": 30000}
    _, sent = build({"messages": HELLO, "reasoning_effort": effort}, d=dep(model_id=SONNET_4))
    assert sent["inferenceConfig"] == {"maxTokens": budget + 8192}  # room for the answer after the thinking


def test_reasoning_effort_is_dropped_where_claude_cannot_think_and_refused_when_it_cannot_fit():
    for model in (MODEL, "amazon.nova-pro-v1:0", "anthropic.claude-3-5-sonnet-20241022-v2:0"):
        _, sent = build({"messages": HELLO, "reasoning_effort": "high"}, d=dep(model_id=model))
        assert "additionalModelRequestFields" not in sent and "inferenceConfig" not in sent
    assert "additionalModelRequestFields" not in build({"messages": HELLO, "reasoning_effort": "none"},
                                                       d=dep(model_id=SONNET_4))[1]
    for body, words in (({"reasoning_effort": "high", "max_tokens": 2000}, "max_tokens (2000) must be greater than "
                                                                           "the thinking budget"),
                        ({"reasoning_effort": "low", "temperature": 0.2}, "no temperature (other than 1) or top_k"),
                        ({"reasoning_effort": "max"}, "reasoning_effort must be one of none, minimal, low"),
                        ({"thinking": {"type": "enabled", "budget_tokens": 500}}, "at least 1024 (got 500)"),
                        ({"reasoning_effort": "low", "tools": [WEATHER_TOOL], "tool_choice": "required"},
                         "cannot think while tool_choice forces a tool")):
        with pytest.raises(UpstreamFailure) as caught:
            build({"messages": HELLO, **body}, d=dep(model_id=SONNET_4))
        assert caught.value.kind == "bad_request" and words in caught.value.message


def test_an_anthropic_thinking_object_sets_the_budget_exactly_and_wins_over_the_effort():
    body = {"messages": HELLO, "reasoning_effort": "high", "max_tokens": 9000,
            "thinking": {"type": "enabled", "budget_tokens": 3000}}
    _, sent = build(body, d=dep(model_id=SONNET_4))
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 3000}}
    _, sent = build({**body, "thinking": {"type": "disabled"}}, d=dep(model_id=SONNET_4))
    assert "additionalModelRequestFields" not in sent


def test_thinking_blocks_sent_back_lead_the_assistant_turn_and_a_turn_without_them_turns_thinking_off():
    call = {"id": "tu1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    history = [*HELLO, {"role": "assistant", "content": None, "tool_calls": [call], "thinking_blocks": [
        {"type": "thinking", "thinking": "hmm", "signature": "c2ln"}, {"type": "redacted_thinking", "data": "ZW5j"}]},
        {"role": "tool", "tool_call_id": "tu1", "content": "18C"}]
    _, sent = build({"messages": history, "tools": [WEATHER_TOOL], "reasoning_effort": "low"},
                    d=dep(model_id=SONNET_4))
    assert sent["messages"][1]["content"][:2] == [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "c2ln"}}},
        {"reasoningContent": {"redactedContent": "ZW5j"}}]
    assert sent["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 1024
    del history[1]["thinking_blocks"]  # a client that kept only the calls: Claude would refuse thinking now
    _, sent = build({"messages": history, "tools": [WEATHER_TOOL], "reasoning_effort": "low"},
                    d=dep(model_id=SONNET_4))
    assert "additionalModelRequestFields" not in sent


def test_a_thinking_tool_conversation_round_trips_through_the_fake_with_its_signature():
    with FakeBedrock(api_key=KEY, reasoning="Weather needs a tool.", reply="18 degrees",
                     tool_call={"id": "tu1", "arguments": {"city": "Oslo"}}) as fake:
        d = dep(fake.base_url, model_id=SONNET_4)
        body = {"messages": HELLO, "tools": [WEATHER_TOOL], "reasoning_effort": "medium"}
        first = validate_completion(adapter.parse_chat(
            d, send(adapter.build_chat(d, body, stream=False)).content, request_id="t1").body)["choices"][0]["message"]
        assert first["reasoning_content"] == "Weather needs a tool." and first["tool_calls"][0]["id"] == "tu1"
        history = [*HELLO, {k: first[k] for k in ("role", "content", "tool_calls", "thinking_blocks")},
                   {"role": "tool", "tool_call_id": "tu1", "content": "18C"}]
        resp = send(adapter.build_chat(d, {**body, "messages": history}, stream=True))
        assert resp.status_code == 200, resp.text  # the fake checks the signed block leads the turn
        chunks = chunks_of(feed_all(adapter.stream_translator(d, request_id="t2", created=1), resp.content))
        assert stream_text(chunks) == "18 degrees"
        assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"]) == (
            "Weather needs a tool.")


# ----------------------------------------------------------------------------- response_format
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
AS_PERSON = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


def test_response_format_becomes_a_forced_tool_whose_schema_is_the_json_schema():
    _, sent = build({"messages": HELLO, "response_format": AS_PERSON})
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "json_tool_call", "description": "Respond with the 'person' JSON: this tool's input is the answer.",
        "inputSchema": {"json": PERSON}}}], "toolChoice": {"tool": {"name": "json_tool_call"}}}
    _, sent = build({"messages": HELLO, "response_format": {"type": "json_object"}})
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}
    assert "toolConfig" not in build({"messages": HELLO, "response_format": {"type": "text"}})[1]
    # beside the client's tools: any tool, so the model may call one of them or answer
    _, sent = build({"messages": HELLO, "response_format": AS_PERSON, "tools": [WEATHER_TOOL]})
    assert [t["toolSpec"]["name"] for t in sent["toolConfig"]["tools"]] == ["get_weather", "json_tool_call"]
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    _, sent = build({"messages": HELLO, "response_format": AS_PERSON, "tools": [WEATHER_TOOL], "tool_choice": "none"})
    assert [t["toolSpec"]["name"] for t in sent["toolConfig"]["tools"]] == ["json_tool_call"]


@pytest.mark.parametrize(("extra", "words"), [
    ({"tools": [WEATHER_TOOL], "tool_choice": "required"}, "cannot go with a tool_choice that forces a tool"),
    ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     "cannot go with a tool_choice that forces a tool"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "needs \"json_schema\""),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}},
     "must describe an object"),
    ({"response_format": {"type": "yaml"}}, "response_format must be"),
    ({"tools": [{"type": "function", "function": {"name": "json_tool_call"}}]}, "rename your tool"),
    ({"reasoning_effort": "low"}, "leave out reasoning_effort (or thinking) or response_format"),
])
def test_what_json_mode_cannot_do_is_a_clear_bad_request(extra, words):
    d = dep(model_id="us.anthropic.claude-sonnet-4-20250514-v1:0")
    with pytest.raises(UpstreamFailure) as caught:
        adapter.build_chat(d, {"messages": HELLO, "response_format": AS_PERSON, **extra}, stream=False)
    assert caught.value.kind == "bad_request" and words in caught.value.message


def test_the_json_tool_s_input_is_the_answer_and_a_client_tool_stays_a_call():
    answer = {"output": {"message": {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "t1", "name": "json_tool_call", "input": {"name": "Ada", "age": 36}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 5, "outputTokens": 7}}
    request = {"messages": HELLO, "response_format": AS_PERSON}
    body = validate_completion(adapter.parse_chat(DEP, json.dumps(answer).encode(), request_id="j",
                                                  request=request).body)
    choice = body["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ('{"name":"Ada","age":36}', "stop")
    assert "tool_calls" not in choice["message"]
    # without response_format, a tool of that name is the client's own
    plain = validate_completion(adapter.parse_chat(DEP, json.dumps(answer).encode(), request_id="j").body)
    assert plain["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "json_tool_call"


def test_answers_and_streams_against_the_fake():
    with FakeBedrock(api_key=KEY) as fake:
        d = dep(fake.base_url)
        body = {"messages": HELLO, "response_format": AS_PERSON}
        resp = send(adapter.build_chat(d, body, stream=False))
        assert resp.status_code == 200, resp.text
        answer = validate_completion(adapter.parse_chat(d, resp.content, request_id="f", request=body).body)
        assert json.loads(answer["choices"][0]["message"]["content"]) == {"name": "text", "age": 1}
        translator = adapter.stream_translator(d, request_id="s", created=1, request=body)
        chunks = chunks_of(run_stream(adapter.build_chat(d, body, stream=True), translator))
        assert json.loads(stream_text(chunks)) == {"name": "text", "age": 1}
        assert stream_tool_calls(chunks) == {} and finish_reasons(chunks) == ["stop"]
        llama = dep(fake.base_url, model_id="meta.llama3-70b-instruct-v1:0")
        refused = send(adapter.build_chat(llama, body, stream=False))
        assert refused.status_code == 400 and "toolChoice.tool" in refused.text  # Bedrock's own words
