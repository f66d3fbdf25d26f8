"""The Messages door's pure translation (providers/adapters/messages_door.py): request checks,
Messages -> Chat Completions, chat answers and chunk streams -> Messages (checked against the
anthropic SDK's own event types), the relay's request and the tap that reads a relayed stream."""

import json

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from providers.adapters.anthropic import usage_from_anthropic
from providers.adapters.messages_door import (
    AnthropicStreamTap,
    MessagesStreamTranslator,
    chat_request_from_messages,
    client_ids,
    count_tokens_estimate,
    message_from_chat,
    messages_request_problem,
    reasoning_effort,
    relay_request,
    returned_headers,
    thinking_wanted,
    usage_to_anthropic,
)
from providers.adapters.sse import ChunkBuilder
from providers.adapters.types import UpstreamFailure, Usage
from tests.providers.adapters.helpers import make_deployment

EVENT = TypeAdapter(RawMessageStreamEvent)
HELLO = [{"role": "user", "content": "Hi"}]


def minimal(**fields):
    return {"model": "m", "max_tokens": 10, "messages": HELLO, **fields}


# --- checks ----------------------------------------------------------------------------------


def test_a_well_formed_request_has_no_problem():
    assert messages_request_problem(minimal(system=[{"type": "text", "text": "x"}], stream=True, tools=[
        {"name": "f", "input_schema": {"type": "object"}}], tool_choice={"type": "tool", "name": "f"},
        metadata={"user_id": "u"}, thinking={"type": "enabled", "budget_tokens": 1024}, top_k=3)) is None


@pytest.mark.parametrize("fields, field, words", [
    ({"max_tokens": None}, "max_tokens", "is required"),
    ({"max_tokens": 0}, "max_tokens", "positive integer"),
    ({"max_tokens": True}, "max_tokens", "positive integer"),
    ({"model": 3}, "model", "must be a string"),
    ({"messages": []}, "messages", "non-empty list"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0", "role 'tool'"),
    ({"messages": [{"role": "user", "content": 1}]}, "messages.0.content", "string or a list"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content", "with a 'type'"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}, "messages.0.content", "tool_use_id"),
    ({"system": 5}, "system", "string or a list of text blocks"),
    ({"stream": "yes"}, "stream", "true or false"),
    ({"temperature": "hot"}, "temperature", "a number"),
    ({"stop_sequences": "END"}, "stop_sequences", "list of strings"),
    ({"tools": [{"input_schema": {}}]}, "tools", "list of {name"),
    ({"tool_choice": {"type": "required"}}, "tool_choice", "auto | any | none"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice", "needs the tool's 'name'"),
    ({"metadata": {"user_id": 7}}, "metadata.user_id", "a string"),
])
def test_each_problem_names_its_field_and_the_fix(fields, field, words):
    problem = messages_request_problem(minimal(**fields))
    assert problem is not None and problem[0] == field and words in problem[1]


def test_thinking_is_wanted_when_enabled_or_adaptive():
    assert thinking_wanted(minimal(thinking={"type": "enabled", "budget_tokens": 1024}))
    assert thinking_wanted(minimal(thinking={"type": "adaptive"}))
    assert not thinking_wanted(minimal(thinking={"type": "disabled"})) and not thinking_wanted(minimal())


def test_the_ledger_ids_come_from_metadata_user_id_claude_codes_json_included():
    assert client_ids(minimal(metadata={"user_id": "alice"})) == ("alice", "")
    claude_code = '{"device_id":"dev1","account_uuid":"","session_id":"sess-9"}'
    assert client_ids(minimal(metadata={"user_id": claude_code})) == ("dev1", "sess-9")
    assert client_ids(minimal(metadata={"user_id": '{"account_uuid":"acc","session_id":"s"}'})) == ("acc", "s")
    assert client_ids(minimal(metadata={"user_id": "{not json"})) == ("{not json", "")
    assert client_ids(minimal()) == ("", "")


# --- Messages -> Chat Completions ------------------------------------------------------------


def test_a_full_conversation_becomes_chat_messages_in_order():
    body = minimal(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Use metric."}],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "Look: "},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                 "title": "spec.pdf"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain doc"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18 C"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no clock", "is_error": True},
                {"type": "text", "text": "Thanks"}]},
        ],
        stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=4, metadata={"user_id": "u-1"}, stream=True,
    )
    chat = chat_request_from_messages(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse metric."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look: "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "spec.pdf"}},
            {"type": "text", "text": "plain doc"}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no clock"},
        {"role": "user", "content": "Thanks"},
    ]
    assert (chat["model"], chat["max_tokens"], chat["stop"], chat["temperature"], chat["top_p"], chat["top_k"],
            chat["user"], chat["stream"]) == ("m", 10, ["END"], 0.5, 0.9, 4, "u-1", True)
    assert "top_k" not in chat_request_from_messages(body, top_k=False)


