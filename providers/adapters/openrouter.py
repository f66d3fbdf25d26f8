"""OpenRouter: the OpenAI wire format (see providers/adapters/openai.py). Differences handled
there or here: attribution headers (in the deployment's extra headers), ``: OPENROUTER
PROCESSING`` SSE comments, ``usage.cost`` (credits) kept as ``Usage.provider_cost``, the final
usage chunk with empty or non-empty ``choices``, ``{"error": {"code": <int>, …}}`` errors (also
mid-stream, with ``finish_reason: "error"``) and model-availability errors that say themselves
whether a retry can help.

Prompt caching: OpenRouter reads Anthropic-style ``cache_control`` markers on content parts (for
Claude and Gemini models), so a marker on a whole message moves to its last part
(``cache_markers_placed``); its usage reports the reads (``prompt_tokens_details.cached_tokens``)
and writes (``cache_write_tokens``), both inside ``prompt_tokens``, but not a write's TTL. So that
the cost stays exact, a Claude request whose markers all ask ``"ttl": "1h"`` has its writes priced
as hour-long ones, and one that mixes TTLs (or a non-Claude model's) is sent without them (the
default five minutes)."""

from typing import Any

from providers.adapters import openai as openai_wire
from providers.adapters.types import ChatResult, Deployment, UpstreamFailure, UpstreamRequest, Usage

IN_PROCESS = False  # builds HTTP requests and parses answers (see registry.py)
DEFAULT_MAX_TOKENS = openai_wire.DEFAULT_MAX_TOKENS
HOUR = "1h"


def _claude(deployment: Deployment) -> bool:
    return deployment.model_id.startswith("anthropic/")


def _markers(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``cache_control`` marker of a chat request: on messages, their parts and tools."""
    found = []
    for holder in [*(body.get("messages") or []), *(body.get("tools") or [])]:
        if not isinstance(holder, dict):
            continue
        content = holder.get("content")
        for item in [holder, *(content if isinstance(content, list) else [])]:
            if isinstance(item, dict) and isinstance(item.get("cache_control"), dict):
                found.append(item["cache_control"])
    return found


def hour_writes(deployment: Deployment, request: dict[str, Any] | None) -> bool:
    """Whether a request's cache writes are all hour-long: a Claude model's, every marker ``1h``."""
    markers = _markers(request or {}) if _claude(deployment) else []
    return bool(markers) and all(m.get("ttl") == HOUR for m in markers)


def cache_markers_placed(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with each message-level ``cache_control`` on the message's last content part (a
    string content becomes one text part; an assistant turn with no text keeps none), and TTLs
    dropped unless ``hour_writes`` can price them."""
    if not _markers(body):
        return body
    keep_ttl = hour_writes(deployment, body)

    def marker(mark: dict[str, Any]) -> dict[str, Any]:
        return mark if keep_ttl else {k: v for k, v in mark.items() if k != "ttl"}

    messages = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            messages.append(message)
            continue
        message = dict(message)
        content = message.get("content")
        if isinstance(content, list):
            content = [{**p, "cache_control": marker(p["cache_control"])}
                       if isinstance(p, dict) and isinstance(p.get("cache_control"), dict) else p for p in content]
        mark = message.pop("cache_control", None)
        if isinstance(mark, dict):
            if isinstance(content, str) and content:
                content = [{"type": "text", "text": content}]
            if isinstance(content, list) and content and isinstance(content[-1], dict):
                content = [*content[:-1], {**content[-1], "cache_control": marker(mark)}]
        if content is not None or "content" in message:
            message["content"] = content
        messages.append(message)
    tools = [{**t, "cache_control": marker(t["cache_control"])}
             if isinstance(t, dict) and isinstance(t.get("cache_control"), dict) else t
             for t in body.get("tools") or []]
    return {**body, "messages": messages, **({"tools": tools} if "tools" in body else {})}


def _priced(usage: Usage | None, hour: bool) -> Usage | None:
    if usage is not None and hour:
        usage.cache_write_1h_tokens = usage.cache_write_tokens
    return usage


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    return openai_wire.build_chat(deployment, cache_markers_placed(deployment, body), stream=stream)


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    result = openai_wire.parse_chat_body(deployment, body, request_id=request_id, with_cost=True)
    _priced(result.usage, hour_writes(deployment, request))
    return result


class OpenRouterStreamTranslator(openai_wire.OpenAIStreamTranslator):
    """OpenAI's, with a stream's cache writes priced as hour-long ones when ``hour_writes``."""

    __slots__ = ("_hour",)

    def __init__(self, deployment: Deployment, *, request_id: str, created: int, hour: bool) -> None:
        super().__init__(deployment, request_id=request_id, created=created, with_cost=True)
        self._hour = hour

    def feed(self, data: bytes) -> list[bytes]:
        out = super().feed(data)
        _priced(self.usage, self._hour)
        return out

    def finish(self) -> list[bytes]:
        out = super().finish()
        _priced(self.usage, self._hour)
        return out


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> OpenRouterStreamTranslator:
    return OpenRouterStreamTranslator(deployment, request_id=request_id, created=created,
                                      hour=hour_writes(deployment, request))


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    return openai_wire.build_embeddings(deployment, body)


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    return openai_wire.parse_embeddings_body(deployment, body, with_cost=True)


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    return openai_wire.parse_error_body(deployment, status, headers, body)
