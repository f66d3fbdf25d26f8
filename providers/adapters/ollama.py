"""Ollama's native API (``/api/…``): OpenAI chat and embedding requests translated to
``/api/chat`` and ``/api/embed``, NDJSON streams and native answers translated back into
OpenAI JSON."""

from typing import Any

from orjson import JSONDecodeError, dumps, loads

from providers.adapters.failures import (
    bad_response,
    body_detail,
    error_class,
    failure,
    load_json,
    truncated_stream,
)
from providers.adapters.headers import deployment_headers
from providers.adapters.messages import (
    chat_completion,
    image_url_of,
    parse_data_url,
    tool_arguments,
)
from providers.adapters.sse import ChunkBuilder, NDJSONDecoder
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
DEFAULT_MAX_TOKENS = None  # no output limit unless the request sets one

# OpenAI sampling parameter -> Ollama ``options`` key
OPTION_NAMES = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("seed", "seed"),
    ("frequency_penalty", "frequency_penalty"),
    ("presence_penalty", "presence_penalty"),
)


def _bad_request(deployment: Deployment, what: str) -> UpstreamFailure:
    return UpstreamFailure(kind="bad_request",
                           message=f"{deployment.provider_name} (Ollama) cannot take this request: {what}")


def _content(deployment: Deployment, content: Any) -> tuple[str, list[str]]:
    """(text, base64 images) of an OpenAI message ``content``."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _bad_request(deployment, "message content must be a string or a list of parts.")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise _bad_request(deployment, "a content part must be an object.")
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
        elif kind == "refusal":
            if isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])
        elif kind == "image_url":
            inline = parse_data_url(image_url_of(part))
            if inline is None:
                raise _bad_request(
                    deployment, "images must be sent inline as base64 data: URLs (Ollama does not fetch URLs)."
                )
            images.append(inline[1])
        else:
            raise _bad_request(deployment, f"content parts of type {kind!r} are not supported.")
    return "\n".join(texts), images


def _messages(deployment: Deployment, messages: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}  # tool_call_id -> function name, for tool results
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            raise _bad_request(deployment, "every message must be an object.")
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise _bad_request(deployment, f"messages with role {role!r} are not supported.")
        text, images = _content(deployment, message.get("content"))
        entry: dict[str, Any] = {"role": role, "content": text}
        if images:
            entry["images"] = images
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"] if isinstance(message["tool_calls"], list) else []:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    raise _bad_request(deployment, "an assistant tool call must have a 'function' object.")
                name = str(function.get("name") or "")
                if call.get("id"):
                    tool_names[str(call["id"])] = name
                arguments = tool_arguments(function.get("arguments"), provider=deployment.provider_name)
                calls.append({"function": {"name": name, "arguments": arguments}})
            entry["tool_calls"] = calls
        elif role == "tool":
            name = tool_names.get(str(message.get("tool_call_id") or "")) or message.get("name")
            if isinstance(name, str) and name:
                entry["tool_name"] = name
        out.append(entry)
    return out


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    """``POST {base}/api/chat`` with ``stream`` always explicit (Ollama streams by default)."""
    payload: dict[str, Any] = {
        "model": deployment.model_id,
        "messages": _messages(deployment, body.get("messages")),
        "stream": bool(stream),
    }
    tools = body.get("tools")
    if isinstance(tools, list) and tools and body.get("tool_choice") != "none":
        payload["tools"] = tools  # Ollama takes OpenAI's function-tool shape as it is
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            payload["format"] = "json"
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            payload["format"] = schema if isinstance(schema, dict) else "json"
    options: dict[str, Any] = {}
    for ours, theirs in OPTION_NAMES:
        value = body.get(ours)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            options[theirs] = value
    max_tokens = output_limit(body)
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    stop = body.get("stop")
    if isinstance(stop, str) and stop:
        options["stop"] = [stop]
    elif isinstance(stop, list) and stop:
        options["stop"] = [s for s in stop if isinstance(s, str) and s]
    if options:
        payload["options"] = options
    return UpstreamRequest(
        method="POST",
        url=f"{deployment.base_url}/api/chat",
        headers=deployment_headers(deployment),
        body=dumps(payload),
    )


def _tool_calls(raw: Any, request_id: str, start: int = 0) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as JSON strings) from Ollama's (arguments as objects)."""
    calls = []
    for offset, call in enumerate(raw if isinstance(raw, list) else []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        calls.append({
            "id": str(call.get("id") or f"call_{request_id}_{start + offset}"),
            "type": "function",
            "function": {
                "name": str(function.get("name") or ""),
                "arguments": arguments if isinstance(arguments, str) else dumps(arguments or {}).decode(),
            },
        })
    return calls


def _usage(obj: dict[str, Any]) -> Usage | None:
    if "prompt_eval_count" not in obj and "eval_count" not in obj:
        return None
    return Usage(input_tokens=as_int(obj.get("prompt_eval_count")), output_tokens=as_int(obj.get("eval_count")))


def _finish_reason(obj: dict[str, Any], has_tools: bool) -> str:
    if has_tools:
        return "tool_calls"
    return "length" if obj.get("done_reason") == "length" else "stop"


def _error(deployment: Deployment, err: Any) -> UpstreamFailure:
    detail = err if isinstance(err, str) else str(err)[:300]
    return failure(deployment, None, None, detail,
                   classified=error_class(None, (), detail) or ("server_error", True, "server error"))


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    obj = load_json(deployment, body, "a chat answer")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not a chat answer object.")
    if obj.get("error"):
        raise _error(deployment, obj["error"])
    message = obj.get("message")
    if type(message) is not dict:
        raise bad_response(deployment, "answered without a 'message' object; is this Ollama's native API?")
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    calls = _tool_calls(message.get("tool_calls"), request_id)
    reply: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    usage = _usage(obj)
    model = obj.get("model") if isinstance(obj.get("model"), str) and obj.get("model") else deployment.model_id
    result = chat_completion(
        completion_id=f"chatcmpl-{request_id}",
        model=model,
        message=reply,
        finish_reason=_finish_reason(obj, bool(calls)),
        usage=usage_to_openai(usage) if usage is not None else None,
    )
    return ChatResult(body=result, usage=usage if usage is not None else Usage(estimated=True))


class OllamaStreamTranslator:
    """NDJSON objects → OpenAI chunks; the ``done: true`` object ends the answer."""

    __slots__ = ("usage", "text_chars", "finish_reason", "_deployment", "_decoder", "_request_id",
                 "_created", "_chunks", "_tool_count")

    def __init__(self, deployment: Deployment, *, request_id: str, created: int) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finish_reason: str | None = None
        self._deployment = deployment
        self._decoder = NDJSONDecoder()
        self._request_id = request_id
        self._created = created
        self._chunks: ChunkBuilder | None = None
        self._tool_count = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines = self._decoder.feed(data)
        return self._translate(lines) if lines else []

    def finish(self) -> list[bytes]:
        out = self._translate(self._decoder.finish())
        if self.finish_reason is None:
            raise truncated_stream(self._deployment)
        return out

    def _translate(self, lines: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for line in lines:
            try:
                obj = loads(line)
            except JSONDecodeError:
                raise bad_response(self._deployment, "sent a malformed stream line (invalid JSON).") from None
            if type(obj) is not dict:
                raise bad_response(self._deployment, "sent a stream line that is not a JSON object.")
            if obj.get("error"):
                raise _error(self._deployment, obj["error"])
            chunks = self._chunks
            if chunks is None:
                model = obj.get("model")
                chunks = self._chunks = ChunkBuilder(
                    f"chatcmpl-{self._request_id}", self._created,
                    model if isinstance(model, str) and model else self._deployment.model_id)
                out.append(chunks.role())
            message = obj.get("message")
            if type(message) is dict:
                text = message.get("content")
                if text and isinstance(text, str):
                    self.text_chars += len(text)
                    out.append(chunks.content(text))
                raw_calls = message.get("tool_calls")
                if raw_calls:
                    calls = _tool_calls(raw_calls, self._request_id, self._tool_count)
                    for call in calls:
                        call["index"] = self._tool_count
                        self._tool_count += 1
                        self.text_chars += len(call["function"]["arguments"])
                    if calls:
                        out.append(chunks.delta({"tool_calls": calls}))
            if obj.get("done") is True and self.finish_reason is None:
                self.usage = _usage(obj)
                self.finish_reason = _finish_reason(obj, self._tool_count > 0)
                out.append(chunks.finish(self.finish_reason))
        return out


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> OllamaStreamTranslator:
    return OllamaStreamTranslator(deployment, request_id=request_id, created=created)


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    """``POST {base}/api/embed``; ``input`` must be a string or a list of strings."""
    raw = body.get("input")
    if not (isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(x, str) for x in raw))):
        raise _bad_request(deployment, "embedding input must be a string or a list of strings (no token arrays).")
    payload: dict[str, Any] = {"model": deployment.model_id, "input": raw}
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0:
        payload["dimensions"] = dimensions
    return UpstreamRequest(
        method="POST",
        url=f"{deployment.base_url}/api/embed",
        headers=deployment_headers(deployment),
        body=dumps(payload),
    )


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    obj = load_json(deployment, body, "embeddings")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not an embeddings object.")
    if obj.get("error"):
        raise _error(deployment, obj["error"])
    vectors = obj.get("embeddings")
    if type(vectors) is not list or not all(type(v) is list for v in vectors):
        raise bad_response(deployment, "answered without an 'embeddings' list; is this Ollama's native API?")
    tokens = as_int(obj.get("prompt_eval_count"))
    usage = Usage(input_tokens=tokens, estimated="prompt_eval_count" not in obj)
    model = obj.get("model") if isinstance(obj.get("model"), str) and obj.get("model") else deployment.model_id
    result = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return dumps(result), usage


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    """``{"error": "<text>"}`` classified by status, or as a ``context_window`` failure when the
    text says the input exceeds the context length (``/api/embed`` with ``truncate: false``)."""
    try:
        obj = loads(body) if body else None
    except JSONDecodeError:
        obj = None
    err = obj.get("error") if type(obj) is dict else None
    if isinstance(err, dict):
        err = err.get("message")  # Ollama's /v1 layer, if someone points us there
    detail = err if isinstance(err, str) and err else body_detail(body)
    return failure(deployment, status, headers, detail, classified=error_class(status, (), err))