@pytest.mark.parametrize("thinking, effort", [
    ({"type": "enabled", "budget_tokens": 1024}, "low"),
    ({"type": "enabled", "budget_tokens": 4095}, "low"),
    ({"type": "enabled", "budget_tokens": 4096}, "medium"),
    ({"type": "enabled", "budget_tokens": 16383}, "medium"),
    ({"type": "enabled", "budget_tokens": 16384}, "high"),
    ({"type": "enabled", "budget_tokens": 64000}, "high"),
    ({"type": "enabled"}, None),
    ({"type": "disabled"}, None),
    ({"type": "adaptive"}, None),
    (None, None),
])
def test_thinking_budget_becomes_reasoning_effort_where_asked(thinking, effort):
    body = minimal(**({"thinking": thinking} if thinking is not None else {}))
    assert reasoning_effort(body) == effort
    assert chat_request_from_messages(body, effort=True).get("reasoning_effort") == effort
    assert "reasoning_effort" not in chat_request_from_messages(body)  # not for upstreams that do not take it


def test_an_image_a_tool_returned_follows_its_result_in_a_user_message():
    png = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
    body = minimal(messages=[*HELLO, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "read", "input": {"path": "a.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [png]}]}])
    assert chat_request_from_messages(body)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "(attached below)"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}]


def test_several_text_blocks_stay_several_parts():
    body = minimal(messages=[{"role": "user", "content": [{"type": "text", "text": "<reminder>x</reminder>"},
                                                          {"type": "text", "text": "Say hello"}]}])
    assert chat_request_from_messages(body)["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "<reminder>x</reminder>"}, {"type": "text", "text": "Say hello"}]}]


def test_system_messages_between_turns_stay_system_messages():
    body = minimal(messages=[*HELLO, {"role": "system", "content": [{"type": "text", "text": "Reminder."}]},
                             {"role": "user", "content": "Go on"}])
    assert chat_request_from_messages(body)["messages"] == [
        *HELLO, {"role": "system", "content": "Reminder."}, {"role": "user", "content": "Go on"}]


@pytest.mark.parametrize("choice, expected, parallel", [
    ({"type": "auto"}, "auto", None),
    ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}, None),
])
def test_tools_and_tool_choice(choice, expected, parallel):
    tools = [{"name": "f", "description": "does f", "input_schema": {"type": "object", "properties": {}}},
             {"type": "web_search_20250305", "name": "web_search"}]  # a server tool: nothing to send it to
    chat = chat_request_from_messages(minimal(tools=tools, tool_choice=choice))
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {}}, "description": "does f"}}]
    assert chat["tool_choice"] == expected and chat.get("parallel_tool_calls") is parallel


def test_tool_choice_none_sends_no_tools():
    chat = chat_request_from_messages(minimal(tools=[{"name": "f"}], tool_choice={"type": "none"}))
    assert "tools" not in chat and "tool_choice" not in chat


# --- answers back -----------------------------------------------------------------------------


