"""OpenAI and OpenAI-compatible servers (Fireworks, DeepSeek, xAI, vLLM, LM Studio, …): the
gateway's hot path. Requests pass through with the model replaced; answers pass through byte
for byte when they are already valid OpenAI JSON."""

import time
from typing import Any

from orjson import JSONDecodeError, dumps, loads

from providers.adapters.failures import (
    CONTENT_POLICY,
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
from providers.adapters.sse import SSEDecoder
from providers.adapters.types import (
    ChatResult,
    Deployment,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    output_limit,
)
from providers.adapters.usage import usage_from_openai

IN_PROCESS = False  # builds HTTP requests and parses answers (see registry.py)
DEFAULT_MAX_TOKENS = None  # no output limit unless the request sets one


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    """``POST {base}/chat/completions`` with everything the client sent, ``model`` replaced.
    A stream always asks for the usage chunk (the engine decides what the client sees)."""
    payload = dict(body)
    payload["model"] = deployment.model_id
    limit = output_limit(body)
    if limit is not None and "max_completion_tokens" in payload and "max_tokens" in payload:
        # Both set: the upstream gets the one limit Tollgate reserved the budget for.
        payload.pop("max_tokens")
        payload["max_completion_tokens"] = limit
    if stream:
        payload["stream"] = True
        options = payload.get("stream_options")
        payload["stream_options"] = (
            {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        )
        accept = "text/event-stream"
    else:
        payload.pop("stream", None)
        payload.pop("stream_options", None)  # only valid together with stream: true
        accept = "application/json"
    return UpstreamRequest(
        method="POST",
        url=f"{deployment.base_url}/chat/completions",
        headers=deployment_headers(deployment, accept=accept),
        body=dumps(payload),
    )


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    return parse_chat_body(deployment, body, request_id=request_id, with_cost=False)


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> "OpenAIStreamTranslator":
    return OpenAIStreamTranslator(deployment, request_id=request_id, created=created, with_cost=False)


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    payload = dict(body)
    payload["model"] = deployment.model_id
    return UpstreamRequest(
        method="POST",
        url=f"{deployment.base_url}/embeddings",
        headers=deployment_headers(deployment),
        body=dumps(payload),
    )


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    return parse_embeddings_body(deployment, body, with_cost=False)


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    return parse_error_body(deployment, status, headers, body)


# ----------------------------------------------------------------------------- shared with OpenRouter
def parse_chat_body(deployment: Deployment, body: bytes, *, request_id: str, with_cost: bool) -> ChatResult:
    obj = load_json(deployment, body, "a chat completion")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not a chat completion object.")
    choices = obj.get("choices")
    if type(choices) is not list or not choices:
        if obj.get("error"):
            raise embedded_error(deployment, obj["error"])
        raise bad_response(deployment, "answered without a 'choices' list; is this an OpenAI-compatible chat API?")
    fix = False
    for i, choice in enumerate(choices):
        if type(choice) is not dict or type(choice.get("message")) is not dict:
            raise bad_response(deployment, "answered with a choice that has no 'message' object.")
        if choice.get("error") or choice.get("finish_reason") == "error":
            # OpenRouter: the provider failed after partial output.
            raise embedded_error(deployment, choice.get("error") or {"message": "the answer ended with an error"})
        message = choice["message"]
        if "index" not in choice:
            choice["index"] = i
            fix = True
        if not isinstance(choice.get("finish_reason"), str):
            choice["finish_reason"] = "tool_calls" if message.get("tool_calls") else "stop"
            fix = True
        if "role" not in message:
            message["role"] = "assistant"
            fix = True
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        obj["id"] = f"chatcmpl-{request_id}"
        fix = True
    if obj.get("object") != "chat.completion":
        obj["object"] = "chat.completion"
        fix = True
    if type(obj.get("created")) is not int:
        obj["created"] = int(time.time())
        fix = True
    if not isinstance(obj.get("model"), str) or not obj["model"]:
        obj["model"] = deployment.model_id
        fix = True
    usage = usage_from_openai(obj.get("usage"), with_cost=with_cost) or Usage(estimated=True)
    return ChatResult(body=dumps(obj) if fix else body, usage=usage)


def _arguments(call: Any) -> str:
    if type(call) is dict:
        function = call.get("function")
        if type(function) is dict:
            args = function.get("arguments")
            if isinstance(args, str):
                return args
    return ""


def parse_embeddings_body(deployment: Deployment, body: bytes, *, with_cost: bool) -> tuple[bytes, Usage]:
    obj = load_json(deployment, body, "an embeddings list")
    if type(obj) is not dict or type(obj.get("data")) is not list:
        if type(obj) is dict and obj.get("error"):
            raise embedded_error(deployment, obj["error"])
        raise bad_response(deployment, "answered without a 'data' list; is this an OpenAI-compatible embeddings API?")
    fix = False
    if obj.get("object") != "list":
        obj["object"] = "list"
        fix = True
    if not isinstance(obj.get("model"), str) or not obj["model"]:
        obj["model"] = deployment.model_id
        fix = True
    raw = obj.get("usage")
    usage = usage_from_openai(raw, with_cost=with_cost) or Usage(estimated=True)
    if type(raw) is dict and "prompt_tokens" not in raw and type(raw.get("total_tokens")) is int:
        usage.input_tokens = raw["total_tokens"]
    return (dumps(obj) if fix else body), usage


def classify_error(status: int | None, err: Any) -> tuple[str, bool, str] | None:
    """(kind, retryable, words) from an OpenAI / OpenRouter / Azure error object, when it says
    more than the HTTP status does (``None``: go by the status): the error classes first
    (``context_length_exceeded``, ``content_policy_violation``, Azure's ``content_filter``, a
    vLLM-style "maximum context length" message), OpenRouter's moderation refusal is a
    content-policy one."""
    if type(err) is not dict:
        return None
    code, type_ = err.get("code"), err.get("type")
    if "insufficient_quota" in (code, type_):
        return ERROR_TYPE_KINDS["insufficient_quota"]
    metadata = err.get("metadata") if type(err.get("metadata")) is dict else {}
    inner = err.get("innererror") if type(err.get("innererror")) is dict else {}
    classified = error_class(status, (code, type_, inner.get("code")), err.get("message"))
    if classified is not None:
        return classified
    availability = err.get("availability") if type(err.get("availability")) is dict else {}
    if availability.get("code") == "model_not_found":
        return ERROR_TYPE_KINDS["model_not_found"]
    if status == 403 and ("reasons" in metadata or "flagged_input" in metadata):
        return CONTENT_POLICY[0], CONTENT_POLICY[1], "flagged by moderation"
    if status is None:  # mid-stream: there is no HTTP status to go by
        if type(code) is int:
            return status_kind(code)
        for key in (metadata.get("error_type"), type_, code):
            if isinstance(key, str) and key in ERROR_TYPE_KINDS:
                return ERROR_TYPE_KINDS[key]
        return "server_error", True, "server error"
    return None


def error_detail(err: Any, body: bytes) -> str:
    if type(err) is dict:
        message = err.get("message")
        if isinstance(message, str) and message:
            metadata = err.get("metadata")
            if type(metadata) is dict and isinstance(metadata.get("provider_name"), str):
                return f"{message} (upstream provider: {metadata['provider_name']})"
            return message
    if isinstance(err, str) and err:
        return err
    return body_detail(body)


def parse_error_body(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    try:
        obj = loads(body) if body else None
    except JSONDecodeError:
        obj = None
    err = obj.get("error") if type(obj) is dict else None
    if err is None and type(obj) is dict and isinstance(obj.get("message"), str):
        err = {"message": obj["message"]}
    result = failure(deployment, status, headers, error_detail(err, body), classified=classify_error(status, err))
    _apply_availability(result, err)
    return result


def _apply_availability(result: UpstreamFailure, err: Any) -> None:
    """OpenRouter's model-availability errors say themselves whether a retry can help."""
    availability = err.get("availability") if type(err) is dict else None
    if type(availability) is dict:
        if availability.get("retryable") is False:
            result.retryable = False
        after = availability.get("retry_after")
        if (result.retry_after is None and isinstance(after, (int, float)) and not isinstance(after, bool)
                and after >= 0):
            result.retry_after = float(after)


def embedded_error(deployment: Deployment, err: Any) -> UpstreamFailure:
    """An error object inside a 200 answer or a stream."""
    result = failure(deployment, None, None, error_detail(err, b""), classified=classify_error(None, err))
    _apply_availability(result, err)
    return result


class OpenAIStreamTranslator:
    """Data-only SSE in, the same chunks out (bytes untouched when possible). Drops the
    usage-only chunk and ``[DONE]``; keeps the usage they carried."""

    __slots__ = ("usage", "text_chars", "finish_reason", "_deployment", "_decoder", "_request_id",
                 "_created", "_with_cost")

    def __init__(self, deployment: Deployment, *, request_id: str, created: int, with_cost: bool) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finish_reason: str | None = None
        self._deployment = deployment
        self._decoder = SSEDecoder()
        self._request_id = request_id
        self._created = created
        self._with_cost = with_cost

    def feed(self, data: bytes) -> list[bytes]:
        events = self._decoder.feed(data)
        return self._translate(events) if events else []

    def finish(self) -> list[bytes]:
        out = self._translate(self._decoder.finish())
        if self.finish_reason is None:
            raise truncated_stream(self._deployment)
        return out

    def _translate(self, events: list[tuple[bytes, bytes]]) -> list[bytes]:
        out: list[bytes] = []
        for _name, data in events:
            if data[:6] == b"[DONE]":
                continue
            try:
                obj = loads(data)
            except JSONDecodeError:
                raise bad_response(self._deployment, "sent a malformed stream event (invalid JSON).") from None
            if type(obj) is not dict:
                raise bad_response(self._deployment, "sent a stream event that is not a JSON object.")
            if obj.get("error"):
                raise embedded_error(self._deployment, obj["error"])
            usage = obj.get("usage")
            if usage:
                self.usage = usage_from_openai(usage, with_cost=self._with_cost)
            choices = obj.get("choices")
            if not choices:
                continue  # the usage-only chunk (or an empty one): the engine sends its own
            if type(choices) is not list:
                raise bad_response(self._deployment, "sent a stream chunk whose 'choices' is not a list.")
            meaningful = False
            for choice in choices:
                if type(choice) is not dict:
                    raise bad_response(self._deployment, "sent a stream chunk with a malformed choice.")
                reason = choice.get("finish_reason")
                if reason:
                    if reason == "error":
                        raise embedded_error(self._deployment,
                                             choice.get("error") or {"message": "the stream ended with an error"})
                    self.finish_reason = reason
                    meaningful = True
                delta = choice.get("delta")
                if type(delta) is dict and delta:
                    content = delta.get("content")
                    if content and isinstance(content, str):
                        self.text_chars += len(content)
                        meaningful = True
                    calls = delta.get("tool_calls")
                    if calls and type(calls) is list:
                        meaningful = True
                        for call in calls:
                            self.text_chars += len(_arguments(call))
                    for key in ("reasoning_content", "reasoning", "refusal"):
                        extra = delta.get(key)
                        if extra and isinstance(extra, str):
                            self.text_chars += len(extra)
                            meaningful = True
            fix = b"\n" in data
            if usage:
                if not meaningful:
                    continue  # OpenRouter's older final usage chunk with an empty delta
                del obj["usage"]
                fix = True
            if type(obj.get("id")) is not str or not obj["id"]:
                obj["id"] = f"chatcmpl-{self._request_id}"
                fix = True
            if obj.get("object") != "chat.completion.chunk":
                obj["object"] = "chat.completion.chunk"
                fix = True
            if type(obj.get("created")) is not int:
                obj["created"] = self._created
                fix = True
            if type(obj.get("model")) is not str or not obj["model"]:
                obj["model"] = self._deployment.model_id
                fix = True
            out.append(b"data: " + (dumps(obj) if fix else data) + b"\n\n")
        return out
