"""The one walk of a Chat Completions conversation for the adapters whose wire format has a
system prompt apart and strictly alternating user / assistant turns (Anthropic, Gemini, Bedrock):
system and developer messages go to the system prompt; user messages, assistant messages (their
own content, then a block per tool call) and tool results (in a user turn) become blocks; a
message without blocks is left out, and consecutive turns of one role merge. What each block
looks like is the provider's: ``TurnBuilders``."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Block = Any  # a provider's content block or part


@dataclass(frozen=True)
class TurnBuilders:
    """How one provider writes the pieces of a conversation; each takes the OpenAI message (or
    tool call) and returns its blocks. ``marker``: a block to follow a message's blocks, or None
    (Bedrock's ``cachePoint`` for a message's ``cache_control``; ``role`` as the message says)."""

    system: Callable[[dict[str, Any]], list[Block]]
    user: Callable[[dict[str, Any]], list[Block]]
    assistant: Callable[[dict[str, Any]], list[Block]]  # its content (and reasoning), before its calls
    tool_call: Callable[[Any], Block]
    tool_result: Callable[[dict[str, Any]], Block]
    refuse: Callable[[str], Exception]  # the provider's bad request, given what is wrong
    marker: Callable[[dict[str, Any], str], Block | None] | None = None


@dataclass
class Conversation:
    """The walked conversation: the system prompt's blocks and the turns, ``("user" |
    "assistant", blocks)``, alternating; ``uses_tools`` when a tool call or result is in it."""

    system: list[Block] = field(default_factory=list)
    turns: list[tuple[str, list[Block]]] = field(default_factory=list)
    uses_tools: bool = False


def conversation_walk(messages: Any, build: TurnBuilders) -> Conversation:
    """``messages`` (a chat request's) as system blocks and merged turns (see the module docstring)."""
    out = Conversation()
    for message in messages or []:
        if not isinstance(message, dict):
            raise build.refuse("every message must be an object.")
        role = message.get("role")
        if role in ("system", "developer"):
            blocks = build.system(message)
            point = build.marker(message, role) if build.marker is not None else None
            out.system.extend([*blocks, point] if point is not None and blocks else blocks)
            continue
        if role == "user":
            blocks = build.user(message)
        elif role == "assistant":
            blocks = build.assistant(message)
            calls = message.get("tool_calls")
            if calls:
                if not isinstance(calls, list):
                    raise build.refuse("'tool_calls' must be a list.")
                blocks.extend(build.tool_call(call) for call in calls)
                out.uses_tools = True
        elif role == "tool":
            blocks = [build.tool_result(message)]
            out.uses_tools = True
        else:
            raise build.refuse(f"messages with role {role!r} are not supported.")
        point = build.marker(message, role) if build.marker is not None else None
        if point is not None and blocks:
            blocks.append(point)
        if not blocks:
            continue
        turn = "assistant" if role == "assistant" else "user"
        if out.turns and out.turns[-1][0] == turn:
            out.turns[-1][1].extend(blocks)
        else:
            out.turns.append((turn, blocks))
    return out