def test_a_chat_answer_becomes_a_message_the_sdk_accepts():
    chat = {"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "{not json"}}]}}]}
    usage = Usage(input_tokens=100, cached_input_tokens=30, cache_write_tokens=20, cache_write_1h_tokens=5,
                  output_tokens=12)
    message = message_from_chat(chat, usage, message_id="msg_1")
    parsed = Message.model_validate(message)
    assert [b.type for b in parsed.content] == ["text", "tool_use", "tool_use"]
    assert parsed.content[1].input == {"city": "Paris"} and parsed.content[2].input == {"arguments": "{not json"}
    assert (parsed.stop_reason, parsed.model, parsed.id) == ("tool_use", "gpt-4o-mini", "msg_1")
    assert message["usage"] == {"input_tokens": 50, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30,
                                "cache_creation": {"ephemeral_5m_input_tokens": 15, "ephemeral_1h_input_tokens": 5},
                                "output_tokens": 12}


@pytest.mark.parametrize("finish, stop", [("stop", "end_turn"), ("length", "max_tokens"),
                                          ("content_filter", "refusal"), (None, "end_turn")])
def test_finish_reasons_become_stop_reasons(finish, stop):
    chat = {"choices": [{"finish_reason": finish, "message": {"content": "x"}}]}
    assert message_from_chat(chat, Usage(), message_id="m")["stop_reason"] == stop


def test_usage_round_trips_through_the_anthropic_shape():
    usage = Usage(input_tokens=460, cached_input_tokens=100, cache_write_tokens=60, cache_write_1h_tokens=20,
                  output_tokens=40)
    again = usage_from_anthropic(usage_to_anthropic(usage))
    assert again == usage


def events_of(data: list[bytes]) -> list[dict]:
    out = []
    for event in b"".join(data).decode().split("\n\n"):
        if event:
            name, payload = event.split("\n")
            obj = json.loads(payload[len("data: "):])
            assert name == f"event: {obj['type']}"
            if obj["type"] != "ping":  # the SDK skips pings; it has no type for them
                EVENT.validate_python(obj)  # the SDK's own type for it
            out.append(obj)
    return out


def test_a_chunk_stream_becomes_anthropic_events_in_order():
    chunks = ChunkBuilder("chatcmpl-1", 1, "gpt")
    translator = MessagesStreamTranslator(message_id="msg_1", model="gpt", input_tokens=7)
    out = translator.feed([chunks.role(), chunks.content("Hel")])
    out += translator.feed([chunks.content("lo"), chunks.delta({"tool_calls": [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]})])
    out += translator.feed([chunks.delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
                            chunks.delta({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                            chunks.delta({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                                          "function": {"name": "g", "arguments": "{}"}}]}),
                            chunks.finish("tool_calls"), b"data: [DONE]\n\n"])
    out += translator.finish(Usage(input_tokens=9, output_tokens=5))
    assert translator.finish(Usage()) == []  # once
    events = events_of(out)
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None), ("ping", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1), ("content_block_stop", 1),
        ("content_block_start", 2), ("content_block_delta", 2), ("content_block_stop", 2),
        ("message_delta", None), ("message_stop", None),
    ]
    assert events[6]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}
    assert "".join(e["delta"].get("partial_json", "") for e in events[7:9]) == '{"a":1}'
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    # the start has the request's estimate; the end has the real counts
    assert (events[0]["message"]["usage"]["input_tokens"], events[0]["message"]["usage"]["output_tokens"]) == (7, 0)
    assert (events[-2]["usage"]["input_tokens"], events[-2]["usage"]["output_tokens"]) == (9, 5)


def test_reasoning_becomes_thinking_blocks_when_the_request_asked_for_thinking():
    chat = {"choices": [{"finish_reason": "stop", "message": {"content": "42", "reasoning_content": "6 x 7"}}]}
    asked = message_from_chat(chat, Usage(), message_id="m", thinking=True)
    assert [b["type"] for b in asked["content"]] == ["thinking", "text"] and asked["content"][0]["thinking"] == "6 x 7"
    Message.model_validate(asked)
    assert [b["type"] for b in message_from_chat(chat, Usage(), message_id="m")["content"]] == ["text"]
    chunks = ChunkBuilder("c", 1, "r1")
    translator = MessagesStreamTranslator(message_id="m", model="r1", thinking=True)
    out = translator.feed([chunks.role(), chunks.delta({"reasoning": "6 x "}), chunks.delta({"reasoning": "7"}),
                           chunks.content("42"), chunks.finish("stop")])
    events = events_of(out + translator.finish(Usage(output_tokens=3)))
    blocks = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"]
    assert blocks == ["thinking", "text"] and deltas == ["thinking_delta", "thinking_delta", "text_delta"]
    plain = MessagesStreamTranslator(message_id="m", model="r1")
    assert "thinking" not in b"".join(plain.feed([chunks.delta({"reasoning": "x"})])).decode()


