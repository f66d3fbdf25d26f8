"""Gemini adapter: Chat Completions → generateContent (system, roles, images, tools, tool calls
and results, sampling), answers and SSE streams back to OpenAI shape, usageMetadata with cached
and thoughts tokens, Google's errors (RetryInfo, API_KEY_INVALID), Vertex AI's URL and auth, and
round trips against FakeGemini."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator

import pytest

from providers.adapters import gemini as adapter
from providers.adapters.types import UpstreamFailure
from tests.fakes import FakeGemini

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

KEY = "AIzaSyFakeGeminiKey0123456789"
DEP = make_deployment("gemini", name="gemini", base_url="https://generativelanguage.googleapis.com/v1beta",
                      api_key=KEY, model_id="gemini-2.5-flash")
VERTEX = make_deployment(
    "gemini", name="vertex", api_key="ya29.fake-token", model_id="gemini-2.5-pro",
    base_url="https://us-central1-aiplatform.googleapis.com/v1/projects/acme/locations/us-central1/publishers/google")


def build(body, stream=False, dep=DEP):
    req = adapter.build_chat(dep, body, stream=stream)
    return req, json.loads(req.body)


# ----------------------------------------------------------------------------- build_chat
def test_build_chat_url_auth_and_minimal_body():
    req, sent = build({"model": "x", "messages": [{"role": "user", "content": "Hello"}]})
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == KEY and "Authorization" not in req.headers
    assert sent == {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    req, _ = build({"messages": [{"role": "user", "content": "Hi"}]}, stream=True)
    assert req.url.endswith("/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert req.headers["Accept"] == "text/event-stream"


def test_vertex_uses_its_publisher_path_and_a_bearer_token():
    req, sent = build({"messages": [{"role": "user", "content": "Hi"}]}, dep=VERTEX)
    assert req.url == ("https://us-central1-aiplatform.googleapis.com/v1/projects/acme/locations/us-central1/"
                       "publishers/google/models/gemini-2.5-pro:generateContent")
    assert req.headers["Authorization"] == "Bearer ya29.fake-token" and "x-goog-api-key" not in req.headers
    assert sent["contents"][0]["parts"] == [{"text": "Hi"}]


def test_build_chat_full_translation():
    body = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris, and what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1__sig_c2lnMQ", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1__sig_c2lnMQ", "content": "{\"temp_c\": 18}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_completion_tokens": 512, "stop": "END", "seed": 7,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    }
    _, sent = build(body)
    assert sent["systemInstruction"] == {"parts": [{"text": "You are terse."}, {"text": "Use metric units."}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris, and what is this?"},
                                   {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]},
        {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnMQ=="},
            {"functionCall": {"name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
            {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            {"text": "Thanks"}]},
    ]
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Current weather for a city",
        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"]}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert sent["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "topK": 40, "seed": 7, "maxOutputTokens": 512, "stopSequences": ["END"],
        "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}), (None, None)])
def test_tool_choice(choice, config):
    _, sent = build({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL], "tool_choice": choice})
    assert sent.get("toolConfig") == ({"functionCallingConfig": config} if config else None)


@pytest.mark.parametrize(("body", "words"), [
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}, "base64 data: URL"),
    ({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "function's name"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n > 1"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role 'robot'"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}, "type 'function'"),
])
def test_requests_gemini_cannot_take_are_client_errors(body, words):
    with pytest.raises(UpstreamFailure) as info:
        adapter.build_chat(DEP, body, stream=False)
    assert info.value.kind == "bad_request" and not info.value.retryable and words in info.value.message


# ----------------------------------------------------------------------------- answers and usage
def answer(parts, finish="STOP", usage=None, **extra):
    body = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
            "modelVersion": "gemini-2.5-flash", **extra}
    if usage is not None:
        body["usageMetadata"] = usage
    return json.dumps(body).encode()


def test_parse_chat_text_and_usage_with_cached_and_thoughts_tokens():
    usage = {"promptTokenCount": 25, "candidatesTokenCount": 7, "cachedContentTokenCount": 10,
             "thoughtsTokenCount": 120, "toolUsePromptTokenCount": 3, "totalTokenCount": 155}
    result = adapter.parse_chat(DEP, answer([{"text": "thinking…", "thought": True}, {"text": "It is 18°C."}],
                                            usage=usage), request_id="r1")
    body = validate_completion(result.body)
    assert body["choices"][0]["message"]["content"] == "It is 18°C."  # the thought summary is not the answer
    assert body["choices"][0]["finish_reason"] == "stop" and body["model"] == "gemini-2.5-flash"
    u = result.usage
    # thoughts are billed as output on top of candidatesTokenCount; tool-use prompt tokens are input
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens) == (28, 10, 127, 120)
    assert body["usage"] == {"prompt_tokens": 28, "completion_tokens": 127, "total_tokens": 155,
                             "prompt_tokens_details": {"cached_tokens": 10},
                             "completion_tokens_details": {"reasoning_tokens": 120}}


def test_parse_chat_function_calls_carry_their_thought_signature_in_the_id():
    parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
             {"functionCall": {"name": "get_time", "args": {}, "id": "fc-7"}}]
    body = validate_completion(adapter.parse_chat(DEP, answer(parts), request_id="r2").body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert calls[0]["id"] == "call_r2_0__sig_c2ln" and calls[1]["id"] == "fc-7"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    # … and the signature goes back on the same part when the client replays the call
    _, sent = build({"messages": [{"role": "user", "content": "w?"}, choice["message"],
                                  {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"}]})
    assert sent["contents"][1]["parts"][0]["thoughtSignature"] == "c2ln"
    assert sent["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


@pytest.mark.parametrize(("reason", "mapped"), [
    ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop"), ("MALFORMED_FUNCTION_CALL", "stop")])
def test_finish_reasons(reason, mapped):
    body = json.loads(adapter.parse_chat(DEP, answer([{"text": "x"}], finish=reason), request_id="r").body)
    assert body["choices"][0]["finish_reason"] == mapped


def test_a_blocked_prompt_is_a_content_policy_failure_and_no_usage_is_an_estimate():
    raw = json.dumps({"promptFeedback": {"blockReason": "SAFETY"}}).encode()
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_chat(DEP, raw, request_id="r")
    assert (info.value.kind, info.value.retryable) == ("content_policy", False)
    result = adapter.parse_chat(DEP, answer([{"text": "x"}]), request_id="r")
    assert result.usage.estimated


def test_unreadable_answers_are_retryable_bad_responses():
    for raw in (b'{"candidates": [', b'{"hello": 1}', b"<html></html>"):
        with pytest.raises(UpstreamFailure) as info:
            adapter.parse_chat(DEP, raw, request_id="r")
        assert info.value.kind == "bad_response" and info.value.retryable


# ----------------------------------------------------------------------------- streams
def sse(*events):
    return b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)


def test_stream_text_finish_and_usage_from_the_last_event_split_anywhere():
    data = sse(
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
         "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash"},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo!"}]}, "finishReason": "MAX_TOKENS"}],
         "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "thoughtsTokenCount": 5,
                           "cachedContentTokenCount": 4, "totalTokenCount": 16}},
    )
    for step in (None, 1, 7):
        translator = adapter.stream_translator(DEP, request_id="s1", created=1)
        chunks = chunks_of(feed_all(translator, data, step))
        assert stream_text(chunks) == "Hello!" and finish_reasons(chunks) == ["length"]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        u = translator.usage
        assert (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens) == (9, 4, 7, 5)
        assert translator.finish_reason == "length" and translator.text_chars == 6


def test_stream_function_calls():
    data = sse({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}]},
        "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}})
    chunks = chunks_of(feed_all(adapter.stream_translator(DEP, request_id="s2", created=1), data))
    assert stream_tool_calls(chunks) == {0: {"id": "call_s2_0__sig_c2ln", "name": "get_weather",
                                             "arguments": "{\"city\":\"Paris\"}"}}
    assert finish_reasons(chunks) == ["tool_calls"]


def test_stream_faults():
    truncated = sse({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}],
                     "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}})
    translator = adapter.stream_translator(DEP, request_id="s", created=1)
    with pytest.raises(UpstreamFailure) as info:
        feed_all(translator, truncated)
    assert info.value.kind == "connection" and info.value.retryable
    assert translator.usage is None and translator.text_chars == 3  # a cut stream's usage is estimated
    with pytest.raises(UpstreamFailure) as info:
        feed_all(adapter.stream_translator(DEP, request_id="s", created=1), b'data: {"candidates": [\n\n')
    assert info.value.kind == "bad_response"
    overloaded = sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    with pytest.raises(UpstreamFailure) as info:
        feed_all(adapter.stream_translator(DEP, request_id="s", created=1), overloaded)
    assert info.value.kind == "server_error" and info.value.retryable and "overloaded" in info.value.message


# ----------------------------------------------------------------------------- errors
def google_error(code, status, message, details=None):
    err = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return json.dumps({"error": err}).encode()


def test_429_resource_exhausted_is_rate_limited_with_retry_info():
    body = google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"}])
    failure = adapter.parse_error(DEP, 429, {}, body)
    assert (failure.kind, failure.retryable, failure.retry_after, failure.status) == ("rate_limit", True, 41.0, 429)
    assert "exceeded your current quota" in failure.message
    assert adapter.parse_error(DEP, 429, {"retry-after": "3"}, body).retry_after == 3.0  # a header wins


def test_400_invalid_argument_is_a_client_error_and_a_bad_key_an_auth_failure():
    failure = adapter.parse_error(DEP, 400, {}, google_error(400, "INVALID_ARGUMENT", "Unknown name \"x\""))
    assert (failure.kind, failure.retryable) == ("bad_request", False)
    bad_key = google_error(400, "INVALID_ARGUMENT", f"API key not valid: {KEY}", [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}])
    failure = adapter.parse_error(DEP, 400, {}, bad_key)
    assert (failure.kind, failure.retryable) == ("auth", False) and KEY not in failure.message


@pytest.mark.parametrize(("code", "status", "kind"), [
    (500, "INTERNAL", "server_error"), (503, "UNAVAILABLE", "server_error"), (504, "DEADLINE_EXCEEDED", "timeout")])
def test_5xx_are_retryable(code, status, kind):
    failure = adapter.parse_error(DEP, code, {}, google_error(code, status, "boom"))
    assert failure.retryable and failure.kind == kind


def test_error_bodies_that_are_not_google_shaped_still_classify_by_status():
    failure = adapter.parse_error(DEP, 403, {}, b"<html>nope</html>")
    assert failure.kind == "auth" and "HTML page" in failure.message
    streamed = json.dumps([{"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}}])
    assert adapter.parse_error(DEP, 404, {}, streamed.encode()).kind == "not_found"


EMBED = make_deployment("gemini", base_url="https://generativelanguage.googleapis.com/v1beta", api_key=KEY,
                        model_id="gemini-embedding-001", mode="embedding")


def test_embeddings_go_to_batch_embed_contents_one_request_per_text():
    req = adapter.build_embeddings(EMBED, {"model": "g:gemini-embedding-001", "input": ["one", "two two"],
                                           "dimensions": 256, "encoding_format": "base64"})
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert req.headers["x-goog-api-key"] == KEY
    assert json.loads(req.body) == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "one"}]}, "outputDimensionality": 256},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "two two"}]},
         "outputDimensionality": 256}]}
    single = json.loads(adapter.build_embeddings(EMBED, {"input": "solo"}).body)
    assert single == {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "solo"}]}}]}


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2]], [], "", ["ok", ""]])
def test_embeddings_refuse_token_arrays_and_empty_input(value):
    with pytest.raises(UpstreamFailure) as info:
        adapter.build_embeddings(EMBED, {"input": value})
    assert info.value.kind == "bad_request" and "non-empty string" in info.value.message


VERTEX_EMBED = dataclasses.replace(VERTEX, model_id="text-embedding-005", mode="embedding")


def test_vertex_embeddings_go_to_predict_with_instances_and_dimensions():
    req = adapter.build_embeddings(VERTEX_EMBED, {"input": ["one", "two two"], "dimensions": 256,
                                                  "encoding_format": "base64"})
    assert req.url == f"{VERTEX.base_url}/models/text-embedding-005:predict"
    assert req.headers["Authorization"] == "Bearer ya29.fake-token" and "x-goog-api-key" not in req.headers
    assert json.loads(req.body) == {"instances": [{"content": "one"}, {"content": "two two"}],
                                    "parameters": {"outputDimensionality": 256}}
    assert json.loads(adapter.build_embeddings(VERTEX_EMBED, {"input": "solo"}).body) == {
        "instances": [{"content": "solo"}]}


def test_vertex_embeddings_past_the_per_request_limits_are_refused_with_what_to_do():
    with pytest.raises(UpstreamFailure) as info:
        adapter.build_embeddings(VERTEX_EMBED, {"input": ["x"] * 251})
    assert info.value.kind == "bad_request"
    assert "at most 250 texts per request (got 251); split the input" in info.value.message
    adapter.build_embeddings(VERTEX_EMBED, {"input": ["x"] * 250})
    gemini_embed = dataclasses.replace(VERTEX_EMBED, model_id="gemini-embedding-001")
    with pytest.raises(UpstreamFailure) as info:
        adapter.build_embeddings(gemini_embed, {"input": ["a", "b"]})
    assert "gemini-embedding-001 on Vertex AI embeds one text per request" in info.value.message
    single = json.loads(adapter.build_embeddings(gemini_embed, {"input": ["a"]}).body)
    assert single == {"instances": [{"content": "a"}]}


def test_vertex_embeddings_count_exact_tokens_from_the_statistics():
    raw = json.dumps({"predictions": [
        {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 3, "truncated": False}}},
        {"embeddings": {"values": [0.3, 0.4], "statistics": {"token_count": 5.0, "truncated": False}}}],
        "metadata": {"billableCharacterCount": 20}}).encode()
    body, usage = adapter.parse_embeddings(VERTEX_EMBED, raw, request={"input": ["abc", "defgh"]})
    out = validate_embeddings(body)
    assert [d["embedding"] for d in out["data"]] == [[0.1, 0.2], [0.3, 0.4]]
    assert (usage.input_tokens, usage.estimated) == (8, False)
    assert out["usage"] == {"prompt_tokens": 8, "total_tokens": 8} and out["model"] == "text-embedding-005"
    uncounted = json.dumps({"predictions": [{"embeddings": {"values": [1.0]}}]}).encode()
    _, usage = adapter.parse_embeddings(VERTEX_EMBED, uncounted, request={"input": "abcdefghi"})
    assert (usage.input_tokens, usage.estimated) == (3, True)  # no statistics: estimated, and said so


@pytest.mark.parametrize("raw", [b'{"predictions": [{"embeddings": {}}]}', b'{"predictions": []}', b"[]",
                                 b'{"embeddings": [{"values": [1]}]}'])
def test_vertex_embeddings_unreadable_answers_are_bad_responses(raw):
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_embeddings(VERTEX_EMBED, raw, request={"input": "x"})
    assert info.value.kind == "bad_response"


def test_embeddings_usage_is_estimated_from_the_input_unless_google_counts():
    raw = json.dumps({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}).encode()
    body, usage = adapter.parse_embeddings(EMBED, raw, request={"input": ["abcdefghi", "xy"]})
    out = validate_embeddings(body)
    assert [d["embedding"] for d in out["data"]] == [[0.1, 0.2], [0.3, 0.4]]
    assert [d["index"] for d in out["data"]] == [0, 1] and out["model"] == "gemini-embedding-001"
    assert (usage.input_tokens, usage.estimated) == (3 + 1, True)  # ceil(9/4) + ceil(2/4)
    assert out["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    counted = json.dumps({"embeddings": [{"values": [1.0]}], "usageMetadata": {"promptTokenCount": 7}}).encode()
    _, usage = adapter.parse_embeddings(EMBED, counted, request={"input": "x"})
    assert (usage.input_tokens, usage.estimated) == (7, False)


def test_embeddings_unreadable_answers_are_bad_responses():
    for raw in (b'{"embeddings": [{"value": []}]}', b"[]", b"<html>"):
        with pytest.raises(UpstreamFailure) as info:
            adapter.parse_embeddings(EMBED, raw, request={"input": "x"})
        assert info.value.kind == "bad_response"


# ----------------------------------------------------------------------------- against FakeGemini
@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=KEY, usage={"prompt_tokens": 12, "completion_tokens": 5, "cached_tokens": 4,
                                        "reasoning_tokens": 30}) as server:
        yield server


def live(fake, **kw):
    return make_deployment("gemini", base_url=fake.base_url, api_key=KEY, model_id="gemini-2.5-flash", **kw)


def test_round_trip_non_stream(fake):
    dep = live(fake)
    req = adapter.build_chat(dep, {"messages": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Hi"}]}, stream=False)
    resp = send(req)
    assert resp.status_code == 200, resp.text
    result = adapter.parse_chat(dep, resp.content, request_id="rt")
    body = validate_completion(result.body)
    assert body["choices"][0]["message"]["content"] == fake.reply
    assert (result.usage.input_tokens, result.usage.cached_input_tokens, result.usage.output_tokens,
            result.usage.reasoning_tokens) == (12, 4, 35, 30)
    assert fake.last_request.headers["x-goog-api-key"] == KEY
    assert fake.last_request.json["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


def test_round_trip_stream_and_tool_loop(fake):
    dep = live(fake)
    translator = adapter.stream_translator(dep, request_id="st", created=1)
    chunks = chunks_of(run_stream(adapter.build_chat(dep, {"messages": [{"role": "user", "content": "Hi"}]},
                                                     stream=True), translator))
    assert stream_text(chunks) == fake.reply and finish_reasons(chunks) == ["stop"]
    assert translator.usage.output_tokens == 35
    fake.tool_call = {"arguments": {"city": "Paris"}}
    first = {"messages": [{"role": "user", "content": "Weather?"}], "tools": [WEATHER_TOOL]}
    result = adapter.parse_chat(dep, send(adapter.build_chat(dep, first, stream=False)).content, request_id="t")
    message = json.loads(result.body)["choices"][0]["message"]
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and "__sig_" in call["id"]
    second = {**first, "messages": [*first["messages"], message,
                                    {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 18}"}]}
    resp = send(adapter.build_chat(dep, second, stream=False))
    assert resp.status_code == 200, resp.text  # the fake checks the parts as the real API does
    assert json.loads(adapter.parse_chat(dep, resp.content, request_id="t2").body)["choices"][0]["message"][
        "content"] == fake.reply
    assert fake.last_request.json["contents"][1]["parts"][0]["thoughtSignature"]


def test_fake_errors_parse_into_the_right_failures(fake):
    dep = live(fake)
    request = adapter.build_chat(dep, {"messages": [{"role": "user", "content": "Hi"}]}, stream=False)
    fake.set_fault("status", status=429, retry_after=7, times=1)
    resp = send(request)
    failure = adapter.parse_error(dep, resp.status_code, dict(resp.headers), resp.content)
    assert (failure.kind, failure.retry_after) == ("rate_limit", 7.0)
    wrong = make_deployment("gemini", base_url=fake.base_url, api_key="AIza-wrong", model_id="gemini-2.5-flash")
    resp = send(adapter.build_chat(wrong, {"messages": [{"role": "user", "content": "Hi"}]}, stream=False))
    assert resp.status_code == 400
    assert adapter.parse_error(wrong, 400, dict(resp.headers), resp.content).kind == "auth"


def test_vertex_round_trip(fake):
    dep = make_deployment("gemini", base_url=fake.vertex_base_url, api_key=KEY, model_id="gemini-2.5-pro")
    resp = send(adapter.build_chat(dep, {"messages": [{"role": "user", "content": "Hi"}]}, stream=False))
    assert resp.status_code == 200, resp.text
    assert fake.last_request.path == ("/v1/projects/fake-project/locations/us-central1/publishers/google/models/"
                                      "gemini-2.5-pro:generateContent")
    assert fake.last_request.headers["authorization"] == f"Bearer {KEY}"


def test_a_signature_with_every_base64_character_survives_the_trip_through_an_anthropic_safe_id():
    signature = "+/+/aQ=="  # bytes fb ff bf 69: "+", "/" and padding
    part = {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": signature}
    body = json.loads(adapter.parse_chat(DEP, answer([part]), request_id="r3").body)
    call_id = body["choices"][0]["message"]["tool_calls"][0]["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", call_id)
    assert adapter.split_call_id(call_id) == ("call_r3_0", signature)
    assert adapter.split_call_id("call_9") == ("call_9", None)


def test_embeddings_round_trip(fake):
    dep = make_deployment("gemini", base_url=fake.base_url, api_key=KEY, model_id="gemini-embedding-001",
                          mode="embedding")
    request = {"input": ["alpha", "beta gamma"], "dimensions": 16}
    resp = send(adapter.build_embeddings(dep, request))
    assert resp.status_code == 200, resp.text
    body, usage = adapter.parse_embeddings(dep, resp.content, request=request)
    out = validate_embeddings(body)
    assert len(out["data"]) == 2 and all(len(d["embedding"]) == 16 for d in out["data"])
    assert (usage.input_tokens, usage.estimated) == (2 + 3, True)


def test_vertex_embeddings_round_trip(fake):
    dep = make_deployment("gemini", base_url=fake.vertex_base_url, api_key=KEY, model_id="text-embedding-005",
                          mode="embedding")
    request = {"input": ["alpha", "beta gamma"], "dimensions": 16}
    resp = send(adapter.build_embeddings(dep, request))
    assert resp.status_code == 200, resp.text
    assert fake.last_request.path.endswith("/publishers/google/models/text-embedding-005:predict")
    body, usage = adapter.parse_embeddings(dep, resp.content, request=request)
    out = validate_embeddings(body)
    assert len(out["data"]) == 2 and all(len(d["embedding"]) == 16 for d in out["data"])
    assert (usage.input_tokens, usage.estimated) == (12 + 2, False)  # usage sets the first; the fake counts words


@pytest.mark.parametrize(("effort", "budget"), [("none", 0), ("minimal", 512), ("low", 1024), ("medium", 8192),
                                                ("high", 24576)])
def test_reasoning_effort_becomes_a_thinking_budget(effort, budget):
    _, sent = build({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort, "max_tokens": 9})
    assert sent["generationConfig"] == {"maxOutputTokens": 9, "thinkingConfig": {"thinkingBudget": budget}}


def test_no_reasoning_effort_leaves_thinking_to_the_model_and_an_unknown_one_is_refused():
    _, sent = build({"messages": [{"role": "user", "content": "hi"}]})
    assert "generationConfig" not in sent
    with pytest.raises(UpstreamFailure) as info:
        build({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"})
    assert info.value.kind == "bad_request" and "none, minimal, low, medium, high" in info.value.message


def test_vertex_auth_option_sends_a_bearer_token_whatever_the_url():
    dep = make_deployment("gemini", base_url="https://proxy.example/v1beta", api_key="ya29.token")
    proxied = dataclasses.replace(dep, options=(("auth", "vertex"),))
    assert adapter.build_chat(proxied, {"messages": [{"role": "user", "content": "x"}]}, stream=False).headers[
        "Authorization"] == "Bearer ya29.token"
    assert "x-goog-api-key" in adapter.build_chat(dep, {"messages": [{"role": "user", "content": "x"}]},
                                                  stream=False).headers
