"""Anthropic Messages API: OpenAI chat requests translated to ``/v1/messages``, and its
answers and named-event streams translated back into OpenAI chat.completion(.chunk) JSON."""

from functools import partial
from typing import Any

from orjson import JSONDecodeError, dumps, loads

from providers.adapters.conversation import TurnBuilders, conversation_walk
from providers.adapters.failures import (
    ERROR_TYPE_KINDS,
    bad_response,
    body_detail,
    error_class,
    failure,
    load_json,
    status_kind,
    truncated_stream,
)
from providers.adapters.headers import deployment_headers
from providers.adapters.messages import (
    chat_completion,
    image_url_of,
    parse_data_url,
    tool_arguments,
)
from providers.adapters.sse import ChunkBuilder, SSEDecoder
from providers.adapters.types import (
    ChatResult,
    Deployment,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    output_limit,
)
from providers.adapters.usage import as_int, usage_to_openai

IN_PROCESS = False  # builds HTTP requests and parses answers (see registry.py)
DEFAULT_MAX_TOKENS = 4096  # the Messages API requires a limit; this one when the request sets none
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _bad_request(deployment: Deployment, what: str) -> UpstreamFailure:
    return UpstreamFailure(kind="bad_request",
                           message=f"{deployment.provider_name} (Anthropic) cannot take this request: {what}")


