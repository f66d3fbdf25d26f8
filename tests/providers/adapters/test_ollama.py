"""Ollama native adapter (/api/chat, /api/embed): translation both ways, NDJSON streams,
errors, and round trips against FakeOllama."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from providers.adapters import ollama as adapter
from providers.adapters.types import UpstreamFailure, Usage
from tests.fakes import FakeOllama

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

DEP = make_deployment("ollama", name="home-ollama", base_url="http://127.0.0.1:11434", api_key="", model_id="llama3.2")


def build(body, stream=False):
    req = adapter.build_chat(DEP, body, stream=stream)
    return req, json.loads(req.body)


# ----------------------------------------------------------------------------- build_chat
def test_build_chat_basic():
    req, sent = build({"model": "alias", "messages": [{"role": "user", "content": "why is the sky blue?"}]})
    assert req.url == "http://127.0.0.1:11434/api/chat"
    assert "Authorization" not in req.headers
    assert sent == {"model": "llama3.2", "messages": [{"role": "user", "content": "why is the sky blue?"}],
                    "stream": False}
    assert build({"messages": []}, stream=True)[1]["stream"] is True


def test_build_chat_translation():
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_9", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "hot"},
        ],
        "tools": [WEATHER_TOOL],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "temperature": 0.2, "top_p": 0.8, "seed": 42, "max_tokens": 64, "stop": "###", "presence_penalty": 0.5,
    }
    _, sent = build(body, stream=True)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is this?", "images": ["/9j/4AAQ"]},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
        {"role": "tool", "content": "hot", "tool_name": "get_weather"},
    ]
    assert sent["tools"] == [WEATHER_TOOL]
    assert sent["format"] == {"type": "object"}
    assert sent["options"] == {"temperature": 0.2, "top_p": 0.8, "seed": 42, "presence_penalty": 0.5,
                               "num_predict": 64, "stop": ["###"]}
    assert sent["stream"] is True


def test_build_chat_json_mode_and_tool_choice_none():
    _, sent = build({"messages": [], "response_format": {"type": "json_object"}, "tools": [WEATHER_TOOL],
                     "tool_choice": "none", "max_completion_tokens": 10})
    assert sent["format"] == "json" and "tools" not in sent and sent["options"] == {"num_predict": 10}


def test_build_chat_rejects_remote_images():
    with pytest.raises(UpstreamFailure) as info:
        build({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})
    assert info.value.kind == "bad_request" and "data: URL" in info.value.message


# ----------------------------------------------------------------------------- parse_chat
def test_parse_chat_text():
    body = json.dumps({"model": "llama3.2", "created_at": "2023-12-12T14:13:43.416799Z",
                       "message": {"role": "assistant", "content": "Hello! How are you today?"},
                       "done": True, "done_reason": "stop", "total_duration": 5191566416,
                       "prompt_eval_count": 26, "eval_count": 298}).encode()
    result = adapter.parse_chat(DEP, body, request_id="xyz")
    obj = validate_completion(result.body)
    assert obj["id"] == "chatcmpl-xyz" and obj["model"] == "llama3.2"
    assert obj["choices"][0]["message"]["content"] == "Hello! How are you today?"
    assert obj["choices"][0]["finish_reason"] == "stop"
    assert obj["usage"] == {"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324}
    assert result.usage == Usage(input_tokens=26, output_tokens=298)


def test_parse_chat_tool_calls_and_length():
    body = json.dumps({"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
        "done": True, "done_reason": "stop"}).encode()
    result = adapter.parse_chat(DEP, body, request_id="r")
    obj = validate_completion(result.body)
    call = obj["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}
    assert call["id"].startswith("call_")
    assert obj["choices"][0]["finish_reason"] == "tool_calls"
    assert result.usage.estimated
    body = json.dumps({"model": "m", "message": {"role": "assistant", "content": "cut"}, "done": True,
                       "done_reason": "length", "prompt_eval_count": 0, "eval_count": 5}).encode()
    obj = validate_completion(adapter.parse_chat(DEP, body, request_id="r").body)
    assert obj["choices"][0]["finish_reason"] == "length"


def test_parse_chat_errors():
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_chat(DEP, b'{"model": "broken", "message": {"role": "assistant", "content": "trunc',
                           request_id="r")
    assert info.value.kind == "bad_response" and info.value.retryable and "home-ollama" in info.value.message
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_chat(DEP, b'{"error":"an error was encountered while running the model"}', request_id="r")
    assert info.value.kind == "server_error" and info.value.retryable


# ----------------------------------------------------------------------------- streams
STREAM = (
    b'{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The"},"done":false}\n'
    b'{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant",'
    b'"content":" sky \xc3\xa9"},"done":false}\n'
    b'{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}\n'
)


def translator():
    return adapter.stream_translator(DEP, request_id="s1", created=1700000002)


@pytest.mark.parametrize("step", [None, 1, 11])
def test_stream_any_split(step):
    t = translator()
    chunks = chunks_of(feed_all(t, STREAM, step))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert stream_text(chunks) == "The sky é"
    assert finish_reasons(chunks) == ["stop"] and t.finish_reason == "stop"
    assert t.usage == Usage(input_tokens=26, output_tokens=282)
    assert t.text_chars == len("The sky é")
    assert {c["id"] for c in chunks} == {"chatcmpl-s1"}


def test_stream_tool_calls():
    data = (b'{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather",'
            b'"arguments":{"city":"Tokyo"}}}]},"done":false}\n'
            b'{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}\n')
    t = translator()
    chunks = chunks_of(feed_all(t, data, 7))
    calls = stream_tool_calls(chunks)
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Tokyo"}
    assert calls[0]["id"] and finish_reasons(chunks) == ["tool_calls"]
    assert t.usage is None


def test_stream_errors():
    t = translator()
    t.feed(STREAM.split(b"\n")[0] + b"\n")
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'{"error":"an error was encountered while running the model"}\n')
    assert info.value.kind == "server_error" and info.value.retryable
    assert "while running the model" in info.value.message
    t = translator()
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'{"model":"broken","message":{"role":"assis\n')
    assert info.value.kind == "bad_response"
    t = translator()
    t.feed(STREAM.split(b"\n")[0] + b"\n")
    with pytest.raises(UpstreamFailure):
        t.finish()


def test_stream_last_line_without_newline():
    t = translator()
    chunks = chunks_of(feed_all(t, STREAM.rstrip(b"\n")))
    assert finish_reasons(chunks) == ["stop"]


# ----------------------------------------------------------------------------- embeddings & errors
def test_embeddings_translation():
    req = adapter.build_embeddings(DEP, {"model": "alias", "input": ["a", "b"], "dimensions": 3,
                                         "encoding_format": "float"})
    assert req.url == "http://127.0.0.1:11434/api/embed"
    assert json.loads(req.body) == {"model": "llama3.2", "input": ["a", "b"], "dimensions": 3}
    body = (b'{"model":"all-minilm","embeddings":[[0.1,-0.2,0.3],[0.4,0.5,0.6]],"total_duration":14143917,'
            b'"prompt_eval_count":8}')
    out, usage = adapter.parse_embeddings(DEP, body)
    obj = validate_embeddings(out)
    assert obj == {"object": "list", "model": "all-minilm", "usage": {"prompt_tokens": 8, "total_tokens": 8}, "data": [
        {"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]},
        {"object": "embedding", "index": 1, "embedding": [0.4, 0.5, 0.6]}]}
    assert usage == Usage(input_tokens=8)
    with pytest.raises(UpstreamFailure) as info:
        adapter.build_embeddings(DEP, {"input": [1, 2, 3]})
    assert info.value.kind == "bad_request"
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_embeddings(DEP, b'{"embedding":[1,2]}')
    assert info.value.kind == "bad_response"


@pytest.mark.parametrize(("status", "message", "kind", "retryable"), [
    (400, "model is required", "bad_request", False),
    (404, "model 'llama3' not found, try pulling it first", "not_found", False),
    (429, "too many requests", "rate_limit", True),
    (500, "an error was encountered while running the model", "server_error", True),
    (502, "bad gateway", "server_error", True),
    (503, "server busy, please try again.  maximum pending requests exceeded", "server_error", True),
])
def test_parse_error(status, message, kind, retryable):
    result = adapter.parse_error(DEP, status, {}, json.dumps({"error": message}).encode())
    assert (result.kind, result.retryable, result.status) == (kind, retryable, status)
    assert result.message.startswith(f"home-ollama answered {status} (") and message.split("  ")[0] in result.message
    assert result.retry_after is None


# ----------------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(reply="Rayleigh scattering makes the sky look blue.") as server:
        yield server


@pytest.fixture
def upstream(fake):
    fake.clear_faults()
    fake.tool_call = None
    fake.usage = None
    return make_deployment("ollama", base_url=fake.base_url, api_key="", model_id="llama3.2:latest")


BODY = {"model": "alias", "messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 50}


def test_round_trip_chat(fake, upstream):
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    assert fake.last_request.json["stream"] is False and fake.last_request.json["options"] == {"num_predict": 50}
    result = adapter.parse_chat(upstream, resp.content, request_id="r")
    obj = validate_completion(result.body)
    assert obj["choices"][0]["message"]["content"] == "Rayleigh scattering makes the sky look blue."
    assert result.usage.input_tokens > 0 and result.usage.output_tokens == 7


def test_round_trip_stream(fake, upstream):
    t = adapter.stream_translator(upstream, request_id="r", created=1)
    chunks = chunks_of(run_stream(adapter.build_chat(upstream, BODY, stream=True), t))
    assert stream_text(chunks) == "Rayleigh scattering makes the sky look blue."
    assert t.usage.output_tokens == 7 and t.finish_reason == "stop"


def test_round_trip_tool_call(fake, upstream):
    fake.tool_call = {"arguments": {"city": "Quito"}}
    body = {**BODY, "tools": [WEATHER_TOOL]}
    answer = send(adapter.build_chat(upstream, body, stream=False)).content
    obj = validate_completion(adapter.parse_chat(upstream, answer, request_id="r").body)
    assert json.loads(obj["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Quito"}
    t = adapter.stream_translator(upstream, request_id="r", created=1)
    calls = stream_tool_calls(chunks_of(run_stream(adapter.build_chat(upstream, body, stream=True), t)))
    assert calls[0]["name"] == "get_weather" and t.finish_reason == "tool_calls"


def test_round_trip_faults(fake, upstream):
    fake.set_fault("stream_error", times=1)
    with pytest.raises(UpstreamFailure) as info:
        run_stream(adapter.build_chat(upstream, BODY, stream=True),
                   adapter.stream_translator(upstream, request_id="r", created=1))
    assert info.value.kind == "server_error"
    fake.set_fault("malformed", times=1)
    with pytest.raises(UpstreamFailure) as info:
        run_stream(adapter.build_chat(upstream, BODY, stream=True),
                   adapter.stream_translator(upstream, request_id="r", created=1))
    assert info.value.kind == "bad_response"
    fake.strict_models = True
    try:
        missing = make_deployment("ollama", base_url=upstream.base_url, api_key="", model_id="nope")
        resp = send(adapter.build_chat(missing, BODY, stream=False))
        result = adapter.parse_error(missing, resp.status_code, dict(resp.headers), resp.content)
        assert resp.status_code == 404 and result.kind == "not_found" and "'nope' not found" in result.message
    finally:
        fake.strict_models = False
    fake.set_fault("status", status=503, times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "server_error" and result.retryable and "server busy" in result.message


def test_round_trip_embeddings(fake, upstream):
    resp = send(adapter.build_embeddings(upstream, {"input": ["sky", "grass"]}))
    body, usage = adapter.parse_embeddings(upstream, resp.content)
    obj = validate_embeddings(body)
    assert [d["index"] for d in obj["data"]] == [0, 1] and len(obj["data"][0]["embedding"]) == 8
    assert usage.input_tokens == obj["usage"]["prompt_tokens"] > 0
