"""The built-in ``mock`` provider: no network, deterministic answers computed in-process —
"Mock reply to: <last user message>", token counts of about one per four characters, a tool
call when asked for one, hash-derived embeddings. Used by the embedded demo and by tests.

Unlike the HTTP adapters it answers itself (``IN_PROCESS``): ``complete_chat``,
``stream_chat`` and ``embed`` instead of building requests and parsing answers. Its catalog
is providers/fetchers/mock.py."""

import base64
import hashlib
import math
import struct
import time
from typing import Any

from orjson import dumps

from providers.adapters.messages import chat_completion, text_of
from providers.adapters.sse import ChunkBuilder
from providers.adapters.types import ChatResult, Deployment, Usage, output_limit
from providers.adapters.usage import estimate_input_tokens, estimate_tokens, usage_to_openai

IN_PROCESS = True
DEFAULT_MAX_TOKENS = None  # no output limit unless the request sets one

REPLY_PREFIX = "Mock reply to: "
QUOTE_CHARS = 60
EMBEDDING_DIM = 8
WORDS_PER_CHUNK = 3


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def _placeholder(schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    return {"string": "mock", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(kind, "mock")


def _tool_arguments(function: dict[str, Any]) -> dict[str, Any]:
    """A small object filling the tool's required parameters with placeholders."""
    params = function.get("parameters") if isinstance(function.get("parameters"), dict) else {}
    properties = params.get("properties") if isinstance(params.get("properties"), dict) else {}
    required = params.get("required") if isinstance(params.get("required"), list) else []
    return {name: _placeholder(properties.get(name)) for name in required if isinstance(name, str)}


def _pick_tool(body: dict[str, Any], last_user: str) -> dict[str, Any] | None:
    """The function to call: forced by ``tool_choice``, or the first one when the user asks
    about the weather; None for a text answer."""
    tools = [t["function"] for t in body.get("tools") or []
             if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        return next((t for t in tools if t["name"] == wanted), tools[0])
    if choice == "required" or "weather" in last_user.lower():
        return tools[0]
    return None


def _answer(deployment: Deployment, body: dict[str, Any],
            request_id: str) -> tuple[str, dict[str, Any] | None, str, Usage]:
    """(text, tool call, finish_reason, usage) for a chat request."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    prompt_chars = sum(len(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    last_user = _last_user_text(messages)
    usage = Usage(input_tokens=estimate_tokens(prompt_chars))
    tool = _pick_tool(body, last_user)
    if tool is not None:
        arguments = dumps(_tool_arguments(tool)).decode()
        call = {"id": f"call_{request_id}", "type": "function",
                "function": {"name": str(tool["name"]), "arguments": arguments}}
        usage.output_tokens = estimate_tokens(len(call["function"]["name"]) + len(arguments))
        return "", call, "tool_calls", usage
    text = REPLY_PREFIX + last_user[:QUOTE_CHARS]
    finish = "stop"
    limit = output_limit(body)
    usage.output_tokens = estimate_tokens(len(text))
    if limit is not None and limit < usage.output_tokens:
        text = text[: limit * 4]
        usage.output_tokens = limit
        finish = "length"
    return text, None, finish, usage


def complete_chat(deployment: Deployment, body: dict[str, Any], *, request_id: str) -> ChatResult:
    text, call, finish, usage = _answer(deployment, body, request_id)
    message: dict[str, Any] = {"role": "assistant", "content": text if call is None else None, "refusal": None}
    if call is not None:
        message["tool_calls"] = [call]
    result = chat_completion(
        completion_id=f"chatcmpl-{request_id}",
        model=deployment.model_id,
        message=message,
        finish_reason=finish,
        usage=usage_to_openai(usage),
        created=int(time.time()),
    )
    return ChatResult(body=result, usage=usage)


def stream_chat(deployment: Deployment, body: dict[str, Any], *, request_id: str,
                created: int) -> tuple[list[bytes], Usage]:
    """The answer as OpenAI chunk SSE events (no usage chunk, no ``[DONE]``) and its usage."""
    text, call, finish, usage = _answer(deployment, body, request_id)
    chunks = ChunkBuilder(f"chatcmpl-{request_id}", created, deployment.model_id)
    events = [chunks.role()]
    if call is not None:
        function = call["function"]
        events.append(chunks.delta({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                    "function": {"name": function["name"], "arguments": ""}}]}))
        events.append(chunks.delta({"tool_calls": [{"index": 0, "function": {"arguments": function["arguments"]}}]}))
    else:
        words = text.split(" ")
        for i in range(0, len(words), WORDS_PER_CHUNK):
            piece = " ".join(words[i : i + WORDS_PER_CHUNK])
            if i + WORDS_PER_CHUNK < len(words):
                piece += " "
            if piece:
                events.append(chunks.content(piece))
    events.append(chunks.finish(finish))
    return events, usage


def _vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector of ``dim`` components derived from SHA-256 of ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = bytearray(digest)
    while len(raw) < dim:
        digest = hashlib.sha256(digest).digest()
        raw += digest
    values = [(b - 127.5) / 127.5 for b in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embed(deployment: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage]:
    raw = body.get("input")
    one = isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int))  # a text or token ids
    items = [raw] if one else list(raw or [])
    dimensions = body.get("dimensions")
    wanted = isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0
    dim = dimensions if wanted else EMBEDDING_DIM
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = estimate_input_tokens(raw)
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else dumps(item).decode()
        vector = _vector(text, dim)
        embedding: Any = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    result = {"object": "list", "data": data, "model": deployment.model_id,
              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return dumps(result), Usage(input_tokens=tokens)
