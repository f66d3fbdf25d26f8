"""Google Gemini: OpenAI chat requests translated to ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (the Gemini API, ``x-goog-api-key``; or Vertex AI, the same
body under ``…/projects/{p}/locations/{l}/publishers/google`` with a bearer token, the key itself
or one minted with a service account's JSON key: providers/adapters/credentials.py), and its
answers, streams, ``usageMetadata`` and ``{"error": {code, message, status, details}}`` bodies
translated back (wire-formats-2.md §5). Embeddings go to ``models/{model}:batchEmbedContents``
on the Gemini API, their input tokens estimated (it counts none), and to ``models/{model}:predict``
on Vertex AI, which counts each text's tokens.

Usage: ``candidatesTokenCount`` does not include ``thoughtsTokenCount`` (the reference's
example totals prompt + candidates + thoughts), and thinking is billed as output, so output =
candidates + thoughts, of which reasoning = thoughts. ``promptTokenCount`` includes
``cachedContentTokenCount``; ``toolUsePromptTokenCount`` (tool results Google fed the model
itself) is input on top of it.

Tool calls: Gemini's ``functionCall`` may carry an opaque ``thoughtSignature`` that must come
back on the same part in the next turn (Gemini 3 refuses a history without it). The gateway is
stateless, so the signature travels inside the OpenAI tool call id (``<id>__sig_<signature>``,
the signature in URL-safe base64 without padding, so the id stays within the ``[A-Za-z0-9_-]``
that Anthropic's tool ids allow) and is put back, in standard base64, on the ``functionCall``
part when the client sends the call back. A tool result is matched to its function's name
through that id."""

import base64
import binascii
import itertools
from functools import partial
from typing import Any

from orjson import JSONDecodeError, dumps, loads

from providers.adapters.conversation import TurnBuilders, conversation_walk
from providers.adapters.failures import (
    CONTENT_POLICY,
    bad_response,
    body_detail,
    error_class,
    failure,
    load_json,
    status_kind,
    truncated_stream,
)
from providers.adapters.headers import deployment_headers, is_vertex
from providers.adapters.messages import (
    THINKING_BUDGETS,
    chat_completion,
    content_parts,
    parse_data_url,
    text_of,
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
from providers.adapters.usage import as_int, estimate_input_tokens, usage_to_openai

IN_PROCESS = False  # builds HTTP requests and parses answers (see registry.py)
DEFAULT_MAX_TOKENS = None  # Gemini needs no output limit
SIGNATURE_MARK = "__sig_"  # tool call id = "<id>__sig_<thoughtSignature, URL-safe base64>"
FILTERED = "content_filter"
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": FILTERED,
    "RECITATION": FILTERED,
    "BLOCKLIST": FILTERED,
    "PROHIBITED_CONTENT": FILTERED,
    "SPII": FILTERED,
    "IMAGE_SAFETY": FILTERED,
    "IMAGE_PROHIBITED_CONTENT": FILTERED,
    "IMAGE_RECITATION": FILTERED,
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
    "TOO_MANY_TOOL_CALLS": "stop",
    "NO_IMAGE": "stop",
    "IMAGE_OTHER": "stop",
}
# google.rpc status -> (kind, retryable, words), refining the HTTP status
STATUS_NAMES: dict[str, tuple[str, bool, str]] = {
    "INVALID_ARGUMENT": ("bad_request", False, "invalid argument"),
    "FAILED_PRECONDITION": ("bad_request", False, "failed precondition"),
    "OUT_OF_RANGE": ("bad_request", False, "out of range"),
    "UNAUTHENTICATED": ("auth", False, "authentication failed"),
    "PERMISSION_DENIED": ("auth", False, "permission denied"),
    "NOT_FOUND": ("not_found", False, "not found"),
    "RESOURCE_EXHAUSTED": ("rate_limit", True, "resource exhausted"),
    "CANCELLED": ("server_error", True, "cancelled"),
    "ABORTED": ("server_error", True, "aborted"),
    "INTERNAL": ("server_error", True, "internal error"),
    "UNAVAILABLE": ("server_error", True, "unavailable"),
    "DEADLINE_EXCEEDED": ("timeout", True, "deadline exceeded"),
}
BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})  # Google answers these 400, not 401


def _bad_request(deployment: Deployment, what: str) -> UpstreamFailure:
    return UpstreamFailure(kind="bad_request",
                           message=f"{deployment.provider_name} (Gemini) cannot take this request: {what}")