def test_an_empty_chunk_stream_still_ends_properly():
    translator = MessagesStreamTranslator(message_id="msg_1", model="gpt")
    events = events_of(translator.finish(Usage(output_tokens=1, estimated=True)))
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]


# --- relaying ---------------------------------------------------------------------------------


def test_the_relay_sends_the_bytes_as_they_came_when_it_can():
    d = make_deployment("anthropic", base_url="http://a.invalid", api_key="sk-ant-1", model_id="claude-x")
    raw = b'{"model":"claude-x",  "max_tokens":5,"messages":[]}'
    up = relay_request(d, orjson.loads(raw), raw, headers={"anthropic-version": "2026-01-01",
                                                           "anthropic-beta": "a,b"})
    assert up.body is raw and up.url == "http://a.invalid/v1/messages"
    assert (up.headers["anthropic-version"], up.headers["anthropic-beta"], up.headers["x-api-key"]) == (
        "2026-01-01", "a,b", "sk-ant-1")
    renamed = relay_request(d, {"model": "up:claude-x", "max_tokens": 5, "unknown": [1]}, b"{}", headers={})
    assert orjson.loads(renamed.body) == {"model": "claude-x", "max_tokens": 5, "unknown": [1]}
    assert renamed.headers["anthropic-version"] == "2023-06-01"  # ours when the client sends none


def test_only_rate_limit_retry_and_id_headers_of_an_anthropic_answer_go_back():
    reset = "2026-12-06T00:00:00Z"
    upstream = {"Anthropic-RateLimit-Requests-Limit": "50", "anthropic-ratelimit-output-tokens-reset": reset,
                "Retry-After": "3", "request-id": "req_up_1", "set-cookie": "s=1", "x-api-key": "sk-ant-1",
                "server": "cloudflare", "anthropic-organization-id": "org-1", "anthropic-ratelimit-odd": "caf\u00e9",
                "anthropic-ratelimit-long": "9" * 300}
    assert returned_headers(upstream) == [
        (b"anthropic-ratelimit-requests-limit", b"50"), (b"anthropic-ratelimit-output-tokens-reset", reset.encode()),
        (b"retry-after", b"3"), (b"request-id", b"req_up_1")]


def anthropic_stream(*events: dict) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"   \n\n" for e in events)


STREAM = anthropic_stream(
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                                          "content": [], "usage": {"input_tokens": 10, "cache_read_input_tokens": 5,
                                                                   "cache_creation_input_tokens": 8,
                                                                   "cache_creation": {"ephemeral_5m_input_tokens": 2,
                                                                                      "ephemeral_1h_input_tokens": 6},
                                                                   "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
)


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
def test_the_tap_passes_every_byte_on_and_reads_the_usage(size):
    tap = AnthropicStreamTap(make_deployment("anthropic"))
    out = []
    for i in range(0, len(STREAM), size):
        out += tap.feed(STREAM[i:i + size])
    out += tap.finish()
    assert b"".join(out) == STREAM
    assert tap.usage == Usage(input_tokens=23, cached_input_tokens=5, cache_write_tokens=8, cache_write_1h_tokens=6,
                              output_tokens=7)
    assert tap.complete and tap.failure is None and tap.finish_reason == "end_turn" and tap.text_chars > 0


def test_the_tap_raises_before_the_first_event_and_keeps_a_later_error():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamFailure) as first:
        AnthropicStreamTap(make_deployment("anthropic")).feed(anthropic_stream(error))
    assert first.value.kind == "server_error" and first.value.retryable
    with pytest.raises(UpstreamFailure):
        AnthropicStreamTap(make_deployment("anthropic")).finish()  # nothing at all
    tap = AnthropicStreamTap(make_deployment("anthropic"))
    cut = STREAM.split(b"event: message_delta")[0]
    assert b"".join(tap.feed(cut) + tap.feed(anthropic_stream(error)) + tap.finish()) == cut + anthropic_stream(error)
    assert tap.failure is not None and not tap.complete


