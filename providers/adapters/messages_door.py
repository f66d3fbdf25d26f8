"""The Anthropic Messages API as a door into Tollgate (``POST /v1/messages``): checking a
request, translating it to Chat Completions for providers that do not speak Messages and their
answers and streams back into the Messages shape, relaying it unchanged to Anthropic providers
(reading the usage out of what passes), and estimating ``count_tokens`` where no upstream can
count. Pure: plain data in, plain data out (the gateway sends and receives)."""

from typing import Any

from orjson import JSONDecodeError, dumps, loads

from providers.adapters.anthropic import stream_error, usage_from_anthropic
from providers.adapters.failures import bad_response, load_json, truncated_stream
from providers.adapters.headers import deployment_headers
from providers.adapters.messages import parse_data_url
from providers.adapters.sse import SSEDecoder
from providers.adapters.types import Deployment, UpstreamFailure, UpstreamRequest, Usage
from providers.adapters.usage import estimate_tokens

# Chat Completions finish_reason -> Messages stop_reason
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Claude Code also puts system messages between the turns (newer API versions accept them).
ROLES = ("user", "assistant", "system")
BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
                         "search_result", "server_tool_use", "web_search_tool_result"})
TOOL_CHOICES = ("auto", "any", "tool", "none")
# Headers of the client's passed on to an Anthropic upstream as they came.
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")
# ``thinking.budget_tokens`` below which Chat Completions' ``reasoning_effort`` is low, medium
# (at or above the last: high).
EFFORT_THRESHOLDS = ((4096, "low"), (16384, "medium"))


# --- the request ---------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _content_problem(content: Any, where: str) -> str | None:
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"{where}: must be a string or a list of content blocks."
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return f"{where}.{i}: a content block must be an object with a 'type'."
        kind = block["type"]
        if kind == "text" and not isinstance(block.get("text"), str):
            return f"{where}.{i}.text: a text block needs its 'text' as a string."
        if kind == "tool_use" and not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
                                       and isinstance(block.get("input", {}), dict)):
            return f"{where}.{i}: a tool_use block needs 'id' and 'name' strings and an 'input' object."
        if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
            return f"{where}.{i}.tool_use_id: a tool_result block needs the 'tool_use_id' it answers."
        if kind in ("image", "document") and not isinstance(block.get("source"), dict):
            return f"{where}.{i}.source: an {kind} block needs a 'source' object."
    return None


def messages_request_problem(body: dict[str, Any]) -> tuple[str, str] | None:
    """What is wrong with a Messages request, as ``(field, what to fix)``; None when it can be
    served. Checks the shape Tollgate relies on (types, required fields), not every rule of
    the API: an Anthropic upstream judges the rest itself."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        return "model", "'model' must be a string: a model id, an alias or provider:model."
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens", "'max_tokens' is required: a positive integer, the most tokens the answer may have."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "'messages' must be a non-empty list of {role: user|assistant, content} objects."
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, dict) else None
            return f"messages.{i}", f"messages.{i}: role {role!r}: each message needs 'role' user or assistant."
        problem = _content_problem(message.get("content"), f"messages.{i}.content")
        if problem:
            return f"messages.{i}.content", problem
    system = body.get("system")
    if system is not None and not isinstance(system, str) and (
            not isinstance(system, list)
            or any(not isinstance(b, dict) or not isinstance(b.get("text"), str) for b in system)):
        return "system", "'system' must be a string or a list of text blocks ({type: text, text})."
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return "stream", "'stream' must be true or false."
    for name in ("temperature", "top_p"):
        if body.get(name) is not None and not _number(body[name]):
            return name, f"'{name}' must be a number."
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        return "top_k", "'top_k' must be a non-negative integer."
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        return "stop_sequences", "'stop_sequences' must be a list of strings."
    tools = body.get("tools")
    if tools is not None and (
            not isinstance(tools, list)
            or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)):
        return "tools", "'tools' must be a list of {name, description?, input_schema} objects."
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES):
        return "tool_choice", "'tool_choice' must be {type: auto | any | none} or {type: tool, name}."
    if isinstance(choice, dict) and choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        return "tool_choice", "'tool_choice' of type tool needs the tool's 'name'."
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            return "metadata", "'metadata' must be an object ({user_id})."
        if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
            return "metadata.user_id", "'metadata.user_id' must be a string."
    thinking = body.get("thinking")
    if thinking is not None and not isinstance(thinking, dict):
        return "thinking", "'thinking' must be an object ({type: enabled, budget_tokens} or {type: disabled})."
    return None


def client_ids(body: dict[str, Any]) -> tuple[str, str]:
    """The end user and the conversation a Messages request names, for the ledger: its
    ``metadata.user_id``, which Claude Code fills with a JSON object (``device_id``,
    ``account_uuid``, ``session_id``): then the account (else the device) and the session."""
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user, str):
        return "", ""
    if user.startswith("{"):
        try:
            ids = loads(user)
        except JSONDecodeError:
            ids = None
        if isinstance(ids, dict):
            who = ids.get("account_uuid") or ids.get("device_id")
            session = ids.get("session_id")
            return (str(who)[:128] if who else "", str(session)[:128] if session else "")
    return user[:128], ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def _tool_result(block: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A ``tool_result``'s text (what a ``tool`` message may carry) and its other parts (images,
    files), which Chat Completions only takes in a user message."""
    content = block.get("content")
    if content is None or isinstance(content, str):
        text, others = content or "", []
    else:
        parts = [p for p in (_user_part(b) for b in content if isinstance(b, dict)) if p is not None]
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        others = [p for p in parts if p["type"] != "text"]
        if others and not text:
            text = "(attached below)"
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return text, others