def model_path(model_id: str) -> str:
    """``models/{id}`` for a bare id; ids with a collection already (``tunedModels/…``) as given."""
    return model_id if "/" in model_id else f"models/{model_id}"


def join_call_id(call_id: str, signature: str) -> str:
    """``call_id`` carrying ``signature`` (standard base64, as Gemini sends it)."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return call_id  # not base64: nothing Gemini could take back either
    return f"{call_id}{SIGNATURE_MARK}{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """(the id, the thoughtSignature it carries in standard base64, or None)."""
    head, mark, packed = call_id.partition(SIGNATURE_MARK)
    if not mark or not packed:
        return call_id, None
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
    except (binascii.Error, ValueError):
        return call_id, None
    return head, base64.b64encode(raw).decode()


def _inline_part(deployment: Deployment, url: str, what: str) -> dict[str, Any]:
    inline = parse_data_url(url)
    if inline is None:
        raise _bad_request(deployment, f"{what} must be sent inline as a base64 data: URL.")
    return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}


def _parts(deployment: Deployment, content: Any, *, text_only: bool = False) -> list[dict[str, Any]]:
    """Gemini parts for an OpenAI message ``content`` (string or parts)."""
    parts: list[dict[str, Any]] = []
    for kind, value in content_parts(content, text_only=text_only, refuse=partial(_bad_request, deployment)):
        if kind == "text":
            parts.append({"text": value})
        elif kind == "image":
            parts.append(_inline_part(deployment, value, "an image"))
        else:
            parts.append(_inline_part(deployment, str(value.get("file_data") or ""), "a file"))
    return parts


def _function_call(deployment: Deployment, call: Any) -> tuple[dict[str, Any], str, str]:
    """The ``functionCall`` part for an assistant tool call, its plain id and its name."""
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise _bad_request(deployment, "an assistant tool call must have a 'function' object.")
    function = call["function"]
    name = str(function.get("name") or "")
    call_id, signature = split_call_id(str(call.get("id") or ""))
    part: dict[str, Any] = {"functionCall": {
        "name": name, "args": tool_arguments(function.get("arguments"), provider=deployment.provider_name)}}
    if signature:
        part["thoughtSignature"] = signature
    return part, call_id, name


def _function_response(deployment: Deployment, message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call_id, _ = split_call_id(str(message.get("tool_call_id") or ""))
    name = names.get(call_id) or (message.get("name") if isinstance(message.get("name"), str) else "")
    if not name:
        raise _bad_request(deployment, "a tool result must answer a tool call of an earlier assistant message "
                                       "(Gemini needs the function's name).")
    text = text_of(message.get("content"))
    try:
        value = loads(text) if text else {}
    except JSONDecodeError:
        value = None
    return {"functionResponse": {"name": name, "response": value if isinstance(value, dict) else {"result": text}}}


def _tools(deployment: Deployment, tools: Any) -> list[dict[str, Any]]:
    declarations = []
    for tool in tools if isinstance(tools, list) else []:
        if (not isinstance(tool, dict) or tool.get("type", "function") != "function"
                or not isinstance(tool.get("function"), dict)):
            raise _bad_request(deployment, "only tools of type 'function' are supported.")
        function = tool["function"]
        entry: dict[str, Any] = {"name": str(function.get("name") or "")}
        if function.get("description"):
            entry["description"] = str(function["description"])
        schema = function.get("parameters")
        if isinstance(schema, dict) and schema:
            entry["parametersJsonSchema"] = schema  # plain JSON Schema (``parameters`` is OpenAPI's subset)
        declarations.append(entry)
    return [{"functionDeclarations": declarations}] if declarations else []


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        config = {"mode": "ANY", "allowedFunctionNames": [str(choice["function"]["name"])]}
    else:
        return None
    return {"functionCallingConfig": config}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _generation_config(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"),
                         ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if _number(body.get(ours)):
            config[theirs] = body[ours]
    if isinstance(body.get("top_k"), int) and not isinstance(body["top_k"], bool) and body["top_k"] > 0:
        config["topK"] = body["top_k"]
    if isinstance(body.get("seed"), int) and not isinstance(body["seed"], bool):
        config["seed"] = body["seed"]
    limit = output_limit(body)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if isinstance(stop, str) and stop:
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = [s for s in stop if isinstance(s, str) and s]
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_object":
            config["responseMimeType"] = "application/json"
        elif response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema")
            config["responseMimeType"] = "application/json"
            if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
                config["responseJsonSchema"] = spec["schema"]
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise _bad_request(deployment, f"reasoning_effort must be one of {', '.join(THINKING_BUDGETS)} "
                                           f"(got {effort!r}).")
        config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise _bad_request(deployment, "n > 1 (several choices) is not supported.")
    return config


def chat_payload(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """The ``GenerateContentRequest`` for an OpenAI chat body: system/developer messages become
    ``systemInstruction``, assistant turns role ``model``, tool calls ``functionCall`` parts and
    tool results ``functionResponse`` parts in a user turn; consecutive turns of one role merge (the
    shared walk, conversation.py)."""
    names: dict[str, str] = {}  # tool call id -> function name, for the tool results

    def function_call(call: Any) -> dict[str, Any]:
        part, call_id, name = _function_call(deployment, call)
        names[call_id] = name
        return part

    walked = conversation_walk(body.get("messages"), TurnBuilders(
        system=lambda message: _parts(deployment, message.get("content"), text_only=True),
        user=lambda message: _parts(deployment, message.get("content")),
        assistant=lambda message: _parts(deployment, message.get("content"), text_only=True),
        tool_call=function_call,
        tool_result=lambda message: _function_response(deployment, message, names),
        refuse=partial(_bad_request, deployment),
    ))
    system = walked.system
    contents = [{"role": "model" if role == "assistant" else "user", "parts": parts} for role, parts in walked.turns]
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    tools = _tools(deployment, body.get("tools"))
    if tools:
        payload["tools"] = tools
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            payload["toolConfig"] = config
    generation = _generation_config(deployment, body)
    if generation:
        payload["generationConfig"] = generation
    return payload


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    """``POST {base}/models/{model}:generateContent`` (or ``:streamGenerateContent?alt=sse``)."""
    payload = chat_payload(deployment, body)
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return UpstreamRequest(
        method="POST",
        url=f"{deployment.base_url}/{model_path(deployment.model_id)}:{method}",
        headers=deployment_headers(deployment, accept="text/event-stream" if stream else "application/json"),
        body=dumps(payload),
    )


def usage_from_gemini(raw: Any) -> Usage | None:
    """``usageMetadata`` as ``Usage`` (see the module docstring for the arithmetic)."""
    if not isinstance(raw, dict):
        return None
    prompt = as_int(raw.get("promptTokenCount")) + as_int(raw.get("toolUsePromptTokenCount"))
    thoughts = as_int(raw.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=prompt,
        cached_input_tokens=min(as_int(raw.get("cachedContentTokenCount")), prompt),
        output_tokens=as_int(raw.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
    )


class _Calls:
    """Numbers the tool calls of one answer: ``call_<request id>_<n>`` unless Gemini gave an id."""

    __slots__ = ("_prefix", "_count")

    def __init__(self, request_id: str) -> None:
        self._prefix = f"call_{request_id}_"
        self._count = itertools.count()

    def openai(self, part: dict[str, Any]) -> dict[str, Any]:
        call = part["functionCall"]
        given = call.get("id")
        call_id = given if isinstance(given, str) and given else f"{self._prefix}{next(self._count)}"
        signature = part.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            call_id = join_call_id(call_id, signature)
        args = call.get("args")
        return {"id": call_id, "type": "function",
                "function": {"name": str(call.get("name") or ""),
                             "arguments": dumps(args if isinstance(args, dict) else {}).decode()}}


def _candidate(obj: dict[str, Any]) -> dict[str, Any]:
    candidates = obj.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return {}


def _answer_parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _finish(reason: Any, *, calls: bool) -> str:
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if calls and mapped == "stop" else mapped


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    obj = load_json(deployment, body, "a GenerateContentResponse")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not a GenerateContentResponse.")
    if "error" in obj:
        raise stream_error(deployment, obj["error"])
    if "candidates" not in obj and "promptFeedback" not in obj:
        raise bad_response(deployment, "answered without 'candidates'; is this the Gemini API?")
    candidate = _candidate(obj)
    blocked = _blocked(obj, candidate)
    if blocked:
        raise _refused(deployment, f"the prompt was blocked ({blocked}).")
    numbering = _Calls(request_id)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in _answer_parts(candidate):
        if isinstance(part.get("functionCall"), dict):
            calls.append(numbering.openai(part))
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])  # thought summaries have no place in a chat message
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    finish = _finish(candidate.get("finishReason"), calls=bool(calls))
    if finish == FILTERED and not text and not calls:
        raise _refused(deployment, f"the answer was stopped ({candidate.get('finishReason')}) before any content.")
    usage = usage_from_gemini(obj.get("usageMetadata"))
    model = obj.get("modelVersion") if isinstance(obj.get("modelVersion"), str) and obj["modelVersion"] \
        else deployment.model_id
    result = chat_completion(
        completion_id=f"chatcmpl-{request_id}",
        model=model,
        message=message,
        finish_reason=finish,
        usage=usage_to_openai(usage, cache_known=True) if usage is not None else None,
    )
    return ChatResult(body=result, usage=usage if usage is not None else Usage(estimated=True))


def _blocked(obj: dict[str, Any], candidate: dict[str, Any]) -> str:
    """The ``promptFeedback.blockReason`` of an answer without candidates ("" if none)."""
    feedback = obj.get("promptFeedback")
    reason = feedback.get("blockReason") if not candidate and isinstance(feedback, dict) else None
    return str(reason) if reason else ""


def _refused(deployment: Deployment, what: str) -> UpstreamFailure:
    """A 200 answer that refuses the content (a blocked prompt, or a safety stop before any
    content): a ``content_policy`` failure, so a content-policy fallback can take over."""
    return failure(deployment, None, None, what, classified=CONTENT_POLICY)


def _google_error(err: Any) -> tuple[str, tuple[str, bool, str] | None, float | None]:
    """(detail, classification from ``status``/``details`` or None, RetryInfo seconds or None)."""
    if not isinstance(err, dict):
        return (err if isinstance(err, str) and err else ""), None, None
    detail = err["message"] if isinstance(err.get("message"), str) else ""
    status = err.get("status")
    classified = STATUS_NAMES.get(status) if isinstance(status, str) else None
    retry_after = None
    for item in err.get("details") if isinstance(err.get("details"), list) else []:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("@type") or "")
        if kind.endswith("google.rpc.ErrorInfo") and item.get("reason") in BAD_KEY_REASONS:
            classified = ("auth", False, "API key not valid")
        elif kind.endswith("google.rpc.RetryInfo"):
            retry_after = _duration(item.get("retryDelay"))
    return detail, classified, retry_after


def _duration(value: Any) -> float | None:
    """A google.protobuf.Duration in JSON (``"41s"``, ``"0.5s"``) as seconds."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            seconds = float(value[:-1])
        except ValueError:
            return None
        return seconds if seconds >= 0 and seconds < 86400 * 7 else None
    return None


