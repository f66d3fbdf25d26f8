"""Fake Anthropic Messages API server.

Serves ``POST /v1/messages`` (JSON, or the named-event SSE stream ``message_start`` →
``content_block_start`` / ``ping`` / ``content_block_delta``… / ``content_block_stop`` →
``message_delta`` → ``message_stop``; with ``thinking`` enabled in the request a thinking block,
``thinking_delta`` and ``signature_delta``, comes first), ``POST /v1/messages/count_tokens``
(``{"input_tokens"}``: the prompt's word count, or the ``usage`` override's input) and the paged
catalog ``GET /v1/models`` (``limit``, ``after_id``, ``before_id``; ``has_more``, ``first_id``,
``last_id``) plus ``GET /v1/models/{id}``. Every request needs ``x-api-key`` (or
``Authorization: Bearer``; 401 ``authentication_error``) and ``anthropic-version`` (400
``invalid_request_error``). Errors use ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

Usage mapping: ``Usage.prompt_tokens`` → ``input_tokens`` (the uncached part), ``cached_tokens`` →
``cache_read_input_tokens``, ``cache_creation_tokens`` → ``cache_creation_input_tokens`` (of which
``cache_creation_1h_tokens`` → ``cache_creation.ephemeral_1h_input_tokens``, the rest 5-minute).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

from .base import CREATED, Call, FakeServer, Fault, Reply, Usage, split_even

THINKING = "The user greets me; I should greet back."
SIGNATURE = "EqQBCgIYAhIM1gbcFakeSignature=="

# status -> (error.type, default message)
ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error",
          "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed your organization's rate limit of "
                              "20,000,000 prompt bytes per hour (org: fake, model: {model})."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


class FakeAnthropic(FakeServer):
    """Anthropic Messages + Models. ``base_url`` is the server root (SDKs append ``/v1/...``)."""

    protocol = "anthropic"
    base_path = ""
    default_models: ClassVar[list[str]] = [
        "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"]
    model_prefix = "claude-fake"
    routes: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/v1/models"): "models",
        ("POST", "/v1/messages"): "chat",
        ("POST", "/v1/messages/count_tokens"): "count_tokens",
    }
    prefix_routes = (("GET", "/v1/models/", "model"),)

    def response_headers(self) -> dict[str, str]:
        return {"request-id": self.new_id("req_")}

    def check_auth(self, call: Call) -> Reply | None:
        headers = call.req.headers
        key, auth = headers.get("x-api-key"), headers.get("authorization", "")
        if key is None and not auth.startswith("Bearer "):
            return self.error(401, "x-api-key header is required")
        if self.api_key is not None and self.api_key not in (key, auth[len("Bearer "):]):
            return self.error(401)
        if not headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        type_, default = ANTHROPIC_ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}"))
        body = {"type": "error",
                "error": {"type": variant or type_,
                          "message": message or default.format(model=model or "unknown")},
                "request_id": self.new_id("req_")}
        headers = {"x-should-retry": "true"} if status in (408, 409, 429) or status >= 500 else {}
        return Reply(status, body, headers)

    def model_not_found(self, model: str) -> Reply:
        return self.error(404, f"model: {model}")

    def context_window_reply(self, call: Call, fault: Fault) -> Reply:
        """400 ``invalid_request_error`` "prompt is too long: … tokens > 200000 maximum";
        ``variant="max_tokens"``: the input and ``max_tokens`` together exceed the context. (No
        ``content_policy`` reply: Anthropic refuses with a 200 answer, ``stop_reason: refusal``.)"""
        if fault.variant == "max_tokens":
            text = ("input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input "
                    "length or `max_tokens` and try again")
        else:
            text = "prompt is too long: 208656 tokens > 200000 maximum"
        return self.error(400, fault.message or text)

    def malformed_body(self) -> bytes:
        return b'{"type": "message", "content": [{"type": "text", "text": "trunc'

    def malformed_frame(self) -> bytes:
        return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_del\n\n')

    def stream_error_frame(self, fault: Fault) -> bytes:
        type_ = fault.variant or "overloaded_error"
        return self.event({"type": "error",
                           "error": {"type": type_, "message": fault.message or "Overloaded"}})

    @staticmethod
    def event(obj: dict[str, Any]) -> bytes:
        data = json.dumps(obj, separators=(",", ":")).encode()
        return b"event: " + obj["type"].encode() + b"\ndata: " + data + b"\n\n"

    @staticmethod
    def usage_obj(u: Usage, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": u.prompt_tokens,
            "cache_creation_input_tokens": u.cache_creation_tokens,
            "cache_read_input_tokens": u.cached_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": u.cache_creation_tokens - u.cache_creation_1h_tokens,
                               "ephemeral_1h_input_tokens": u.cache_creation_1h_tokens},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    # ------------------------------------------------------------ models
    def model_obj(self, entry: dict[str, Any], index: int) -> dict[str, Any]:
        created = datetime.fromtimestamp(CREATED - index * 86400, UTC)
        return {"type": "model", "id": entry["id"],
                "display_name": entry["id"].replace("-", " ").title(),
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"), **entry}

    def route_models(self, call: Call) -> Reply:
        query = call.req.query
        models = [self.model_obj(e, i) for i, e in enumerate(self.model_entries())]
        ids = [m["id"] for m in models]
        try:
            limit = int(query.get("limit") or 20)
        except ValueError:
            return self.error(400, "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return self.error(400, "limit: Input should be between 1 and 1000")
        if after := query.get("after_id"):
            start = ids.index(after) + 1 if after in ids else len(ids)
            page, has_more = models[start : start + limit], start + limit < len(ids)
        elif before := query.get("before_id"):
            end = ids.index(before) if before in ids else 0
            start = max(0, end - limit)
            page, has_more = models[start:end], start > 0
        else:
            page, has_more = models[:limit], limit < len(ids)
        return Reply(body={"data": page, "has_more": has_more,
                           "first_id": page[0]["id"] if page else None,
                           "last_id": page[-1]["id"] if page else None})

    def route_model(self, call: Call) -> Reply:
        wanted = call.req.path[len("/v1/models/"):]
        for i, entry in enumerate(self.model_entries()):
            if entry["id"] == wanted:
                return Reply(body=self.model_obj(entry, i))
        return self.error(404, f"model: {wanted}")

    # ------------------------------------------------------------ messages
    def route_count_tokens(self, call: Call) -> Reply:
        for required in ("model", "messages"):
            if required not in call.body:
                return self.error(400, f"{required}: Field required")
        if bad := self.check_model(call):
            return bad
        return Reply(body={"input_tokens": self.usage_for(call, "").prompt_tokens})

    def route_chat(self, call: Call) -> Reply:
        body = call.body
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                return self.error(400, f"{required}: Field required")
        if bad := self.check_model(call):
            return bad
        tool = self.tool_call_for(call)
        if tool:
            tool = (tool[0] or self.new_id("toolu_"), tool[1], tool[2])
        text = "" if tool else self.reply_text(call)
        usage = self.usage_for(call, json.dumps(tool[2]) if tool else text)
        message: dict[str, Any] = {"model": body["model"], "id": self.new_id("msg_"),
                                   "type": "message", "role": "assistant"}
        thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
        if body.get("stream"):
            return self.stream(self._frames(call, message, text, tool, usage, thinking))
        block = ({"type": "tool_use", "id": tool[0], "name": tool[1], "input": tool[2]} if tool
                 else {"type": "text", "text": text})
        blocks = [block]
        if thinking:
            blocks.insert(0, {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE})
        result = {**message, "content": blocks, "stop_reason": "tool_use" if tool else "end_turn",
                  "stop_sequence": None}
        if not call.fault("no_usage"):
            result["usage"] = self.usage_obj(usage, usage.completion_tokens)
        return Reply(body=result)

    def _frames(self, call: Call, message: dict[str, Any], text: str,
                tool: tuple[str, str, dict[str, Any]] | None, usage: Usage, thinking: bool) -> Iterator[bytes]:
        with_usage = not call.fault("no_usage")
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        if with_usage:
            start["usage"] = self.usage_obj(usage, 1)
        yield self.event({"type": "message_start", "message": start})
        index = 0
        if thinking:
            yield self.event({"type": "content_block_start", "index": 0,
                              "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            yield self.event({"type": "content_block_delta", "index": 0,
                              "delta": {"type": "thinking_delta", "thinking": THINKING}})
            yield self.event({"type": "content_block_delta", "index": 0,
                              "delta": {"type": "signature_delta", "signature": SIGNATURE}})
            yield self.event({"type": "content_block_stop", "index": 0})
            index = 1
        if tool:
            block = {"type": "tool_use", "id": tool[0], "name": tool[1], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in split_even(json.dumps(tool[2]), 3)]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in self.text_chunks(call, text)]
        yield self.event({"type": "content_block_start", "index": index, "content_block": block})
        yield self.event({"type": "ping"})
        for delta in deltas:
            yield self.event({"type": "content_block_delta", "index": index, "delta": delta})
        yield self.event({"type": "content_block_stop", "index": index})
        final: dict[str, Any] = {"type": "message_delta", "delta": {
            "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None}}
        if with_usage:
            final["usage"] = {"input_tokens": usage.prompt_tokens,
                              "cache_creation_input_tokens": usage.cache_creation_tokens,
                              "cache_read_input_tokens": usage.cached_tokens,
                              "output_tokens": usage.completion_tokens}
        yield self.event(final)
        yield self.event({"type": "message_stop"})
