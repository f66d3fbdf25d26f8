"""The Responses door's wire translation: Responses requests as Chat Completions requests, chat
answers as ``response`` objects, chat chunk streams as Responses events (split anywhere), the
usage both ways, and the relay's request and usage watcher. Checked against the OpenAI SDK's
own models where it has them."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from core.errors import InvalidInput
from providers.adapters import responses_door as door
from providers.adapters.sse import ChunkBuilder
from providers.adapters.types import UpstreamFailure, Usage

from .helpers import make_deployment

STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}


# ----------------------------------------------------------------------------- requests
def test_string_input_with_instructions_and_settings():
    chat = door.chat_request({
        "model": "gpt-x", "instructions": "Be terse.", "input": "Hi", "max_output_tokens": 300,
        "temperature": 0.2, "top_p": 0.9, "user": "u-7", "metadata": {"a": "b"}, "store": True,
        "reasoning": {"effort": "low", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "parallel_tool_calls": False, "stream": True, "truncation": "auto",
    })
    assert chat == {
        "model": "gpt-x",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.2, "top_p": 0.9, "parallel_tool_calls": False, "metadata": {"a": "b"}, "user": "u-7",
        "stream": True, "max_completion_tokens": 300, "reasoning_effort": "low",
    }


def test_items_roles_parts_and_tool_round_trip():
    chat = door.chat_request({"model": "m", "input": [
        {"role": "developer", "content": "Use metric units."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather here?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "low"},
            {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp_c\":18}"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "4"}]},
    ], "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}})
    assert chat["messages"] == [
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":18}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "4"},
    ]
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather", "parameters": WEATHER["parameters"], "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_function_call_without_assistant_text_opens_an_assistant_turn():
    chat = door.chat_request({"model": "m", "input": [
        {"role": "user", "content": "w?"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]})
    assert chat["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_text_format_and_allowed_tools():
    other = {**WEATHER, "name": "other"}
    chat = door.chat_request({"model": "m", "input": "x", "tools": [WEATHER, other],
                              "tool_choice": {"type": "allowed_tools", "mode": "required",
                                              "tools": [{"type": "function", "name": "other"}]},
                              "text": {"format": {"type": "json_schema", "name": "answer", "strict": True,
                                                  "schema": {"type": "object"}}, "verbosity": "low"}})
    assert [t["function"]["name"] for t in chat["tools"]] == ["other"]
    assert chat["tool_choice"] == "required"
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object"}, "strict": True}}
    assert chat["verbosity"] == "low"
    assert door.chat_request({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})[
        "response_format"] == {"type": "json_object"}
    plain = door.chat_request({"model": "m", "input": "x", "text": {"format": {"type": "text"}}})
    assert "response_format" not in plain


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id", "whole conversation"),
    ({"input": "x", "conversation": "conv_1"}, "conversation", "whole conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input", "whole conversation"),
    ({"input": "x", "background": True}, "background", "without it"),
    ({"input": "x", "tools": [{"type": "custom", "name": "apply_patch"}]}, "tools", "custom"),
    ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input", "web_search_call"),
    ({"input": ""}, "input", "empty"),
    ({"input": 3}, "input", "non-empty string"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input", "role"),
    ({"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}]}, "input", "assistant"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input", "call_id"),
    ({"input": "x", "max_output_tokens": "many"}, "max_output_tokens", "positive integer"),
    ({"input": "x", "tool_choice": {"type": "web_search"}}, "tool_choice", "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text", "json_schema"),
])
def test_what_cannot_be_translated_is_a_clear_400(body, field, words):
    with pytest.raises(InvalidInput) as caught:
        door.chat_request({"model": "m", **body})
    assert caught.value.field == field
    assert words in caught.value.message


def test_namespaced_tools_are_flattened_and_hosted_tools_left_out():
    request = {"model": "m", "tools": [
        WEATHER, {"type": "web_search"}, {"type": "namespace", "name": "crm", "description": "CRM",
                                          "tools": [{"type": "function", "name": "lookup", "parameters": {}}]}],
        "input": [{"role": "user", "content": "x"},
                  {"type": "function_call", "call_id": "c1", "namespace": "crm", "name": "lookup", "arguments": "{}"}]}
    chat = door.chat_request(request)
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_weather", "crm__lookup"]
    assert chat["messages"][1]["tool_calls"][0]["function"]["name"] == "crm__lookup"
    answer = chat_answer({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c2", "type": "function", "function": {"name": "crm__lookup", "arguments": "{}"}}]}, "tool_calls")
    resp = Response.model_validate_json(door.response_from_chat(answer, USAGE, request=request, resp_id="resp_n"))
    assert (resp.output[0].namespace, resp.output[0].name) == ("crm", "lookup")
    streamed = door.ChatToResponsesStream(request, resp_id="resp_n", model="m", created=1)
    build = ChunkBuilder("c", 1, "m")
    events = parse_events(streamed.start() + streamed.feed(build.delta({"tool_calls": [
        {"index": 0, "id": "c3", "type": "function", "function": {"name": "crm__lookup", "arguments": "{}"}}]}))
        + streamed.finish(USAGE))
    done = [e for e in events if e["type"] == "response.output_item.done"][0]["item"]
    assert (done["namespace"], done["name"]) == ("crm", "lookup")


# ----------------------------------------------------------------------------- answers
def chat_answer(message, finish_reason="stop", model="claude-x"):
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
                       "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}).encode()


USAGE = Usage(input_tokens=120, cached_input_tokens=100, output_tokens=40, reasoning_tokens=15)


def test_text_answer_as_response_object():
    request = {"model": "alias", "input": "Hi", "instructions": "Be terse.", "max_output_tokens": 50,
               "metadata": {"k": "v"}}
    raw = door.response_from_chat(chat_answer({"role": "assistant", "content": "Hello!"}), USAGE,
                                  request=request, resp_id="resp_abc")
    resp = Response.model_validate_json(raw)
    assert resp.id == "resp_abc" and resp.object == "response" and resp.status == "completed"
    assert resp.model == "claude-x" and resp.output_text == "Hello!"
    assert resp.instructions == "Be terse." and resp.max_output_tokens == 50 and resp.metadata == {"k": "v"}
    assert resp.usage.input_tokens == 120 and resp.usage.output_tokens == 40 and resp.usage.total_tokens == 160
    assert resp.usage.input_tokens_details.cached_tokens == 100
    assert resp.usage.output_tokens_details.reasoning_tokens == 15


def test_tool_calls_answer_as_function_call_items():
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_10", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}
    raw = door.response_from_chat(chat_answer(message, "tool_calls"), USAGE,
                                  request={"model": "m", "input": "x", "tools": [WEATHER]}, resp_id="resp_t")
    resp = Response.model_validate_json(raw)
    assert resp.status == "completed"
    assert [(o.type, o.call_id, o.name, o.arguments) for o in resp.output] == [
        ("function_call", "call_9", "get_weather", "{\"city\":\"Paris\"}"),
        ("function_call", "call_10", "get_weather", "{\"city\":\"Oslo\"}")]
    assert resp.tools[0].name == "get_weather"
    # the round trip: the client sends the calls and their outputs back as input items
    again = door.chat_request({"model": "m", "input": [
        {"role": "user", "content": "x"}, *[o.model_dump(exclude_none=True) for o in resp.output],
        {"type": "function_call_output", "call_id": "call_9", "output": "18"}]})
    assert [c["id"] for c in again["messages"][1]["tool_calls"]] == ["call_9", "call_10"]
    assert again["messages"][2] == {"role": "tool", "tool_call_id": "call_9", "content": "18"}


def test_reasoning_beside_the_content_becomes_a_reasoning_item():
    answer = chat_answer({"role": "assistant", "content": "42", "reasoning_content": "Six times seven."})
    resp = Response.model_validate_json(door.response_from_chat(answer, USAGE, request={"model": "m", "input": "x"},
                                                                resp_id="resp_r"))
    assert [o.type for o in resp.output] == ["reasoning", "message"]
    assert resp.output[0].content[0].text == "Six times seven." and resp.output_text == "42"
    build = ChunkBuilder("c", 1, "m")
    translator = door.ChatToResponsesStream({"model": "m", "input": "x"}, resp_id="resp_r", model="m", created=1)
    raw = translator.start() + translator.feed(
        build.delta({"reasoning": "Six "}) + build.delta({"reasoning": "times seven."}) + build.content("42")
        + build.finish("stop")) + translator.finish(USAGE)
    events = parse_events(raw)
    assert [e["type"] for e in events][2:7] == [
        "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
        "response.reasoning_text.done", "response.output_item.done"]
    final = Response.model_validate(events[-1]["response"])
    assert final.output[0].content[0].text == "Six times seven." and final.output_text == "42"


def test_cut_answers_are_incomplete():
    raw = door.response_from_chat(chat_answer({"role": "assistant", "content": "Hel"}, "length"), USAGE,
                                  request={"model": "m", "input": "x"}, resp_id="resp_l")
    resp = Response.model_validate_json(raw)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"


def test_usage_both_ways():
    wire = door.usage_to_responses(USAGE)
    assert wire == {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
                    "output_tokens": 40,
                    "output_tokens_details": {"reasoning_tokens": 15}, "total_tokens": 160}
    back = door.usage_from_responses({**wire, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 7}})
    assert (back.input_tokens, back.cached_input_tokens, back.cache_write_tokens, back.output_tokens,
            back.reasoning_tokens) == (120, 100, 7, 40, 15)
    assert door.usage_from_responses({"input_tokens": 3, "output_tokens": 2}).cached_input_tokens == 0
    assert door.usage_from_responses(None) is None


# ----------------------------------------------------------------------------- streams
def parse_events(raw: bytes) -> list[dict]:
    events = []
    for block in raw.split(b"\n\n"):
        if not block:
            continue
        name_line, data_line = block.split(b"\n")
        assert name_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        obj = json.loads(data_line[6:])
        assert obj["type"] == name_line[7:].decode()
        STREAM_EVENT.validate_python(obj)  # the SDK's own event models
        events.append(obj)
    return events


def chat_stream() -> bytes:
    build = ChunkBuilder("chatcmpl-1", 1700000000, "claude-x")
    return b"".join([
        build.role(), build.content("Let me "), build.content("check ünïcode."),
        build.delta({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]}),
        build.delta({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
        build.delta({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
        build.delta({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                     "function": {"name": "get_time", "arguments": "{}"}}]}),
        build.finish("tool_calls"), b"data: [DONE]\n\n",
    ])


@pytest.mark.parametrize("step", [None, 1, 7, 64])
def test_chat_stream_as_responses_events(step):
    translator = door.ChatToResponsesStream({"model": "alias", "input": "x"}, resp_id="resp_s", model="alias",
                                            created=1700000000)
    data = chat_stream()
    raw = translator.start()
    pieces = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        raw += translator.feed(piece)
    raw += translator.finish(USAGE)
    events = parse_events(raw)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    assert events[6]["text"] == "Let me check ünïcode."
    assert events[12]["arguments"] == "{\"city\":\"Paris\"}" and events[12]["output_index"] == 1
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.model == "claude-x"
    assert final.output_text == "Let me check ünïcode."
    assert [(o.type, getattr(o, "call_id", None)) for o in final.output] == [
        ("message", None), ("function_call", "call_1"), ("function_call", "call_2")]
    assert final.usage.input_tokens_details.cached_tokens == 100
    assert final.usage.output_tokens_details.reasoning_tokens == 15


def test_stream_cut_by_the_limit_ends_incomplete_and_a_failure_ends_failed():
    build = ChunkBuilder("c", 1, "m")
    translator = door.ChatToResponsesStream({"model": "m", "input": "x"}, resp_id="resp_i", model="m", created=1)
    raw = translator.start() + translator.feed(build.content("Hel") + build.finish("length"))
    events = parse_events(raw + translator.finish(Usage(input_tokens=1, output_tokens=1)))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    failing = door.ChatToResponsesStream({"model": "m", "input": "x"}, resp_id="resp_f", model="m", created=1)
    events = parse_events(failing.start() + failing.feed(build.content("Hel")) + failing.fail("upstream reset"))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "upstream reset"}


# ----------------------------------------------------------------------------- relay
def test_relay_request_keeps_the_body_and_replaces_the_model():
    dep = make_deployment("openai", model_id="gpt-5.4", api_key="sk-up")
    body = {"model": "alias", "input": "x", "previous_response_id": "resp_1", "tools": [{"type": "web_search"}],
            "stream": False}
    req = door.build_relay(dep, body, stream=False)
    assert req.url == "http://upstream.invalid/v1/responses"
    assert req.headers["Authorization"] == "Bearer sk-up"
    assert json.loads(req.body) == {"model": "gpt-5.4", "input": "x", "previous_response_id": "resp_1",
                                    "tools": [{"type": "web_search"}]}
    assert body["model"] == "alias"


@pytest.mark.parametrize("step", [None, 3, 50])
def test_relay_watcher_passes_bytes_and_reads_the_terminal_usage(step):
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
             "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15}
    stream = (door.event("response.created", {"type": "response.created", "sequence_number": 0, "response": {}})
              + door.event("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1,
                                                          "item_id": "m", "output_index": 0, "content_index": 0,
                                                          "delta": "x" * 300})
              + door.event("response.completed", {"type": "response.completed", "sequence_number": 2,
                                                   "response": {"usage": usage}}))
    watcher = door.RelayWatcher()
    pieces = [stream] if step is None else [stream[i:i + step] for i in range(0, len(stream), step)]
    relayed = b"".join(b"".join(watcher.feed(p)) for p in pieces)
    assert watcher.finish() == []
    assert relayed == stream
    assert watcher.terminal == "response.completed"
    assert (watcher.usage.input_tokens, watcher.usage.cached_input_tokens, watcher.usage.output_tokens,
            watcher.usage.reasoning_tokens) == (10, 4, 5, 2)
    assert watcher.text_chars > 0
    dep = make_deployment("openai")
    assert door.relayed_usage(dep, json.dumps({"object": "response", "usage": usage}).encode()).output_tokens == 5
    assert door.relayed_usage(dep, b'{"object": "response"}').estimated
    for bad in (b"<html>", b'{"choices": []}'):
        with pytest.raises(UpstreamFailure) as caught:
            door.relayed_usage(dep, bad)
        assert caught.value.kind == "bad_response" and caught.value.retryable


def test_output_limit_reads_max_output_tokens():
    assert door.output_limit({"max_output_tokens": 64}) == 64
    assert door.output_limit({"max_output_tokens": True}) is None
    assert door.output_limit({}) is None


def test_summary_and_relay_request_carry_the_defaults_admission_counted():
    body = {"model": "alias", "input": "x", "max_output_tokens": 64, "temperature": 0.5, "user": "u",
            "metadata": {"conversation_id": "c"}, "tools": [{"type": "web_search"}]}
    assert door.request_summary(body) == {"model": "alias", "max_completion_tokens": 64, "temperature": 0.5,
                                          "metadata": {"conversation_id": "c"}, "user": "u"}
    assert door.relay_request(body, {**door.request_summary(body), "top_p": 0.9}) == {**body, "top_p": 0.9}
    assert door.relay_request(body, door.request_summary(body)) is body  # nothing filled: no copy
    bare = {"model": "m", "input": "x"}
    assert door.relay_request(bare, {"model": "m", "max_tokens": 77, "temperature": 0.3}) == {
        "model": "m", "input": "x", "max_output_tokens": 77, "temperature": 0.3}
    assert bare == {"model": "m", "input": "x"}


@pytest.mark.parametrize(("body", "field"), [
    ({}, "input"), ({"input": {"role": "user"}}, "input"), ({"input": "x", "stream": 1}, "stream"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"), ({"input": "x", "top_p": True}, "top_p"),
    ({"input": "x", "instructions": ["a"]}, "instructions"), ({"input": "x", "tools": {}}, "tools"),
    ({"input": "x", "metadata": "m"}, "metadata"), ({"input": "x", "user": 7}, "user"),
])
def test_check_request_refuses_wrong_types(body, field):
    with pytest.raises(InvalidInput) as caught:
        door.check_request(body)
    assert caught.value.field == field


def test_check_request_lets_stateful_requests_through_without_input():
    door.check_request({"previous_response_id": "resp_1"})
    door.check_request({"input": [{"type": "item_reference", "id": "msg_1"}], "stream": True})