def stream_error(deployment: Deployment, err: Any) -> UpstreamFailure:
    """An ``error`` object inside a 200 answer or an SSE event, classified by its ``status``."""
    detail, classified, retry_after = _google_error(err)
    if classified is None and isinstance(err, dict) and isinstance(err.get("code"), int):
        classified = status_kind(err["code"])
    classified = error_class(None, (), detail) or classified
    result = failure(deployment, None, None, detail or "unknown error",
                     classified=classified or ("server_error", True, "server error"))
    result.retry_after = retry_after
    return result


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    """``{"error": {"code", "message", "status", "details"}}`` classified by HTTP status, refined
    by ``status`` (an invalid API key is a 400 ``INVALID_ARGUMENT`` with reason
    ``API_KEY_INVALID``: an auth failure; a 400 saying "The input token count (…) exceeds the
    maximum number of tokens allowed" a ``context_window`` one); a 429's ``RetryInfo.retryDelay`` gives the wait when
    no ``retry-after`` header does."""
    try:
        obj = loads(body) if body else None
    except JSONDecodeError:
        obj = None
    err = obj.get("error") if type(obj) is dict else None
    if type(obj) is list and obj and type(obj[0]) is dict:  # a streamed request's error may come as a JSON array
        err = obj[0].get("error")
    detail, classified, retry_after = _google_error(err)
    if not detail:
        detail = body_detail(body)
    if classified is None or ((status >= 500 or status in (408, 429)) and not classified[1]):
        classified = status_kind(status)  # a 5xx or 429 stays retryable whatever its status name says
    classified = error_class(status, (), detail) or classified
    result = failure(deployment, status, headers, detail, classified=classified)
    if result.retry_after is None and retry_after is not None:
        result.retry_after = retry_after
    return result