def _text_block(text: str, part: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _image_block(deployment: Deployment, part: dict[str, Any]) -> dict[str, Any]:
    url = image_url_of(part)
    inline = parse_data_url(url)
    if inline is not None:
        source: dict[str, Any] = {"type": "base64", "media_type": inline[0], "data": inline[1]}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise _bad_request(deployment, "an image_url must be an http(s) URL or a base64 data: URL.")
    block: dict[str, Any] = {"type": "image", "source": source}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _file_block(deployment: Deployment, part: dict[str, Any]) -> dict[str, Any]:
    file = part.get("file") if isinstance(part.get("file"), dict) else {}
    inline = parse_data_url(str(file.get("file_data") or ""))
    if inline is None or inline[0] != "application/pdf":
        raise _bad_request(deployment, "only PDF files sent inline as base64 data: URLs are supported.")
    block: dict[str, Any] = {"type": "document",
                             "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _blocks(deployment: Deployment, content: Any, *, text_only: bool = False) -> list[dict[str, Any]]:
    """Anthropic content blocks for an OpenAI message ``content`` (string or parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad_request(deployment, "message content must be a string or a list of parts.")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            if part:
                blocks.append({"type": "text", "text": part})
            continue
        if not isinstance(part, dict):
            raise _bad_request(deployment, "a content part must be an object.")
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            text = part.get("text")
            if isinstance(text, str) and text:
                blocks.append(_text_block(text, part))
        elif kind == "refusal":
            if isinstance(part.get("refusal"), str) and part["refusal"]:
                blocks.append({"type": "text", "text": part["refusal"]})
        elif kind in ("image_url", "file") and not text_only:
            blocks.append(_image_block(deployment, part) if kind == "image_url" else _file_block(deployment, part))
        else:
            where = "here (system and assistant messages take text only)" if text_only else ""
            raise _bad_request(deployment, f"content parts of type {kind!r} are not supported {where}".rstrip() + ".")
    return blocks


def _tool_result(deployment: Deployment, message: dict[str, Any]) -> dict[str, Any]:
    blocks = _blocks(deployment, message.get("content"))
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or "")}
    if blocks:
        if all(b["type"] == "text" and len(b) == 2 for b in blocks):
            block["content"] = "".join(b["text"] for b in blocks)
        else:
            block["content"] = blocks
    return block


def _tool_use(deployment: Deployment, call: Any) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise _bad_request(deployment, "an assistant tool call must have a 'function' object.")
    function = call["function"]
    return {
        "type": "tool_use",
        "id": str(call.get("id") or ""),
        "name": str(function.get("name") or ""),
        "input": tool_arguments(function.get("arguments"), provider=deployment.provider_name),
    }


def _tools(deployment: Deployment, tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools if isinstance(tools, list) else []:
        if (not isinstance(tool, dict) or tool.get("type", "function") != "function"
                or not isinstance(tool.get("function"), dict)):
            raise _bad_request(deployment, "only tools of type 'function' are supported.")
        function = tool["function"]
        schema = function.get("parameters")
        entry: dict[str, Any] = {
            "name": str(function.get("name") or ""),
            "input_schema": schema if isinstance(schema, dict) and schema else {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = str(function["description"])
        if "cache_control" in tool:
            entry["cache_control"] = tool["cache_control"]
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        mapped = None
    elif choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        mapped = {"type": "tool", "name": str(choice["function"]["name"])}
    else:
        mapped = None
    if parallel is False and (mapped is None or mapped["type"] != "none"):
        mapped = {**(mapped or {"type": "auto"}), "disable_parallel_tool_use": True}
    return mapped


def _compact(content: list[dict[str, Any]]) -> Any:
    """A lone plain text block is sent as a string."""
    if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
        return content[0]["text"]
    return content


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    """``POST {base}/v1/messages``: system/developer messages become ``system``, tool calls
    and tool results become ``tool_use`` / ``tool_result`` blocks, consecutive messages of one
    role are merged (the shared walk, conversation.py), and the OpenAI sampling parameters are renamed."""
    walked = conversation_walk(body.get("messages"), TurnBuilders(
        system=lambda message: _blocks(deployment, message.get("content"), text_only=True),
        user=lambda message: _blocks(deployment, message.get("content")),
        assistant=lambda message: _blocks(deployment, message.get("content"), text_only=True),
        tool_call=partial(_tool_use, deployment),
        tool_result=partial(_tool_result, deployment),
        refuse=partial(_bad_request, deployment),
    ))
    system = walked.system
    messages = [{"role": role, "content": blocks} for role, blocks in walked.turns]
    for message in messages:
        message["content"] = _compact(message["content"])

    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise _bad_request(deployment, "n > 1 (several choices) is not supported.")
    payload: dict[str, Any] = {
        "model": deployment.model_id,
        "max_tokens": output_limit(body) or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        if all(len(b) == 2 for b in system):
            payload["system"] = "\n\n".join(b["text"] for b in system)
        else:
            payload["system"] = system
    tools = _tools(deployment, body.get("tools"))
    if tools:
        payload["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            payload["tool_choice"] = choice
    stop = body.get("stop")
    if isinstance(stop, str) and stop:
        payload["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        payload["stop_sequences"] = [s for s in stop if isinstance(s, str) and s]
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        payload["temperature"] = min(max(float(temperature), 0.0), 1.0)  # Anthropic's range is 0..1
    top_p = body.get("top_p")
    if isinstance(top_p, (int, float)) and not isinstance(top_p, bool):
        payload["top_p"] = top_p
    top_k = body.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        payload["top_k"] = top_k
    user = body.get("user")
    if isinstance(user, str) and user:
        payload["metadata"] = {"user_id": user}
    if stream:
        payload["stream"] = True
    return UpstreamRequest(
        method="POST",
        url=f"{deployment.base_url}/v1/messages",
        headers=deployment_headers(deployment, accept="text/event-stream" if stream else "application/json"),
        body=dumps(payload),
    )


def usage_from_anthropic(raw: Any) -> Usage | None:
    """Input counts everything sent: uncached + cache reads + cache writes; of the writes,
    ``cache_creation.ephemeral_1h_input_tokens`` were written for an hour."""
    if not isinstance(raw, dict):
        return None
    fresh = as_int(raw.get("input_tokens"))
    read = as_int(raw.get("cache_read_input_tokens"))
    written = as_int(raw.get("cache_creation_input_tokens"))
    tiers = raw.get("cache_creation")
    hour = min(as_int(tiers.get("ephemeral_1h_input_tokens")), written) if isinstance(tiers, dict) else 0
    return Usage(
        input_tokens=fresh + read + written,
        cached_input_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=hour,
        output_tokens=as_int(raw.get("output_tokens")),
    )


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    obj = load_json(deployment, body, "a message")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not a message object.")
    if obj.get("type") == "error":
        raise stream_error(deployment, obj.get("error"))
    content = obj.get("content")
    if type(content) is not list:
        raise bad_response(deployment, "answered without a 'content' list; is this the Anthropic Messages API?")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if type(block) is not dict:
            continue
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif kind == "tool_use":
            calls.append({
                "id": str(block.get("id") or ""),
                "type": "function",
                "function": {"name": str(block.get("name") or ""),
                             "arguments": dumps(block.get("input") or {}).decode()},
            })
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    stop_reason = obj.get("stop_reason")
    finish = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if calls and finish == "stop":
        finish = "tool_calls"
    usage = usage_from_anthropic(obj.get("usage"))
    model = obj.get("model") if isinstance(obj.get("model"), str) and obj.get("model") else deployment.model_id
    result = chat_completion(
        completion_id=f"chatcmpl-{request_id}",
        model=model,
        message=message,
        finish_reason=finish,
        usage=usage_to_openai(usage, cache_known=True) if usage is not None else None,
    )
    return ChatResult(body=result, usage=usage if usage is not None else Usage(estimated=True))


def stream_error(deployment: Deployment, err: Any) -> UpstreamFailure:
    """An ``error`` event (or error object in a 200 answer), classified by its ``type``."""
    err = err if isinstance(err, dict) else {}
    kind = err.get("type")
    classified = error_class(None, (), err.get("message"))
    if classified is None and isinstance(kind, str):
        classified = ERROR_TYPE_KINDS.get(kind)
    detail = err.get("message") if isinstance(err.get("message"), str) else str(kind or "unknown error")
    return failure(deployment, None, None, detail,
                   classified=classified or ("server_error", True, str(kind or "server error")))


class AnthropicStreamTranslator:
    """Named SSE events (message_start … message_stop) → OpenAI chunks."""

    __slots__ = ("usage", "text_chars", "finish_reason", "_deployment", "_decoder", "_request_id",
                 "_created", "_chunks", "_tools", "_stop_reason", "_stopped", "_raw_usage")

    def __init__(self, deployment: Deployment, *, request_id: str, created: int) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finish_reason: str | None = None
        self._deployment = deployment
        self._decoder = SSEDecoder()
        self._request_id = request_id
        self._created = created
        self._chunks: ChunkBuilder | None = None
        self._tools: dict[Any, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._stop_reason: str | None = None
        self._stopped = False
        self._raw_usage: dict[str, Any] = {}

    def feed(self, data: bytes) -> list[bytes]:
        events = self._decoder.feed(data)
        return self._translate(events) if events else []

    def finish(self) -> list[bytes]:
        out = self._translate(self._decoder.finish())
        if not self._stopped:
            if self._stop_reason is None:
                raise truncated_stream(self._deployment)
            self._finish_chunk(out)  # message_delta came, message_stop did not
        return out

    def _start(self, out: list[bytes], model: Any = None) -> ChunkBuilder:
        if self._chunks is None:
            name = model if isinstance(model, str) and model else self._deployment.model_id
            self._chunks = ChunkBuilder(f"chatcmpl-{self._request_id}", self._created, name)
            out.append(self._chunks.role())
        return self._chunks

    def _merge_usage(self, raw: Any) -> None:
        if isinstance(raw, dict):
            for key, value in raw.items():
                if value is not None:
                    self._raw_usage[key] = value
            self.usage = usage_from_anthropic(self._raw_usage)

    def _finish_chunk(self, out: list[bytes]) -> None:
        self._stopped = True
        reason = FINISH_REASONS.get(self._stop_reason or "", "stop")
        if self._tools and reason == "stop":
            reason = "tool_calls"
        self.finish_reason = reason
        out.append(self._start(out).finish(reason))

    def _translate(self, events: list[tuple[bytes, bytes]]) -> list[bytes]:
        out: list[bytes] = []
        for name, data in events:
            try:
                obj = loads(data)
            except JSONDecodeError:
                raise bad_response(self._deployment, "sent a malformed stream event (invalid JSON).") from None
            if type(obj) is not dict:
                raise bad_response(self._deployment, "sent a stream event that is not a JSON object.")
            kind = obj.get("type") or name.decode("utf-8", "replace")
            if kind == "content_block_delta":
                delta = obj.get("delta")
                if type(delta) is not dict:
                    continue
                delta_type = delta.get("type")
                if delta_type == "text_delta":
                    text = delta.get("text")
                    if text and isinstance(text, str):
                        self.text_chars += len(text)
                        out.append(self._start(out).content(text))
                elif delta_type == "input_json_delta":
                    partial = delta.get("partial_json")
                    index = self._tools.get(obj.get("index"))
                    if partial and isinstance(partial, str) and index is not None:
                        self.text_chars += len(partial)
                        out.append(self._start(out).delta(
                            {"tool_calls": [{"index": index, "function": {"arguments": partial}}]}))
                # thinking / signature / citations deltas have no OpenAI chunk equivalent
            elif kind == "content_block_start":
                block = obj.get("content_block")
                if type(block) is not dict:
                    continue
                if block.get("type") == "text":
                    text = block.get("text")
                    if text and isinstance(text, str):
                        self.text_chars += len(text)
                        out.append(self._start(out).content(text))
                elif block.get("type") == "tool_use":
                    chunks = self._start(out)
                    index = self._tools[obj.get("index")] = len(self._tools)
                    out.append(chunks.delta({"tool_calls": [{
                        "index": index, "id": str(block.get("id") or ""), "type": "function",
                        "function": {"name": str(block.get("name") or ""), "arguments": ""}}]}))
                    if block.get("input"):
                        args = dumps(block["input"]).decode()
                        self.text_chars += len(args)
                        out.append(chunks.delta({"tool_calls": [{"index": index, "function": {"arguments": args}}]}))
            elif kind == "message_start":
                message = obj.get("message") if type(obj.get("message")) is dict else {}
                self._start(out, message.get("model"))
                self._merge_usage(message.get("usage"))
            elif kind == "message_delta":
                delta = obj.get("delta")
                if type(delta) is dict and isinstance(delta.get("stop_reason"), str):
                    self._stop_reason = delta["stop_reason"]
                self._merge_usage(obj.get("usage"))
            elif kind == "message_stop":
                if not self._stopped:
                    self._finish_chunk(out)
            elif kind == "error":
                raise stream_error(self._deployment, obj.get("error"))
            # ping, content_block_stop and unknown events carry nothing for the client
        return out


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> AnthropicStreamTranslator:
    return AnthropicStreamTranslator(deployment, request_id=request_id, created=created)


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    raise UpstreamFailure(
        kind="bad_request",
        message=f"{deployment.provider_name}: Anthropic has no embeddings API; route embeddings to another provider.",
    )


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    raise UpstreamFailure(
        kind="bad_request",
        message=f"{deployment.provider_name}: Anthropic has no embeddings API; route embeddings to another provider.",
    )


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    """``{"type":"error","error":{"type","message"},"request_id"}`` classified by status (the
    error type refines it: ``billing_error`` is a quota problem whatever the status; a 400
    ``invalid_request_error`` saying "prompt is too long" is a ``context_window`` failure).
    Anthropic has no content-policy error: a refusal is a 200 answer with ``stop_reason:
    "refusal"`` (finish_reason ``content_filter``)."""
    try:
        obj = loads(body) if body else None
    except JSONDecodeError:
        obj = None
    err = obj.get("error") if type(obj) is dict else None
    if type(err) is dict and isinstance(err.get("message"), str) and err["message"]:
        detail = err["message"]
    elif isinstance(err, str) and err:
        detail = err
    else:
        detail = body_detail(body)
    classified = status_kind(status)
    if type(err) is dict and err.get("type") == "billing_error":
        classified = ERROR_TYPE_KINDS["billing_error"]
    elif type(err) is dict:
        classified = error_class(status, (), err.get("message")) or classified
    return failure(deployment, status, headers, detail, classified=classified)
