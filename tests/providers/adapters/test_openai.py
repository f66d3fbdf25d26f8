"""OpenAI / OpenAI-compatible adapter: byte-level passthrough, usage, streams, errors, and
round trips against the loopback FakeOpenAI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from providers.adapters import openai as adapter
from providers.adapters.types import UpstreamFailure, Usage
from tests.fakes import FakeOpenAI

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
    validate_embeddings,
)

DEP = make_deployment("openai", name="openai")

COMPLETION = (
    b'{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,'
    b'"model":"gpt-5.4","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I '
    b'assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":'
    b'{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":3,'
    b'"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
    b'"service_tier":"default"}'
)

FIXTURE_STREAM = (
    b'data: {"id":"chatcmpl-ABfw4","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06",'
    b'"system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
    b'"refusal":null},"logprobs":null,"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-ABfw4","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06",'
    b'"system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,'
    b'"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-ABfw4","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06",'
    b'"system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" w\xc3\xb6rld"},"logprobs":null,'
    b'"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-ABfw4","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06",'
    b'"system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{},"logprobs":null,'
    b'"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"chatcmpl-ABfw4","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06",'
    b'"system_fingerprint":"fp_5050236cbd","choices":[],"usage":{"prompt_tokens":79,"completion_tokens":11,'
    b'"total_tokens":90,"completion_tokens_details":{"reasoning_tokens":2}}}\n\n'
    b"data: [DONE]\n\n"
)


def translator():
    return adapter.stream_translator(DEP, request_id="req1", created=1700000000)


# ----------------------------------------------------------------------------- build_chat
def test_build_chat_passes_everything_through_with_model_replaced():
    body = {
        "model": "my-alias", "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER_TOOL],
        "tool_choice": "auto", "response_format": {"type": "json_object"}, "stop": ["\n"], "seed": 7, "n": 2,
        "user": "u1", "metadata": {"k": "v"}, "temperature": 1.5, "logit_bias": {"50256": -100},
    }
    req = adapter.build_chat(DEP, body, stream=False)
    assert req.method == "POST" and req.url == "http://upstream.invalid/v1/chat/completions"
    sent = json.loads(req.body)
    assert sent == {**body, "model": "gpt-4o-mini"}
    assert body["model"] == "my-alias"  # the caller's dict is not modified
    assert req.headers["Authorization"] == "Bearer sk-test-key-123456"


def test_build_chat_stream_always_asks_for_usage():
    body = {"model": "x", "messages": [], "stream_options": {"include_obfuscation": False}}
    sent = json.loads(adapter.build_chat(DEP, body, stream=True).body)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    body = {"messages": [], "stream": True, "stream_options": {"include_usage": False}}
    sent = json.loads(adapter.build_chat(DEP, body, stream=False).body)
    assert "stream" not in sent and "stream_options" not in sent


# ----------------------------------------------------------------------------- parse_chat
def test_parse_chat_returns_upstream_bytes_untouched():
    result = adapter.parse_chat(DEP, COMPLETION, request_id="r")
    assert result.body is COMPLETION
    assert result.usage == Usage(input_tokens=19, cached_input_tokens=4, output_tokens=10, reasoning_tokens=3)
    assert validate_completion(result.body)["choices"][0]["message"]["content"] == "Hello! How can I assist you today?"


def test_parse_chat_fills_missing_envelope_fields():
    body = b'{"choices":[{"message":{"content":"hi"},"finish_reason":null}]}'
    result = adapter.parse_chat(DEP, body, request_id="abc")
    obj = validate_completion(result.body)
    assert obj["id"] == "chatcmpl-abc" and obj["object"] == "chat.completion" and obj["model"] == "gpt-4o-mini"
    assert obj["choices"][0]["finish_reason"] == "stop" and obj["choices"][0]["message"]["role"] == "assistant"
    assert result.usage.estimated is True


def test_parse_chat_tool_calls_pass_through():
    body = json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
    }).encode()
    result = adapter.parse_chat(DEP, body, request_id="r")
    assert result.body is body and result.usage == Usage(estimated=True)


@pytest.mark.parametrize("body", [b'{"choices": [{"message": {"content": "trunc', b"[1,2]", b'{"object":"x"}',
                                  b"<html>nginx</html>", b'{"choices":[{"text":"legacy"}]}'])
def test_parse_chat_rejects_malformed(body):
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_chat(DEP, body, request_id="r")
    assert info.value.kind == "bad_response" and info.value.retryable is True
    assert info.value.message.startswith("openai ")


def test_parse_chat_error_object_in_200():
    body = b'{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}'
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_chat(DEP, body, request_id="r")
    assert info.value.kind == "server_error" and info.value.retryable


# ----------------------------------------------------------------------------- streams
@pytest.mark.parametrize("step", [None, 1, 13])
def test_stream_passthrough_any_split(step):
    t = translator()
    events = feed_all(t, FIXTURE_STREAM, step)
    upstream = [line + b"\n\n" for line in FIXTURE_STREAM.split(b"\n\n") if line][:4]
    assert events == upstream  # bytes in, bytes out; usage chunk and [DONE] dropped
    chunks = chunks_of(events)
    assert stream_text(chunks) == "Hello wörld"
    assert t.text_chars == len("Hello wörld")
    assert t.finish_reason == "stop"
    assert t.usage == Usage(input_tokens=79, output_tokens=11, reasoning_tokens=2)


def test_stream_crlf_and_comments():
    data = FIXTURE_STREAM.replace(b"\n", b"\r\n").replace(b"data: [DONE]", b": ping\r\n\r\ndata: [DONE]")
    t = translator()
    events = feed_all(t, data, 5)
    assert len(chunks_of(events)) == 4 and t.usage.input_tokens == 79


def test_stream_final_chunk_with_choices_and_usage_is_stripped():
    t = translator()
    data = (
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
        b'"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks = chunks_of(feed_all(t, data))
    assert len(chunks) == 2 and "usage" not in chunks[1]
    assert finish_reasons(chunks) == ["stop"]
    assert t.usage == Usage(input_tokens=5, output_tokens=1)


def test_stream_usage_null_on_chunks_is_accepted():
    t = translator()
    data = (b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
            b'"delta":{"content":"a"},"finish_reason":"stop"}],"usage":null}\n\n'
            b"data: [DONE]\n\n")
    events = feed_all(t, data)
    assert len(events) == 1 and t.usage is None


def test_stream_tool_call_arguments_are_counted():
    t = translator()
    data = (
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
        b'"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function",'
        b'"function":{"name":"f","arguments":""}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
        b'"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\": 1}"}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},'
        b'"finish_reason":"tool_calls"}]}\n\n'
    )
    chunks = chunks_of(feed_all(t, data, 3))
    assert stream_tool_calls(chunks) == {0: {"id": "call_1", "name": "f", "arguments": '{"a": 1}'}}
    assert t.text_chars == len('{"a": 1}') and t.finish_reason == "tool_calls"


def test_stream_fills_missing_chunk_fields():
    t = translator()
    events = feed_all(t, b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}\n\n')
    chunk = chunks_of(events)[0]
    assert chunk["id"] == "chatcmpl-req1" and chunk["created"] == 1700000000 and chunk["model"] == "gpt-4o-mini"


def test_stream_error_event_raises():
    t = translator()
    t.feed(FIXTURE_STREAM.split(b"\n\n")[0] + b"\n\n")
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'data: {"error":{"message":"The server had an error","type":"server_error","param":null,'
               b'"code":null}}\n\n')
    assert info.value.kind == "server_error" and info.value.retryable
    assert "The server had an error" in info.value.message


def test_stream_malformed_event_raises_bad_response():
    t = translator()
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'data: {"id": "broken", "choices": [{"delta": {"content": "tru\n\n')
    assert info.value.kind == "bad_response" and info.value.retryable


def test_stream_cut_before_finish_raises():
    t = translator()
    t.feed(FIXTURE_STREAM.split(b"\n\n")[0] + b"\n\n")
    with pytest.raises(UpstreamFailure) as info:
        t.finish()
    assert info.value.retryable and info.value.kind == "connection"


# ----------------------------------------------------------------------------- errors
def err(status, body, headers=None):
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return adapter.parse_error(DEP, status, headers or {}, raw)


def envelope(message, type_="invalid_request_error", code=None):
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def test_error_rate_limit_with_retry_after_ms():
    result = err(429, envelope("Rate limit reached for gpt-4o in organization org-xxx on tokens per min (TPM)",
                               "tokens", "rate_limit_exceeded"), {"retry-after-ms": "644", "retry-after": "1"})
    assert (result.kind, result.retryable, result.status) == ("rate_limit", True, 429)
    assert result.retry_after == pytest.approx(0.644)
    assert result.message.startswith("openai answered 429 (rate limited): Rate limit reached for gpt-4o")


def test_error_insufficient_quota_is_not_retryable():
    result = err(429, envelope("You exceeded your current quota, please check your plan and billing details.",
                               "insufficient_quota", "insufficient_quota"), {"retry-after": "1"})
    assert result.kind == "quota" and result.retryable is False
    assert "exceeded your current quota" in result.message


def test_error_auth_never_echoes_the_key():
    result = err(401, envelope("Incorrect API key provided: sk-...abcd. You can find your API key at "
                               "https://platform.openai.com/account/api-keys.", code="invalid_api_key"))
    assert result.kind == "auth" and result.retryable is False
    assert "sk-" not in result.message and "abcd" not in result.message
    assert "Incorrect API key provided" in result.message


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (400, "bad_request", False), (401, "auth", False), (403, "auth", False), (404, "not_found", False),
    (408, "timeout", True), (409, "server_error", True), (422, "bad_request", False), (500, "server_error", True),
    (502, "server_error", True), (503, "server_error", True), (504, "server_error", True), (529, "server_error", True),
    (418, "bad_request", False), (520, "server_error", True),
])
def test_error_status_mapping(status, kind, retryable):
    result = err(status, envelope("something"))
    assert (result.kind, result.retryable, result.status) == (kind, retryable, status)


def test_error_server_error_honours_retry_after_and_handles_html():
    result = adapter.parse_error(DEP, 503, {"retry-after": "7"}, b"<html><body>Bad Gateway</body></html>")
    assert result.kind == "server_error" and result.retry_after == 7.0
    assert "HTML" in result.message


def test_error_message_is_truncated():
    result = err(400, envelope("y" * 5000))
    assert 250 < len(result.message) < 360 and result.message.endswith("…")


def test_error_with_plain_text_body():
    result = adapter.parse_error(DEP, 500, {}, b"upstream connect error or disconnect/reset before headers")
    assert "upstream connect error" in result.message


# ----------------------------------------------------------------------------- embeddings
def test_embeddings_passthrough():
    req = adapter.build_embeddings(DEP, {"model": "alias", "input": ["a", "b"], "dimensions": 4,
                                         "encoding_format": "float"})
    assert req.url == "http://upstream.invalid/v1/embeddings"
    assert json.loads(req.body) == {"model": "gpt-4o-mini", "input": ["a", "b"], "dimensions": 4,
                                    "encoding_format": "float"}
    body = (b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],'
            b'"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}')
    out, usage = adapter.parse_embeddings(DEP, body)
    assert out is body and usage == Usage(input_tokens=8)
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_embeddings(DEP, b'{"object":"list"}')
    assert info.value.kind == "bad_response"


# ----------------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-fake-key-0001", reply="The quick brown fox jumps over the lazy dog.") as server:
        yield server


@pytest.fixture
def upstream(fake):
    fake.clear_faults()
    fake.tool_call = None
    fake.usage = None
    return make_deployment("openai", base_url=fake.base_url, api_key="sk-fake-key-0001", model_id="gpt-4o-mini")


BODY = {"model": "alias", "messages": [{"role": "user", "content": "Say something"}]}


def test_round_trip_chat(fake, upstream):
    fake.usage = {"cached_tokens": 2, "reasoning_tokens": 1}
    req = adapter.build_chat(upstream, BODY, stream=False)
    resp = send(req)
    assert resp.status_code == 200
    assert fake.last_request.headers["authorization"] == "Bearer sk-fake-key-0001"
    assert fake.last_request.json["model"] == "gpt-4o-mini"
    result = adapter.parse_chat(upstream, resp.content, request_id="r1")
    assert result.body == resp.content
    obj = validate_completion(result.body)
    assert obj["choices"][0]["message"]["content"] == "The quick brown fox jumps over the lazy dog."
    assert result.usage.input_tokens == obj["usage"]["prompt_tokens"] > 0
    assert result.usage.cached_input_tokens == 2 and result.usage.reasoning_tokens == 1


def test_round_trip_tool_call(fake, upstream):
    fake.tool_call = {"arguments": {"city": "Paris"}}
    body = {**BODY, "tools": [WEATHER_TOOL], "tool_choice": "auto"}
    answer = send(adapter.build_chat(upstream, body, stream=False)).content
    result = adapter.parse_chat(upstream, answer, request_id="r")
    obj = validate_completion(result.body)
    call = obj["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert fake.last_request.json["tools"] == [WEATHER_TOOL]

    t = adapter.stream_translator(upstream, request_id="r", created=1)
    chunks = chunks_of(run_stream(adapter.build_chat(upstream, body, stream=True), t))
    calls = stream_tool_calls(chunks)
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert t.finish_reason == "tool_calls"


def test_round_trip_stream(fake, upstream):
    t = adapter.stream_translator(upstream, request_id="r", created=1)
    chunks = chunks_of(run_stream(adapter.build_chat(upstream, {**BODY, "stream": True}, stream=True), t))
    assert fake.last_request.json["stream_options"] == {"include_usage": True}
    assert stream_text(chunks) == "The quick brown fox jumps over the lazy dog."
    assert finish_reasons(chunks) == ["stop"]
    assert t.usage is not None and t.usage.output_tokens == 9
    assert t.text_chars == len("The quick brown fox jumps over the lazy dog.")


def test_round_trip_stream_without_usage(fake, upstream):
    fake.set_fault("no_usage")
    t = adapter.stream_translator(upstream, request_id="r", created=1)
    run_stream(adapter.build_chat(upstream, BODY, stream=True), t)
    assert t.usage is None and t.finish_reason == "stop"


def test_round_trip_stream_faults(fake, upstream):
    fake.set_fault("malformed", times=1)
    with pytest.raises(UpstreamFailure) as info:
        run_stream(adapter.build_chat(upstream, BODY, stream=True),
                   adapter.stream_translator(upstream, request_id="r", created=1))
    assert info.value.kind == "bad_response"
    fake.set_fault("stream_error", times=1, status=500)
    with pytest.raises(UpstreamFailure) as info:
        run_stream(adapter.build_chat(upstream, BODY, stream=True),
                   adapter.stream_translator(upstream, request_id="r", created=1))
    assert info.value.kind == "server_error" and info.value.retryable


def test_round_trip_big_stream(fake, upstream):
    fake.set_fault("huge", times=1, size=1024 * 1024)
    t = adapter.stream_translator(upstream, request_id="r", created=1)
    events = run_stream(adapter.build_chat(upstream, BODY, stream=True), t)
    assert t.text_chars == 1024 * 1024 and len(events) == 16 + 2


def test_round_trip_errors(fake, upstream):
    fake.set_fault("status", status=429, times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "rate_limit" and result.retryable and result.retry_after == 1.0
    assert "Rate limit reached" in result.message

    fake.set_fault("status", status=429, variant="insufficient_quota", times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "quota" and not result.retryable

    wrong = make_deployment("openai", base_url=upstream.base_url, api_key="sk-wrong-key-9999")
    resp = send(adapter.build_chat(wrong, BODY, stream=False))
    result = adapter.parse_error(wrong, resp.status_code, dict(resp.headers), resp.content)
    assert resp.status_code == 401 and result.kind == "auth" and "sk-" not in result.message

    fake.set_fault("status", status=503, times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "server_error" and result.retryable and "overloaded" in result.message


def test_round_trip_malformed_and_not_json(fake, upstream):
    for kind in ("malformed", "not_json"):
        fake.set_fault(kind, times=1)
        resp = send(adapter.build_chat(upstream, BODY, stream=False))
        with pytest.raises(UpstreamFailure) as info:
            adapter.parse_chat(upstream, resp.content, request_id="r")
        assert info.value.kind == "bad_response" and info.value.retryable


def test_round_trip_embeddings(fake, upstream):
    req = adapter.build_embeddings(upstream, {"model": "alias", "input": ["one", "two"]})
    resp = send(req)
    body, usage = adapter.parse_embeddings(upstream, resp.content)
    obj = validate_embeddings(body)
    assert len(obj["data"]) == 2 and usage.input_tokens == obj["usage"]["prompt_tokens"] > 0
    resp = send(adapter.build_embeddings(upstream, {"input": "x", "encoding_format": "base64"}))
    body, _ = adapter.parse_embeddings(upstream, resp.content)
    assert body == resp.content and isinstance(json.loads(body)["data"][0]["embedding"], str)