class GeminiStreamTranslator:
    """``data: <GenerateContentResponse>`` events (no names, no ``[DONE]``) → OpenAI chunks. Text
    parts become content deltas; each ``functionCall`` part arrives whole and becomes one tool
    call delta; the last event's ``finishReason`` and ``usageMetadata`` end the stream (``usage``
    stays None until an event has carried a ``finishReason``). Nothing is sent before the first
    content, so a blocked prompt or a safety stop before any content is a ``content_policy``
    failure that can still fall back."""

    __slots__ = ("usage", "text_chars", "finish_reason", "_deployment", "_decoder", "_request_id",
                 "_created", "_chunks", "_calls", "_numbering", "_reason", "_blocked", "_last_usage", "_model")

    def __init__(self, deployment: Deployment, *, request_id: str, created: int) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finish_reason: str | None = None
        self._deployment = deployment
        self._decoder = SSEDecoder()
        self._request_id = request_id
        self._created = created
        self._chunks: ChunkBuilder | None = None
        self._calls = 0
        self._numbering = _Calls(request_id)
        self._reason: str | None = None
        self._blocked = False
        self._last_usage: Usage | None = None
        self._model: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        events = self._decoder.feed(data)
        return self._translate(events) if events else []

    def finish(self) -> list[bytes]:
        out = self._translate(self._decoder.finish())
        if self._reason is None and not self._blocked:
            raise truncated_stream(self._deployment)
        reason = FILTERED if self._blocked else _finish(self._reason, calls=bool(self._calls))
        self.finish_reason = reason
        out.append(self._start(out).finish(reason))
        return out

    def _start(self, out: list[bytes]) -> ChunkBuilder:
        if self._chunks is None:
            self._chunks = ChunkBuilder(f"chatcmpl-{self._request_id}", self._created,
                                        self._model or self._deployment.model_id)
            out.append(self._chunks.role())
        return self._chunks

    def _translate(self, events: list[tuple[bytes, bytes]]) -> list[bytes]:
        out: list[bytes] = []
        for _, data in events:
            try:
                obj = loads(data)
            except JSONDecodeError:
                raise bad_response(self._deployment, "sent a malformed stream event (invalid JSON).") from None
            if type(obj) is not dict:
                raise bad_response(self._deployment, "sent a stream event that is not a JSON object.")
            if "error" in obj:
                raise stream_error(self._deployment, obj["error"])
            if self._model is None and isinstance(obj.get("modelVersion"), str) and obj["modelVersion"]:
                self._model = obj["modelVersion"]
            candidate = _candidate(obj)
            blocked = _blocked(obj, candidate)
            if blocked:
                if self._chunks is None:
                    raise _refused(self._deployment, f"the prompt was blocked ({blocked}).")
                self._blocked = True
            for part in _answer_parts(candidate):
                if isinstance(part.get("functionCall"), dict):
                    call = self._numbering.openai(part)
                    self.text_chars += len(call["function"]["arguments"])
                    out.append(self._start(out).delta({"tool_calls": [{"index": self._calls, **call}]}))
                    self._calls += 1
                elif isinstance(part.get("text"), str) and part["text"] and not part.get("thought"):
                    self.text_chars += len(part["text"])
                    out.append(self._start(out).content(part["text"]))
            reason = candidate.get("finishReason")
            if isinstance(reason, str):
                if self._chunks is None and FINISH_REASONS.get(reason) == FILTERED:
                    raise _refused(self._deployment, f"the answer was stopped ({reason}) before any content.")
                self._reason = reason
            usage = usage_from_gemini(obj.get("usageMetadata"))
            if usage is not None:
                self._last_usage = usage  # cumulative: the last event's is the whole answer's
        if self._reason is not None or self._blocked:
            # Only a finished answer's count is complete (earlier events may count the prompt
            # alone); a stream cut before its end has no usage, and the engine estimates it.
            self.usage = self._last_usage
        return out


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> GeminiStreamTranslator:
    return GeminiStreamTranslator(deployment, request_id=request_id, created=created)


