"""The built-in mock provider: deterministic, in-process answers in the OpenAI shape."""

from __future__ import annotations

import base64
import json
import struct

from providers.adapters import mock
from providers.adapters.types import Usage

from .helpers import (
    WEATHER_TOOL,
    chunks_of,
    finish_reasons,
    make_deployment,
    stream_text,
    stream_tool_calls,
    validate_completion,
    validate_embeddings,
)

DEP = make_deployment("mock", name="mock", base_url="", api_key="", model_id="mock-fast")
EMBED = make_deployment("mock", name="mock", base_url="", api_key="", model_id="mock-embed", mode="embedding")
BODY = {"model": "alias", "messages": [{"role": "system", "content": "Be helpful."},
                                       {"role": "user", "content": "Tell me a story about a dragon."}]}


def test_complete_chat_is_deterministic():
    result = mock.complete_chat(DEP, BODY, request_id="r1")
    obj = validate_completion(result.body)
    reply = "Mock reply to: Tell me a story about a dragon."
    assert obj["id"] == "chatcmpl-r1" and obj["model"] == "mock-fast"
    assert obj["choices"][0]["message"]["content"] == reply and obj["choices"][0]["finish_reason"] == "stop"
    prompt_chars = len("Be helpful.") + len("Tell me a story about a dragon.")
    assert result.usage == Usage(input_tokens=-(-prompt_chars // 4), output_tokens=-(-len(reply) // 4))
    assert obj["usage"]["prompt_tokens"] == result.usage.input_tokens
    again = mock.complete_chat(DEP, BODY, request_id="r1")
    assert json.loads(again.body)["choices"] == obj["choices"]


def test_complete_chat_quotes_at_most_60_chars_of_parts():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 100}]}]}
    result = mock.complete_chat(DEP, body, request_id="r")
    assert json.loads(result.body)["choices"][0]["message"]["content"] == "Mock reply to: " + "x" * 60


def test_max_tokens_truncates_with_length():
    result = mock.complete_chat(DEP, {**BODY, "max_tokens": 3}, request_id="r")
    obj = validate_completion(result.body)
    assert obj["choices"][0]["finish_reason"] == "length"
    assert obj["choices"][0]["message"]["content"] == "Mock reply t"
    assert result.usage.output_tokens == 3


def test_tool_call_for_weather():
    body = {"messages": [{"role": "user", "content": "What's the weather in Paris?"}], "tools": [WEATHER_TOOL]}
    result = mock.complete_chat(DEP, body, request_id="r7")
    obj = validate_completion(result.body)
    call = obj["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "mock"}
    assert call["id"] == "call_r7" and obj["choices"][0]["finish_reason"] == "tool_calls"
    assert obj["choices"][0]["message"]["content"] is None


def test_tool_choice_forces_or_forbids():
    other = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    body = {"messages": [{"role": "user", "content": "hello"}], "tools": [WEATHER_TOOL, other]}
    assert "tool_calls" not in json.loads(mock.complete_chat(DEP, body, request_id="r").body)["choices"][0]["message"]
    forced = {**body, "tool_choice": {"type": "function", "function": {"name": "lookup"}}}
    call = json.loads(mock.complete_chat(DEP, forced, request_id="r").body)["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "lookup", "arguments": "{}"}
    required = {**body, "tool_choice": "required"}
    call = json.loads(mock.complete_chat(DEP, required, request_id="r").body)["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    none = {**body, "messages": [{"role": "user", "content": "weather?"}], "tool_choice": "none"}
    assert "tool_calls" not in json.loads(mock.complete_chat(DEP, none, request_id="r").body)["choices"][0]["message"]


def test_stream_chat_matches_complete_chat():
    events, usage = mock.stream_chat(DEP, BODY, request_id="r1", created=1700000000)
    chunks = chunks_of(events)
    assert all(not e.startswith(b"data: [DONE]") for e in events)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    complete = json.loads(mock.complete_chat(DEP, BODY, request_id="r1").body)
    assert stream_text(chunks) == complete["choices"][0]["message"]["content"]
    assert len(chunks) > 3 and finish_reasons(chunks) == ["stop"]
    assert {c["created"] for c in chunks} == {1700000000} and {c["id"] for c in chunks} == {"chatcmpl-r1"}
    assert usage == mock.complete_chat(DEP, BODY, request_id="r1").usage


def test_stream_chat_tool_call_and_length():
    body = {"messages": [{"role": "user", "content": "weather please"}], "tools": [WEATHER_TOOL]}
    events, usage = mock.stream_chat(DEP, body, request_id="r2", created=1)
    chunks = chunks_of(events)
    assert stream_tool_calls(chunks) == {0: {"id": "call_r2", "name": "get_weather", "arguments": '{"city":"mock"}'}}
    assert finish_reasons(chunks) == ["tool_calls"] and usage.output_tokens > 0
    events, usage = mock.stream_chat(DEP, {**BODY, "max_completion_tokens": 2}, request_id="r", created=1)
    chunks = chunks_of(events)
    assert stream_text(chunks) == "Mock rep" and finish_reasons(chunks) == ["length"] and usage.output_tokens == 2


def test_embed_deterministic():
    body, usage = mock.embed(EMBED, {"model": "alias", "input": ["hello", "world!"]})
    obj = validate_embeddings(body)
    assert obj["model"] == "mock-embed" and [d["index"] for d in obj["data"]] == [0, 1]
    first = obj["data"][0]["embedding"]
    assert len(first) == 8 and abs(sum(v * v for v in first) - 1) < 1e-4
    assert first != obj["data"][1]["embedding"]
    assert usage == Usage(input_tokens=2 + 2) and obj["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    again, _ = mock.embed(EMBED, {"input": "hello"})
    assert json.loads(again)["data"][0]["embedding"] == first


def test_embed_dimensions_and_base64():
    body, _ = mock.embed(EMBED, {"input": "hello", "dimensions": 40, "encoding_format": "base64"})
    obj = json.loads(body)  # the SDK's model types the decoded list; on the wire it is a string
    raw = base64.b64decode(obj["data"][0]["embedding"])
    assert len(struct.unpack("<40f", raw)) == 40
    body, usage = mock.embed(EMBED, {"input": [1, 2, 3, 4, 5]})
    assert len(json.loads(body)["data"]) == 1 and usage.input_tokens == 5