def _source_url(source: dict[str, Any]) -> str:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', 'application/octet-stream')};base64,{source.get('data', '')}"
    return str(source.get("url") or "")


def _marked(part: dict[str, Any] | None, block: dict[str, Any], cache: bool) -> dict[str, Any] | None:
    """``part`` with ``block``'s ``cache_control`` when ``cache`` (an upstream whose adapter maps it)."""
    if part is not None and cache and "cache_control" in block:
        return {**part, "cache_control": block["cache_control"]}
    return part


def _user_part(block: dict[str, Any]) -> dict[str, Any] | None:
    """A Chat Completions content part for a Messages user block (None: nothing to send)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block.get("source") or {})}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return {"type": "text", "text": str(source.get("data") or "")}
        if source.get("type") == "content":
            return {"type": "text", "text": _text_of(source.get("content"))}
        url = _source_url(source)
        if parse_data_url(url) is None:
            return {"type": "text", "text": f"[document: {url}]"} if url else None
        return {"type": "file", "file": {"file_data": url, "filename": str(block.get("title") or "document.pdf")}}
    return None  # thinking blocks and others: no Chat Completions equivalent


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool["name"],
                                "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def reasoning_effort(body: dict[str, Any]) -> str | None:
    """Chat Completions' ``reasoning_effort`` for a Messages request's ``thinking``: ``enabled``
    with ``budget_tokens`` under 4,096 is low, under 16,384 medium, else high; none when
    thinking is disabled, adaptive or unset."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not _number(budget):
        return None
    return next((effort for limit, effort in EFFORT_THRESHOLDS if budget < limit), "high")