# Vertex AI's ``:predict`` takes at most 250 texts a request (20,000 tokens in all); Gemini's own
# embedding models on Vertex take one (Google's "Get text embeddings" page).
VERTEX_EMBED_LIMIT = 250
VERTEX_ONE_TEXT_MODELS = ("gemini-embedding",)


def _embedding_texts(deployment: Deployment, body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise _bad_request(deployment, "embedding input must be a non-empty string or a list of non-empty strings "
                                       "(Gemini takes no token arrays).")
    return texts


def _dimensions(body: dict[str, Any]) -> dict[str, Any]:
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0:
        return {"outputDimensionality": dimensions}
    return {}


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    """The Gemini API: ``POST {base}/models/{model}:batchEmbedContents`` with one
    ``EmbedContentRequest`` per input text (``{"model": "models/{model}", "content": {"parts":
    [{"text"}]}}``, plus ``outputDimensionality`` from ``dimensions``). Vertex AI: ``POST
    {base}/models/{model}:predict`` with ``{"instances": [{"content"}…], "parameters":
    {"outputDimensionality"}?}``, refused (400) past Vertex's per-request limits."""
    texts = _embedding_texts(deployment, body)
    model = model_path(deployment.model_id)
    extra = _dimensions(body)
    if is_vertex(deployment.base_url):
        name = deployment.model_id.rsplit("/", 1)[-1]
        if len(texts) > 1 and name.startswith(VERTEX_ONE_TEXT_MODELS):
            raise _bad_request(deployment, f"{name} on Vertex AI embeds one text per request; send 'input' as one "
                                           f"string (got {len(texts)} texts).")
        if len(texts) > VERTEX_EMBED_LIMIT:
            raise _bad_request(deployment, f"Vertex AI embeds at most {VERTEX_EMBED_LIMIT} texts per request "
                                           f"(got {len(texts)}); split the input.")
        payload: dict[str, Any] = {"instances": [{"content": text} for text in texts]}
        if extra:
            payload["parameters"] = extra
        method = "predict"
    else:
        payload = {"requests": [{"model": model, "content": {"parts": [{"text": text}]}, **extra} for text in texts]}
        method = "batchEmbedContents"
    return UpstreamRequest(
        method="POST",
        url=f"{deployment.base_url}/{model}:{method}",
        headers=deployment_headers(deployment),
        body=dumps(payload),
    )


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    """The vectors as OpenAI's embeddings list (floats, whatever ``encoding_format`` asked: SDKs
    decode only strings). The Gemini API's ``{"embeddings": [{"values"}…]}`` reports no token
    count, so the input is estimated from ``request`` (``estimate_input_tokens``, 4 characters a
    token) and the usage marked estimated (a ``usageMetadata.promptTokenCount``, should one
    come, is used instead); Vertex AI's ``{"predictions": [{"embeddings": {"values",
    "statistics": {"token_count"}}}…]}`` counts each text's tokens exactly."""
    if is_vertex(deployment.base_url):
        return _parse_predictions(deployment, body, request)
    obj = load_json(deployment, body, "a BatchEmbedContentsResponse")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not a BatchEmbedContentsResponse.")
    if "error" in obj:
        raise stream_error(deployment, obj["error"])
    vectors = obj.get("embeddings")
    if type(vectors) is not list or not all(type(v) is dict and type(v.get("values")) is list for v in vectors):
        raise bad_response(deployment, "answered without an 'embeddings' list of values; is this the Gemini API?")
    metadata = obj.get("usageMetadata")
    tokens = as_int(metadata.get("promptTokenCount")) if isinstance(metadata, dict) else 0
    usage = Usage(input_tokens=tokens)
    if not tokens:
        usage = Usage(input_tokens=estimate_input_tokens((request or {}).get("input")), estimated=True)
    return _embedding_list(deployment, [v["values"] for v in vectors], usage), usage


def _parse_predictions(deployment: Deployment, body: bytes, request: dict[str, Any] | None,
                       ) -> tuple[bytes, Usage]:
    obj = load_json(deployment, body, "a PredictResponse")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not a PredictResponse.")
    if "error" in obj:
        raise stream_error(deployment, obj["error"])
    predictions = obj.get("predictions")
    vectors: list[list[Any]] = []
    counted = True
    tokens = 0
    for item in predictions if type(predictions) is list else [None]:
        embeddings = item.get("embeddings") if type(item) is dict else None
        values = embeddings.get("values") if type(embeddings) is dict else None
        if type(values) is not list:
            raise bad_response(deployment, "answered without 'predictions[].embeddings.values'; is this a Vertex AI "
                                           "embedding model?")
        vectors.append(values)
        statistics = embeddings.get("statistics")
        if type(statistics) is dict and "token_count" in statistics:
            tokens += as_int(statistics["token_count"])
        else:
            counted = False
    if not vectors:
        raise bad_response(deployment, "answered with no predictions.")
    usage = Usage(input_tokens=tokens) if counted else \
        Usage(input_tokens=estimate_input_tokens((request or {}).get("input")), estimated=True)
    return _embedding_list(deployment, vectors, usage), usage


def _embedding_list(deployment: Deployment, vectors: list[list[Any]], usage: Usage) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return dumps({"object": "list", "data": data, "model": deployment.model_id,
                  "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}})