def test_count_tokens_estimate_is_about_four_characters_a_token():
    assert count_tokens_estimate(minimal(messages=[{"role": "user", "content": "x" * 4000}])) in range(1000, 1020)


def test_the_tap_knows_when_a_ping_may_go_in():
    tap = AnthropicStreamTap(make_deployment("anthropic"))
    first, rest = STREAM.split(b"event: content_block_start")
    tap.feed(first)
    assert tap.between_events  # message_start went out whole
    tap.feed(b"event: content_block_start\ndata: {")
    assert not tap.between_events  # half an event: a ping here would break it
    tap.feed(rest[len(b"\ndata: {"):].split(b"event: ping")[0])
    assert tap.between_events


def test_cache_control_markers_survive_the_chat_translation_only_when_asked():
    mark = {"type": "ephemeral"}
    body = minimal(
        system=[{"type": "text", "text": "Rules."}, {"type": "text", "text": "Long doc.", "cache_control": mark}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": mark}]},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {},
                                                     "cache_control": mark}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok",
                                                "cache_control": mark}]}],
        tools=[{"name": "f", "input_schema": {"type": "object"}, "cache_control": mark}])
    chat = chat_request_from_messages(body, cache=True)
    assert chat["messages"][0] == {"role": "system", "content": [
        {"type": "text", "text": "Rules."}, {"type": "text", "text": "Long doc.", "cache_control": mark}]}
    assert chat["messages"][1] == {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": mark}]}
    assert chat["messages"][2]["cache_control"] == mark and chat["messages"][2]["tool_calls"][0]["id"] == "t1"
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "ok", "cache_control": mark}
    assert chat["tools"][0]["cache_control"] == mark
    plain = chat_request_from_messages(body)
    assert "cache_control" not in json.dumps(plain)
    assert plain["messages"][0] == {"role": "system", "content": "Rules.\n\nLong doc."}


def test_signed_thinking_blocks_travel_both_ways_for_an_upstream_that_keeps_them():
    thought = {"type": "thinking", "thinking": "6 x 7", "signature": "c2ln"}
    body = minimal(messages=[*HELLO, {"role": "assistant", "content": [
        thought, {"type": "redacted_thinking", "data": "ZW5j"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}])
    asked = chat_request_from_messages({**body, "thinking": {"type": "enabled", "budget_tokens": 5000}},
                                       thoughts=True, effort=True)
    assert asked["thinking"] == {"type": "enabled", "budget_tokens": 5000} and asked["reasoning_effort"] == "medium"
    kept = asked["messages"][1]
    assert kept["thinking_blocks"] == [thought, {"type": "redacted_thinking", "data": "ZW5j"}]
    assert "thinking_blocks" not in chat_request_from_messages(body)["messages"][1]
    chat = {"choices": [{"finish_reason": "stop", "message": {
        "content": "42", "reasoning_content": "6 x 7", "thinking_blocks": [thought]}}]}
    message = message_from_chat(chat, Usage(), message_id="m", thinking=True)
    assert message["content"][0] == thought and [b["type"] for b in message["content"]] == ["thinking", "text"]
    Message.model_validate(message)
    chunks = ChunkBuilder("c", 1, "claude")
    translator = MessagesStreamTranslator(message_id="m", model="claude", thinking=True)
    out = translator.feed([chunks.role(), chunks.delta({"reasoning_content": "6 x 7"}),
                           chunks.delta({"thinking_blocks": [thought]}), chunks.content("42"), chunks.finish("stop")])
    events = events_of(out + translator.finish(Usage(output_tokens=3)))
    for event in events:
        if event["type"] != "ping":
            TypeAdapter(RawMessageStreamEvent).validate_python(event)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert [d["type"] for d in deltas] == ["thinking_delta", "signature_delta", "text_delta"]
    assert deltas[1]["signature"] == "c2ln"