def chat_request_from_messages(body: dict[str, Any], *, top_k: bool = True, effort: bool = False,
                               cache: bool = False, thoughts: bool = False) -> dict[str, Any]:
    """The Chat Completions request for a (checked) Messages request: ``system`` first as a
    system message, ``tool_use`` blocks as the assistant's ``tool_calls``, each ``tool_result``
    as a ``tool`` message (before the rest of its user turn, which also takes the result's
    images), several blocks as several parts, tools and ``tool_choice`` renamed,
    ``stop_sequences`` → ``stop``, ``metadata.user_id`` → ``user``. Thinking blocks have no
    equivalent and are left out. ``top_k=False`` leaves ``top_k`` out (OpenAI refuses it);
    ``effort=True`` turns an enabled ``thinking`` into ``reasoning_effort`` (see ``reasoning_effort``);
    ``cache=True`` keeps the blocks' and tools' ``cache_control`` markers on the parts and tools
    they become (system blocks then stay separate parts), for an upstream that takes them (Bedrock,
    OpenRouter);
    ``thoughts=True`` keeps an assistant turn's signed ``thinking`` / ``redacted_thinking`` blocks
    as its ``thinking_blocks`` (Bedrock's Claude wants them back with the turn's tool calls) and an
    enabled ``thinking`` as it is, its budget exact."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system and cache and not isinstance(system, str) and any("cache_control" in b for b in system):
        messages.append({"role": "system", "content": [_marked({"type": "text", "text": b["text"]}, b, cache)
                                                       for b in system]})
    elif system:
        text = system if isinstance(system, str) else "\n\n".join(b["text"] for b in system)
        messages.append({"role": "system", "content": text})
    for message in body["messages"]:
        role, content = message["role"], message.get("content")
        if role == "system":
            messages.append({"role": "system", "content": _text_of(content)})
            continue
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if role == "assistant":
            text = "".join(b["text"] for b in content if b["type"] == "text")
            calls = [{"id": b["id"], "type": "function",
                      "function": {"name": b["name"], "arguments": dumps(b.get("input") or {}).decode()}}
                     for b in content if b["type"] == "tool_use"]
            marks = [b["cache_control"] for b in content if "cache_control" in b] if cache else []
            out: dict[str, Any] = {"role": "assistant", "content": text or None}
            if marks:  # a marker on the assistant turn: on the whole message (its blocks are merged)
                out["cache_control"] = marks[-1]
            kept = [{k: b[k] for k in ("type", "thinking", "signature", "data") if k in b}
                    for b in content if b["type"] in ("thinking", "redacted_thinking")] if thoughts else []
            if kept:
                out["thinking_blocks"] = kept
            if calls:
                out["tool_calls"] = calls
            if text or calls:
                messages.append(out)
            continue
        parts, attached = [], []
        for block in content:
            if block["type"] == "tool_result":
                text, others = _tool_result(block)
                result: dict[str, Any] = {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
                if cache and "cache_control" in block:
                    result["cache_control"] = block["cache_control"]
                messages.append(result)
                attached.extend(others)
            elif (part := _marked(_user_part(block), block, cache)) is not None:
                parts.append(part)
        parts = attached + parts  # a tool's images follow its result, in the user turn
        if parts:
            one_text = len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]
            messages.append({"role": "user", "content": parts[0]["text"] if one_text else parts})

    chat: dict[str, Any] = {"messages": messages, "max_tokens": body["max_tokens"]}
    if body.get("model") is not None:
        chat["model"] = body["model"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if top_k and body.get("top_k") is not None:
        chat["top_k"] = body["top_k"]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    if effort and (level := reasoning_effort(body)) is not None:
        chat["reasoning_effort"] = level
    if thoughts and isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled":
        chat["thinking"] = {"type": "enabled", "budget_tokens": body["thinking"].get("budget_tokens")}  # exact
    tools = [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]
    choice = body.get("tool_choice")
    if tools and not (isinstance(choice, dict) and choice["type"] == "none"):
        chat["tools"] = [_marked(_tool(t), t, cache) for t in tools]
        if isinstance(choice, dict):
            kind = choice["type"]
            chat["tool_choice"] = ("auto" if kind == "auto" else "required" if kind == "any"
                                   else {"type": "function", "function": {"name": choice["name"]}})
            if choice.get("disable_parallel_tool_use"):
                chat["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user, str) and user:
        chat["user"] = user
    if body.get("stream"):
        chat["stream"] = True
    return chat


# --- answers -------------------------------------------------------------------------------


def usage_to_anthropic(usage: Usage) -> dict[str, Any]:
    """The Messages ``usage`` object for ``usage`` (whose input counts cache reads and writes;
    Anthropic's ``input_tokens`` does not)."""
    written, hour = usage.cache_write_tokens, usage.cache_write_1h_tokens
    return {
        "input_tokens": max(usage.input_tokens - usage.cached_input_tokens - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": written - hour, "ephemeral_1h_input_tokens": hour},
        "output_tokens": usage.output_tokens,
    }


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = loads(arguments) if isinstance(arguments, str) and arguments else {}
    except JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"arguments": arguments}


def thinking_wanted(body: dict[str, Any]) -> bool:
    """Whether a Messages request asked for thinking (``enabled`` or ``adaptive``): then the
    reasoning a chat upstream reports (``reasoning_content``, OpenRouter's ``reasoning``) comes
    back as thinking blocks, without a signature (there is none to give)."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _reasoning(message: dict[str, Any]) -> str:
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def message_from_chat(chat: dict[str, Any], usage: Usage, *, message_id: str, model: str | None = None,
                      thinking: bool = False) -> dict[str, Any]:
    """A Messages ``message`` for a ``chat.completion`` answer: its reasoning as a thinking block
    (when ``thinking``), its text as a text block, its tool calls as ``tool_use`` blocks, the
    finish reason as a stop reason."""
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    signed = message.get("thinking_blocks") if thinking and isinstance(message.get("thinking_blocks"), list) else []
    signed = [b for b in signed if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
    reasoning = _reasoning(message) if thinking and not signed else ""
    content.extend(signed)  # Bedrock's Claude: the blocks as signed, to be sent back with tool results
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append({"type": "tool_use", "id": str(call.get("id") or ""),
                            "name": str(function.get("name") or ""), "input": _tool_input(function.get("arguments"))})
    stop = STOP_REASONS.get(choice.get("finish_reason"), "end_turn")
    if stop == "end_turn" and any(b["type"] == "tool_use" for b in content):
        stop = "tool_use"
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model or str(chat.get("model") or ""),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_to_anthropic(usage),
    }


def sse_event(obj: dict[str, Any]) -> bytes:
    """One Anthropic named SSE event (the event name is the object's ``type``)."""
    return b"event: " + obj["type"].encode() + b"\ndata: " + dumps(obj) + b"\n\n"


PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def error_event(error_type: str, message: str) -> bytes:
    """The mid-stream ``error`` event."""
    return sse_event({"type": "error", "error": {"type": error_type, "message": message}})


class MessagesStreamTranslator:
    """OpenAI ``chat.completion.chunk`` SSE events (as the adapters produce them, one event per
    item) → Anthropic Messages SSE events in their order: ``message_start``, then per block
    ``content_block_start`` / ``content_block_delta`` (``text_delta``, ``input_json_delta``) /
    ``content_block_stop``, and from ``finish(usage)`` the last ``content_block_stop``,
    ``message_delta`` (stop reason, usage) and ``message_stop``. With ``thinking``, reasoning
    deltas become a thinking block (``thinking_delta``; a ``thinking_blocks`` delta's signature its
    ``signature_delta``). ``message_start`` carries
    ``input_tokens`` (the request's estimated prompt: the real counts come at the end, in
    ``message_delta``) and is followed by one ``ping``, as Anthropic's streams are."""

    __slots__ = ("_message_id", "_model", "_thinking", "_input_tokens", "_started", "_block", "_kind", "_tools",
                 "_finish_reason", "_stopped")

    def __init__(self, *, message_id: str, model: str, thinking: bool = False, input_tokens: int = 0) -> None:
        self._message_id = message_id
        self._model = model
        self._thinking = thinking
        self._input_tokens = input_tokens
        self._started = False
        self._block = -1  # index of the open block (-1: none yet)
        self._kind = ""  # "thinking", "text" or "tool_use": the open block's type ("" when none is open)
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index -> block index
        self._finish_reason: str | None = None
        self._stopped = False

    def start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(sse_event({"type": "message_start", "message": {
                "id": self._message_id, "type": "message", "role": "assistant", "model": self._model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": self._input_tokens, "output_tokens": 0}}}))
            out.append(PING)

    def _open(self, out: list[bytes], kind: str, block: dict[str, Any]) -> None:
        self._close(out)
        self._block += 1
        self._kind = kind
        out.append(sse_event({"type": "content_block_start", "index": self._block, "content_block": block}))

    def _close(self, out: list[bytes]) -> None:
        if self._kind:
            out.append(sse_event({"type": "content_block_stop", "index": self._block}))
            self._kind = ""

    def _signed(self, out: list[bytes], block: Any) -> None:
        """A whole signed thinking block an adapter sends once it ends (Bedrock's Claude): its
        signature closes the open thinking block (``signature_delta``); a redacted one is a block
        of its own."""
        if not isinstance(block, dict):
            return
        if block.get("type") == "thinking" and block.get("signature") and self._kind == "thinking":
            out.append(sse_event({"type": "content_block_delta", "index": self._block,
                                  "delta": {"type": "signature_delta", "signature": str(block["signature"])}}))
            self._close(out)
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            self._open(out, "redacted_thinking", {"type": "redacted_thinking", "data": block["data"]})
            self._close(out)

    def feed(self, events: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        self.start(out)
        for event in events:
            data = event[6:].strip() if event.startswith(b"data: ") else event.strip()
            if not data or data == b"[DONE]":
                continue
            chunk = loads(data)
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                reasoning = _reasoning(delta) if self._thinking else ""
                if reasoning:
                    if self._kind != "thinking":
                        self._open(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
                    out.append(sse_event({"type": "content_block_delta", "index": self._block,
                                          "delta": {"type": "thinking_delta", "thinking": reasoning}}))
                for block in delta.get("thinking_blocks") or () if self._thinking else ():
                    self._signed(out, block)
                text = delta.get("content")
                if text:
                    if self._kind != "text":
                        self._open(out, "text", {"type": "text", "text": ""})
                    out.append(sse_event({"type": "content_block_delta", "index": self._block,
                                          "delta": {"type": "text_delta", "text": text}}))
                for call in delta.get("tool_calls") or ():
                    position = call.get("index", 0)
                    function = call.get("function") or {}
                    if position not in self._tools:
                        self._open(out, "tool_use", {"type": "tool_use", "id": str(call.get("id") or ""),
                                                     "name": str(function.get("name") or ""), "input": {}})
                        self._tools[position] = self._block
                    arguments = function.get("arguments")
                    if arguments and self._tools[position] == self._block:
                        out.append(sse_event({"type": "content_block_delta", "index": self._block,
                                              "delta": {"type": "input_json_delta", "partial_json": arguments}}))
                if choice.get("finish_reason"):
                    self._finish_reason = choice["finish_reason"]
        return out

    def finish(self, usage: Usage) -> list[bytes]:
        """The closing events, with the stream's usage (reported or estimated)."""
        out: list[bytes] = []
        if self._stopped:
            return out
        self._stopped = True
        self.start(out)
        self._close(out)
        stop = STOP_REASONS.get(self._finish_reason or "", "end_turn")
        if stop == "end_turn" and self._tools:
            stop = "tool_use"
        out.append(sse_event({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                              "usage": usage_to_anthropic(usage)}))
        out.append(sse_event({"type": "message_stop"}))
        return out


# --- relaying to Anthropic -----------------------------------------------------------------


def relay_request(deployment: Deployment, body: dict[str, Any], raw: bytes | None, *, headers: dict[str, str],
                  path: str = "/v1/messages") -> UpstreamRequest:
    """The request to an Anthropic ``deployment``: the client's body as it came (``raw``) when
    it already names the upstream model, else the same fields with ``model`` replaced; the
    client's ``anthropic-version`` and ``anthropic-beta`` passed on; the provider's key."""
    stream = body.get("stream") is True
    if raw is None or body.get("model") != deployment.model_id:
        raw = dumps({**body, "model": deployment.model_id})
    sent = deployment_headers(deployment, accept="text/event-stream" if stream else "application/json")
    for name in PASSED_HEADERS:
        if headers.get(name):
            sent[name] = headers[name]
    return UpstreamRequest(method="POST", url=f"{deployment.base_url}{path}", headers=sent, body=raw)


RETURNED_PREFIX = "anthropic-ratelimit-"  # an Anthropic answer's headers passed back to the client …
RETURNED_HEADERS = frozenset({"retry-after", "request-id"})  # … with these (nothing secret: limits, ids)


def returned_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """The headers of a relayed Anthropic answer that go back to the client (ASGI pairs): its
    ``anthropic-ratelimit-*`` limits, ``retry-after`` and ``request-id``; nothing else (not
    the upstream's cookies, server or other headers). Plain, short ASCII values only."""
    out = []
    for name, value in headers.items():
        name = name.lower()
        if ((name in RETURNED_HEADERS or name.startswith(RETURNED_PREFIX)) and value.isascii()
                and value.isprintable() and len(value) <= 256 and len(out) < 32):
            out.append((name.encode(), value.encode()))
    return out


def relayed_usage(deployment: Deployment, body: bytes) -> Usage:
    """The usage of a relayed (non-streamed) message; estimated when it has none."""
    obj = load_json(deployment, body, "a message")
    if type(obj) is not dict or obj.get("type") != "message":
        if type(obj) is dict and obj.get("type") == "error":
            raise stream_error(deployment, obj.get("error"))
        raise bad_response(deployment, "answered without a message object; is this the Anthropic Messages API?")
    return usage_from_anthropic(obj.get("usage")) or Usage(estimated=True,
                                                           output_tokens=estimate_tokens(len(body)))


class AnthropicStreamTap:
    """Passes an Anthropic stream's bytes on unchanged while reading what the ledger needs:
    the usage (``message_start``, then the cumulative ``message_delta``), the characters of
    text relayed (for an estimate) and whether it ended (``message_stop``). Until the first
    event is whole its bytes are held, so an upstream that fails before answering (an
    ``error`` event first, an empty body) raises ``UpstreamFailure`` and can fall back; an
    ``error`` event after that is relayed like any other and kept in ``failure``; ``complete``
    says ``message_stop`` came."""

    __slots__ = ("usage", "text_chars", "finish_reason", "failure", "complete", "_deployment", "_decoder", "_held",
                 "_started", "_raw_usage")

    def __init__(self, deployment: Deployment) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finish_reason: str | None = None
        self.failure: UpstreamFailure | None = None
        self.complete = False
        self._deployment = deployment
        self._decoder = SSEDecoder()
        self._held: list[bytes] = []
        self._started = False
        self._raw_usage: dict[str, Any] = {}

    def feed(self, data: bytes) -> list[bytes]:
        self._read(self._decoder.feed(data))
        if self._started:
            if self._held:
                self._held.append(data)
                data, self._held = b"".join(self._held), []
            return [data] if data else []
        self._held.append(data)
        return []

    @property
    def between_events(self) -> bool:
        """True when what was passed on ends at an event's end (a ``ping`` may go in here)."""
        return not self._held and self._decoder.between_events

    def finish(self) -> list[bytes]:
        self._read(self._decoder.finish())
        if not self._started:
            raise truncated_stream(self._deployment)
        held, self._held = self._held, []
        return [b"".join(held)] if held else []

    def _read(self, events: list[tuple[bytes, bytes]]) -> None:
        for name, data in events:
            if name == b"content_block_delta":
                self.text_chars += max(len(data) - 60, 0)  # less about the JSON around the text
            elif name in (b"message_start", b"message_delta", b"error") or not name:
                try:
                    obj = loads(data)
                except JSONDecodeError:
                    raise bad_response(self._deployment, "sent a malformed stream event (invalid JSON).") from None
                if type(obj) is not dict:
                    continue
                kind = obj.get("type")
                if kind == "error":
                    failure = stream_error(self._deployment, obj.get("error"))
                    if not self._started:
                        raise failure
                    self.failure = failure
                    continue
                if kind == "message_start" and type(obj.get("message")) is dict:
                    self._merge(obj["message"].get("usage"))
                elif kind == "message_delta":
                    delta = obj.get("delta")
                    if type(delta) is dict and isinstance(delta.get("stop_reason"), str):
                        self.finish_reason = delta["stop_reason"]
                    self._merge(obj.get("usage"))
            elif name == b"message_stop":
                self.complete = True
            self._started = True

    def _merge(self, raw: Any) -> None:
        if isinstance(raw, dict):
            for key, value in raw.items():
                if value is not None:
                    self._raw_usage[key] = value
            self.usage = usage_from_anthropic(self._raw_usage)


# --- count_tokens ----------------------------------------------------------------------------


def count_tokens_estimate(body: dict[str, Any]) -> int:
    """About how many input tokens a Messages request has (four characters a token over its
    system, messages and tools as JSON), for upstreams that cannot count them."""
    counted = {name: body[name] for name in ("system", "messages", "tools") if body.get(name)}
    return estimate_tokens(len(dumps(counted)))
