"""Anthropic Messages adapter: request translation, answers and named-event streams back to
OpenAI shape, usage with cache reads/writes, errors, and round trips against FakeAnthropic."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from providers.adapters import anthropic as adapter
from providers.adapters.types import UpstreamFailure, Usage
from tests.fakes import FakeAnthropic

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

DEP = make_deployment("anthropic", name="claude-direct", base_url="https://api.anthropic.invalid",
                      api_key="sk-ant-api03-secret", model_id="claude-sonnet-4-5")


def build(body, stream=False):
    req = adapter.build_chat(DEP, body, stream=stream)
    return req, json.loads(req.body)


# ----------------------------------------------------------------------------- build_chat
def test_build_chat_basic_request():
    req, sent = build({"model": "alias", "messages": [{"role": "user", "content": "Hello"}]})
    assert req.url == "https://api.anthropic.invalid/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-api03-secret" and req.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in req.headers
    assert sent == {"model": "claude-sonnet-4-5", "max_tokens": 4096,
                    "messages": [{"role": "user", "content": "Hello"}]}


def test_build_chat_full_translation():
    body = {
        "model": "alias",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these pictures, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "unknown"}]},
            {"role": "user", "content": "Thanks"},
            {"role": "user", "content": "Summarise."},
        ],
        "tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "noop"}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
        "temperature": 1.7,
        "top_p": 0.9,
        "max_completion_tokens": 300,
        "max_tokens": 999,
        "user": "user-42",
        "seed": 3,
        "response_format": {"type": "json_object"},
    }
    _, sent = build(body, stream=True)
    assert sent["system"] == "You are terse.\n\nUse metric units."
    assert sent["max_tokens"] == 300
    assert sent["stream"] is True
    assert sent["stop_sequences"] == ["END"]
    assert sent["temperature"] == 1.0  # clamped to Anthropic's 0..1
    assert sent["top_p"] == 0.9
    assert sent["metadata"] == {"user_id": "user-42"}
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["tools"] == [
        {"name": "get_weather", "description": "Current weather for a city",
         "input_schema": WEATHER_TOOL["function"]["parameters"]},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "seed" not in sent and "response_format" not in sent
    assert sent["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these pictures, and the weather?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "unknown"},
            {"type": "text", "text": "Thanks"},
            {"type": "text", "text": "Summarise."},
        ]},
    ]


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    (None, None),
])
def test_build_chat_tool_choice(choice, expected):
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER_TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    _, sent = build(body)
    assert sent.get("tool_choice") == expected


def test_build_chat_keeps_cache_control_and_drops_tool_choice_without_tools():
    body = {"messages": [
        {"role": "system",
         "content": [{"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "q"}], "tool_choice": "auto", "max_tokens": 5}
    _, sent = build(body)
    assert sent["system"] == [{"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}]
    assert "tool_choice" not in sent and "tools" not in sent and sent["max_tokens"] == 5


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "assistant",
                   "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "not json"}}]}]},
    {"messages": [{"role": "user", "content": "x"}], "n": 2},
    {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
    {"messages": [{"role": "function", "name": "f", "content": "x"}]},
])
def test_build_chat_rejects_untranslatable(body):
    with pytest.raises(UpstreamFailure) as info:
        adapter.build_chat(DEP, body, stream=False)
    assert info.value.kind == "bad_request" and info.value.retryable is False


# ----------------------------------------------------------------------------- parse_chat
ANSWER = {
    "model": "claude-sonnet-4-5-20250929", "id": "msg_01", "type": "message", "role": "assistant",
    "content": [{"type": "text", "text": "Hello! How can I help?"}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 249, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 100,
              "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 0},
              "output_tokens": 26, "service_tier": "standard"},
}


def test_parse_chat_text_and_cache_usage():
    result = adapter.parse_chat(DEP, json.dumps(ANSWER).encode(), request_id="abc")
    obj = validate_completion(result.body)
    assert obj["id"] == "chatcmpl-abc" and obj["model"] == "claude-sonnet-4-5-20250929"
    assert obj["choices"][0]["message"] == {"role": "assistant", "content": "Hello! How can I help?", "refusal": None}
    assert obj["choices"][0]["finish_reason"] == "stop"
    assert result.usage == Usage(input_tokens=379, cached_input_tokens=100, cache_write_tokens=30, output_tokens=26)
    assert obj["usage"] == {"prompt_tokens": 379, "completion_tokens": 26, "total_tokens": 405,
                            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 30}}


def test_parse_chat_tool_use():
    answer = {**ANSWER, "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "x"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Tokyo"}},
        {"type": "tool_use", "id": "toolu_2", "name": "noop", "input": {}},
    ]}
    obj = validate_completion(adapter.parse_chat(DEP, json.dumps(answer).encode(), request_id="r").body)
    message = obj["choices"][0]["message"]
    assert message["content"] is None and obj["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
    ]


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("pause_turn", "stop"), (None, "stop"),
])
def test_parse_chat_finish_reasons(stop, finish):
    obj = json.loads(adapter.parse_chat(DEP, json.dumps({**ANSWER, "stop_reason": stop}).encode(), request_id="r").body)
    assert obj["choices"][0]["finish_reason"] == finish


def test_parse_chat_bad_bodies():
    for body in (b'{"type": "message", "content": [{"type": "text", "text": "trunc', b'{"type":"message"}', b"null"):
        with pytest.raises(UpstreamFailure) as info:
            adapter.parse_chat(DEP, body, request_id="r")
        assert info.value.kind == "bad_response" and info.value.retryable
        assert "claude-direct" in info.value.message
    no_usage = {k: v for k, v in ANSWER.items() if k != "usage"}
    result = adapter.parse_chat(DEP, json.dumps(no_usage).encode(), request_id="r")
    assert result.usage.estimated and "usage" not in json.loads(result.body)


# ----------------------------------------------------------------------------- streams
FIXTURE = (
    b'event: message_start\n'
    b'data: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_013","type":"message",'
    b'"role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":135,'
    b'"cache_creation_input_tokens":5,"cache_read_input_tokens":20,"cache_creation":{"ephemeral_5m_input_tokens":0,'
    b'"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard",'
    b'"inference_geo":"not_available"}}   }\n\n'
    b'event: content_block_start\n'
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}     }\n\n'
    b'event: ping\n'
    b'data: {"type": "ping"}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"[12345,"}             }\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"67890] \xe2\x9c\x93"}               }\n\n'
    b'event: content_block_stop\n'
    b'data: {"type":"content_block_stop","index":0        }\n\n'
    b'event: message_delta\n'
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":10}             }\n\n'
    b'event: message_stop\n'
    b'data: {"type":"message_stop"              }\n\n'
)


def translator():
    return adapter.stream_translator(DEP, request_id="req9", created=1700000001)


@pytest.mark.parametrize("step", [None, 1, 17])
def test_stream_text_any_split(step):
    t = translator()
    chunks = chunks_of(feed_all(t, FIXTURE, step))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert stream_text(chunks) == "[12345,67890] ✓"
    assert finish_reasons(chunks) == ["stop"] and t.finish_reason == "stop"
    assert {c["id"] for c in chunks} == {"chatcmpl-req9"} and {c["created"] for c in chunks} == {1700000001}
    assert {c["model"] for c in chunks} == {"claude-sonnet-4-5-20250929"}
    assert t.usage == Usage(input_tokens=160, cached_input_tokens=20, cache_write_tokens=5, output_tokens=10)
    assert t.text_chars == len("[12345,67890] ✓")


def test_stream_crlf():
    t = translator()
    chunks = chunks_of(feed_all(t, FIXTURE.replace(b"\n", b"\r\n"), 4))
    assert stream_text(chunks) == "[12345,67890] ✓"


TOOL_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-x","id":"msg_1","type":"message",'
    b'"role":"assistant","content":[],"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text",'
    b'"text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Checking."}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
    b'"id":"toolu_A","name":"get_weather","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"city\\": "}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"\\"Oslo\\"}"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
    b'"id":"toolu_B","name":"noop","input":{}}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},'
    b'"usage":{"output_tokens":40}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def test_stream_tool_use_blocks():
    t = translator()
    chunks = chunks_of(feed_all(t, TOOL_STREAM, 9))
    assert stream_text(chunks) == "Checking."
    assert stream_tool_calls(chunks) == {
        0: {"id": "toolu_A", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        1: {"id": "toolu_B", "name": "noop", "arguments": ""},
    }
    assert finish_reasons(chunks) == ["tool_calls"]
    assert t.usage == Usage(input_tokens=11, output_tokens=40)


def test_stream_error_event_is_classified():
    t = translator()
    assert len(t.feed(FIXTURE.split(b"event: ping")[0])) == 1  # the role chunk
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    assert (info.value.kind, info.value.retryable) == ("server_error", True)
    assert "Overloaded" in info.value.message and "claude-direct" in info.value.message
    t = translator()
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}\n\n')
    assert info.value.kind == "rate_limit"
    t = translator()
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error","message":"bad"}}\n\n')
    assert info.value.kind == "bad_request" and not info.value.retryable


def test_stream_malformed_and_truncated():
    t = translator()
    with pytest.raises(UpstreamFailure) as info:
        t.feed(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
               b'"delta":{"type":"text_del\n\n')
    assert info.value.kind == "bad_response"
    t = translator()
    t.feed(FIXTURE.split(b"event: message_delta")[0])
    with pytest.raises(UpstreamFailure) as info:
        t.finish()
    assert info.value.retryable
    t = translator()  # message_delta arrived, message_stop did not: still a complete answer
    events = feed_all(t, FIXTURE.split(b"event: message_stop")[0])
    assert finish_reasons(chunks_of(events)) == ["stop"]


# ----------------------------------------------------------------------------- errors & embeddings
def anthropic_error(type_, message):
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_1"}).encode()


@pytest.mark.parametrize(("status", "type_", "kind", "retryable"), [
    (400, "invalid_request_error", "bad_request", False),
    (401, "authentication_error", "auth", False),
    (402, "billing_error", "quota", False),
    (403, "permission_error", "auth", False),
    (404, "not_found_error", "not_found", False),
    (413, "request_too_large", "bad_request", False),
    (429, "rate_limit_error", "rate_limit", True),
    (500, "api_error", "server_error", True),
    (504, "timeout_error", "server_error", True),
    (529, "overloaded_error", "server_error", True),
])
def test_parse_error(status, type_, kind, retryable):
    result = adapter.parse_error(DEP, status, {"retry-after": "3"},
                                 anthropic_error(type_, "Overloaded" if status == 529 else "msg"))
    assert (result.kind, result.retryable, result.status, result.retry_after) == (kind, retryable, status, 3.0)
    assert result.message.startswith(f"claude-direct answered {status} (")


def test_parse_error_overloaded_message():
    result = adapter.parse_error(DEP, 529, {}, anthropic_error("overloaded_error", "Overloaded"))
    assert result.message == "claude-direct answered 529 (overloaded): Overloaded"


def test_no_embeddings():
    with pytest.raises(UpstreamFailure) as info:
        adapter.build_embeddings(DEP, {"input": "x"})
    assert info.value.kind == "bad_request" and "Anthropic has no embeddings API" in info.value.message
    with pytest.raises(UpstreamFailure):
        adapter.parse_embeddings(DEP, b"{}")


# ----------------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key="sk-ant-fake", reply="Bonjour from the fake Claude.") as server:
        yield server


@pytest.fixture
def upstream(fake):
    fake.clear_faults()
    fake.tool_call = None
    fake.usage = None
    return make_deployment("anthropic", base_url=fake.base_url, api_key="sk-ant-fake", model_id="claude-sonnet-4-5")


BODY = {"model": "alias", "messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]}


def test_round_trip_chat(fake, upstream):
    fake.usage = {"input_tokens": 50, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 10,
                  "output_tokens": 7}
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    assert resp.status_code == 200, resp.text
    sent = fake.last_request
    assert sent.headers["x-api-key"] == "sk-ant-fake" and sent.json["system"] == "Be nice."
    result = adapter.parse_chat(upstream, resp.content, request_id="r")
    obj = validate_completion(result.body)
    assert obj["choices"][0]["message"]["content"] == "Bonjour from the fake Claude."
    assert result.usage == Usage(input_tokens=90, cached_input_tokens=30, cache_write_tokens=10, output_tokens=7)


def test_round_trip_stream(fake, upstream):
    fake.usage = {"input_tokens": 50, "cache_read_input_tokens": 30, "output_tokens": 7}
    t = adapter.stream_translator(upstream, request_id="r", created=5)
    chunks = chunks_of(run_stream(adapter.build_chat(upstream, BODY, stream=True), t))
    assert stream_text(chunks) == "Bonjour from the fake Claude."
    assert finish_reasons(chunks) == ["stop"]
    assert t.usage == Usage(input_tokens=80, cached_input_tokens=30, output_tokens=7)


def test_round_trip_tool_call(fake, upstream):
    fake.tool_call = {"arguments": {"city": "Lima", "units": "metric"}}
    body = {**BODY, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    resp = send(adapter.build_chat(upstream, body, stream=False))
    assert fake.last_request.json["tool_choice"] == {"type": "tool", "name": "get_weather"}
    obj = validate_completion(adapter.parse_chat(upstream, resp.content, request_id="r").body)
    call = obj["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Lima", "units": "metric"}
    assert obj["choices"][0]["finish_reason"] == "tool_calls"

    t = adapter.stream_translator(upstream, request_id="r", created=5)
    chunks = chunks_of(run_stream(adapter.build_chat(upstream, body, stream=True), t))
    calls = stream_tool_calls(chunks)
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Lima", "units": "metric"}
    assert t.finish_reason == "tool_calls"

    # the answer goes back as a tool_result and the conversation continues
    follow = {**body, "messages": [*BODY["messages"], obj["choices"][0]["message"],
                                   {"role": "tool", "tool_call_id": call["id"], "content": "21C"}]}
    fake.tool_call = None
    resp = send(adapter.build_chat(upstream, follow, stream=False))
    assert resp.status_code == 200
    messages = fake.last_request.json["messages"]
    assert messages[1]["content"][0]["type"] == "tool_use"
    assert messages[2]["content"][0] == {"type": "tool_result", "tool_use_id": call["id"], "content": "21C"}


def test_round_trip_faults(fake, upstream):
    fake.set_fault("stream_error", times=1)
    with pytest.raises(UpstreamFailure) as info:
        run_stream(adapter.build_chat(upstream, BODY, stream=True),
                   adapter.stream_translator(upstream, request_id="r", created=1))
    assert info.value.kind == "server_error" and info.value.retryable

    fake.set_fault("malformed", times=1)
    with pytest.raises(UpstreamFailure) as info:
        run_stream(adapter.build_chat(upstream, BODY, stream=True),
                   adapter.stream_translator(upstream, request_id="r", created=1))
    assert info.value.kind == "bad_response"

    fake.set_fault("status", status=529, times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert (result.kind, result.retryable) == ("server_error", True) and "Overloaded" in result.message

    fake.set_fault("status", status=429, times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "rate_limit" and result.retry_after == 1.0

    wrong = make_deployment("anthropic", base_url=upstream.base_url, api_key="sk-ant-wrong")
    resp = send(adapter.build_chat(wrong, BODY, stream=False))
    result = adapter.parse_error(wrong, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "auth" and "sk-ant-wrong" not in result.message
