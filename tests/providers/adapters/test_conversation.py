"""The one conversation walk (providers/adapters/conversation.py) that the Anthropic, Gemini and
Bedrock adapters share: one tricky conversation — a developer message mid-way, a user turn in
parts, two tool calls and their results followed by user text, an assistant message with nothing
to send — comes out of all three as the same system prompt and the same alternating turns."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from providers.adapters import anthropic, bedrock, gemini
from providers.adapters.conversation import TurnBuilders, conversation_walk
from providers.adapters.types import UpstreamFailure

from .helpers import make_deployment

CALLS = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
         {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "developer", "content": "Use metric units."},  # to the system prompt; the user turns still merge
    {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]},
    {"role": "assistant", "content": "Let me check.", "tool_calls": CALLS},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
    {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
    {"role": "user", "content": "And tomorrow?"},  # with the results, in one user turn
    {"role": "assistant", "content": ""},  # nothing to send: left out, so the user turns merge
    {"role": "user", "content": "Hello?"},
    {"role": "assistant", "content": "Sunny."},
]
# The system prompt's texts and each turn: role and the kind of each block.
EXPECTED = (["Be brief.", "Use metric units."], [
    ("user", ["text", "text"]),
    ("assistant", ["text", "call", "call"]),
    ("user", ["result", "result", "text", "text"]),
    ("assistant", ["text"]),
])
KINDS = {"text": "text", "tool_use": "call", "tool_result": "result", "functionCall": "call",
         "functionResponse": "result", "toolUse": "call", "toolResult": "result"}


def _kind(block: dict[str, Any]) -> str:
    return KINDS[block["type"]] if "type" in block else KINDS[next(iter(block))]


def anthropic_turns(body):
    sent = json.loads(anthropic.build_chat(make_deployment("anthropic", model_id="claude-x"), body,
                                           stream=False).body)
    system = sent["system"].split("\n\n")
    return system, [(m["role"], ["text"] if isinstance(m["content"], str) else [_kind(b) for b in m["content"]])
                    for m in sent["messages"]]


def gemini_turns(body):
    sent = gemini.chat_payload(make_deployment("gemini", model_id="gemini-2.5-flash"), body)
    return [p["text"] for p in sent["systemInstruction"]["parts"]], [
        ("assistant" if c["role"] == "model" else c["role"], [_kind(p) for p in c["parts"]]) for c in sent["contents"]]


def bedrock_turns(body):
    d = replace(make_deployment("bedrock", model_id="anthropic.claude-3-5-haiku-20241022-v1:0"),
                options=(("region", "us-east-1"),))
    sent = bedrock.chat_payload(d, body)
    return [b["text"] for b in sent["system"]], [(m["role"], [_kind(b) for b in m["content"]])
                                                 for m in sent["messages"]]


@pytest.mark.parametrize("turns", [anthropic_turns, gemini_turns, bedrock_turns])
def test_the_three_adapters_send_the_same_turns(turns):
    assert turns({"messages": CONVERSATION, "tools": [
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "function", "function": {"name": "get_time"}}]}) == EXPECTED


def test_the_walk_itself_with_plain_builders():
    walked = conversation_walk(CONVERSATION, TurnBuilders(
        system=lambda m: [("text", m["content"])],
        user=lambda m: [("text", m["content"])],
        assistant=lambda m: [("text", m["content"])] if m["content"] else [],
        tool_call=lambda call: ("call", call["id"]),
        tool_result=lambda m: ("result", m["tool_call_id"]),
        refuse=ValueError,
        marker=lambda m, role: ("mark", role) if role == "tool" and m["tool_call_id"] == "call_2" else None,
    ))
    assert walked.system == [("text", "Be brief."), ("text", "Use metric units.")]
    assert [(role, [b[0] for b in blocks]) for role, blocks in walked.turns] == [
        ("user", ["text", "text"]), ("assistant", ["text", "call", "call"]),
        ("user", ["result", "result", "mark", "text", "text"]), ("assistant", ["text"])]
    assert walked.uses_tools
    assert not conversation_walk([{"role": "user", "content": "hi"}], TurnBuilders(
        system=list, user=lambda m: [m], assistant=list, tool_call=str, tool_result=str, refuse=ValueError)).uses_tools


@pytest.mark.parametrize(("message", "words"), [
    ("hello", "every message must be an object"),
    ({"role": "function", "content": "x"}, "messages with role 'function' are not supported"),
    ({"role": "assistant", "content": "x", "tool_calls": {"id": "c"}}, "'tool_calls' must be a list"),
])
@pytest.mark.parametrize("adapter", [anthropic, gemini, bedrock])
def test_the_three_refuse_a_malformed_conversation_alike(adapter, message, words):
    d = replace(make_deployment(adapter.__name__.rsplit(".", 1)[-1], model_id="anthropic.claude-x"),
                options=(("region", "us-east-1"),))
    with pytest.raises(UpstreamFailure) as caught:
        adapter.build_chat(d, {"messages": [{"role": "user", "content": "hi"}, message]}, stream=False)
    assert caught.value.kind == "bad_request" and words in caught.value.message
