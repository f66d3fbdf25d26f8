"""Fake OpenAI (and OpenAI-compatible) and OpenRouter servers.

`FakeOpenAI` serves ``GET /v1/models[/{id}]``, ``POST /v1/chat/completions`` (JSON, or data-only SSE
ending ``data: [DONE]`` with the extra ``choices: []`` usage chunk when
``stream_options.include_usage`` is true), ``POST /v1/responses`` (a ``response`` object, or named
Responses SSE events from ``response.created`` to ``response.completed`` with ``sequence_number``s,
no ``[DONE]``; a mid-stream fault is an ``error`` event) and ``POST /v1/embeddings``; errors use the
``{"error": {"message", "type", "param", "code"}}`` envelope.

Model dicts are merged over the defaults, so a catalog can carry a service's extra fields
(``context_window``, ``max_model_len``, ``pricing`` …); ``bare_model_list = True`` answers the
listing as a bare array (Together).

`FakeOpenRouter` is the same shape under ``/api/v1`` plus OpenRouter's differences: ``gen-`` ids,
``provider`` and ``native_finish_reason`` fields, ``: OPENROUTER PROCESSING`` SSE comments, usage
(with ``cost``) always sent in streams, ``{"error": {"code": <int>, "message"}}`` errors, a public
rich model catalog (``pricing`` per-token strings, ``context_length``, ``architecture``,
``supported_parameters``) with optional ``offset``/``limit`` paging, and prompt caching as OpenRouter
reports it (``usage_obj``: a Claude or Gemini model's cache counts only when a content part carries a
``cache_control`` marker; ``cost`` priced with the cache read and write prices).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import struct
from collections.abc import Iterator
from typing import Any, ClassVar

from .base import CREATED, Call, FakeServer, Fault, Reply, Usage, embedding_vector, split_even

_RATE_LIMIT = (
    "Rate limit reached for {model} in organization org-fake on tokens per min (TPM): Limit 30000, "
    "Used 29937, Requested 385. Please try again in 644ms. Visit "
    "https://platform.openai.com/account/rate-limits to learn more."
)
# status -> (type, code, default message)
OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-...fake. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", None, "You are not allowed to access this resource."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: ("tokens", "rate_limit_exceeded", _RATE_LIMIT),
    500: (
        "server_error",
        None,
        "The server had an error processing your request. Sorry about that! You can retry your "
        "request, or contact us through our help center at help.openai.com if you keep seeing "
        "this error.",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}
CONTEXT_WINDOW_MESSAGE = ("This model's maximum context length is 128000 tokens. However, your messages resulted "
                          "in 200000 tokens. Please reduce the length of the messages.")
CONTENT_POLICY_MESSAGE = ("Your request was rejected as a result of our safety system. Your prompt may contain text "
                          "that is not allowed by our safety system.")
OPENAI_VARIANTS: dict[str, tuple[str, str | None, str]] = {
    "insufficient_quota": (
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "requests": ("requests", "rate_limit_exceeded", _RATE_LIMIT.replace("tokens per min (TPM)",
                                                                       "requests per min (RPM)")),
}


class FakeOpenAI(FakeServer):
    """OpenAI Chat Completions / Embeddings / Models. ``base_url`` ends with ``/v1``."""

    protocol = "openai"
    base_path = "/v1"
    default_models: ClassVar[list[str]] = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
    model_prefix = "fake-gpt"
    routes: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/v1/models"): "models",
        ("POST", "/v1/chat/completions"): "chat",
        ("POST", "/v1/responses"): "responses",
        ("POST", "/v1/embeddings"): "embeddings",
    }
    prefix_routes = (("GET", "/v1/models/", "model"),)
    id_prefix: ClassVar[str] = "chatcmpl-"
    # Together answers GET /models with a bare JSON array instead of {"object": "list", "data": [...]}.
    bare_model_list: bool = False

    # ------------------------------------------------------------ protocol hooks
    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": self.new_id("req_")}

    def check_auth(self, call: Call) -> Reply | None:
        if self.api_key is None:
            return None
        auth = call.req.headers.get("authorization", "")
        if auth == f"Bearer {self.api_key}":
            return None
        if not auth:
            return self.error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        return self.error(401)

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        fallback = ("server_error" if status >= 500 else "invalid_request_error", None,
                    f"HTTP {status}")
        type_, code, default = OPENAI_ERRORS.get(status, fallback)
        if variant:
            type_, code, default = OPENAI_VARIANTS.get(variant, (variant, variant, default))
        text = message or default.format(model=model or "unknown")
        return Reply(status, {"error": {"message": text, "type": type_, "param": None,
                                        "code": code}})

    def stream_error_frame(self, fault: Fault) -> bytes:
        err = self.error(fault.status, fault.message, variant=fault.variant).body
        return self.sse(err)

    def context_window_reply(self, call: Call, fault: Fault) -> Reply:
        """400 ``context_length_exceeded``; ``variant="vllm"``: a vLLM-style server's flat
        ``{"object": "error", "message": "This model's maximum context length …", "code": 400}``."""
        text = fault.message or CONTEXT_WINDOW_MESSAGE
        if fault.variant == "vllm":
            return Reply(400, {"object": "error", "message": text, "type": "BadRequestError", "param": None,
                               "code": 400})
        return Reply(400, {"error": {"message": text, "type": "invalid_request_error", "param": "messages",
                                     "code": "context_length_exceeded"}})

    def content_policy_reply(self, call: Call, fault: Fault) -> Reply:
        """400 ``content_policy_violation`` (OpenAI's safety system)."""
        return Reply(400, {"error": {"message": fault.message or CONTENT_POLICY_MESSAGE,
                                     "type": "invalid_request_error", "param": None,
                                     "code": "content_policy_violation"}})

    def stream_error_frame_for(self, call: Call, fault: Fault) -> bytes:
        if call.route != "responses":
            return self.stream_error_frame(fault)
        err = self.error(fault.status, fault.message, variant=fault.variant).body["error"]
        return self.named_sse("error", {"type": "error", "code": err["code"] or err["type"],
                                        "message": err["message"], "param": None, "sequence_number": 99})

    @staticmethod
    def named_sse(name: str, obj: Any) -> bytes:
        return (b"event: " + name.encode() + b"\ndata: " + json.dumps(obj, separators=(",", ":")).encode()
                + b"\n\n")

    @staticmethod
    def sse(obj: Any) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    # Hooks overridden by OpenRouter.
    def stream_preamble(self) -> list[bytes]:
        return []

    def include_usage(self, call: Call) -> bool:
        return bool((call.body.get("stream_options") or {}).get("include_usage"))

    def envelope(self, call: Call, ident: str, obj: str) -> dict[str, Any]:
        return {"id": ident, "object": obj, "created": CREATED,
                "model": call.body.get("model"), "system_fingerprint": "fp_fake"}

    def choice(self, finish: str | None, **fields: Any) -> dict[str, Any]:
        return {"index": 0, **fields, "logprobs": None, "finish_reason": finish}

    def usage_obj(self, call: Call, u: Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": u.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def model_obj(self, entry: dict[str, Any], index: int) -> dict[str, Any]:
        return {"id": entry["id"], "object": "model", "created": CREATED - index,
                "owned_by": "openai", **entry}

    # ------------------------------------------------------------ routes
    def route_models(self, call: Call) -> Reply:
        models = [self.model_obj(e, i) for i, e in enumerate(self.model_entries())]
        return Reply(body=models if self.bare_model_list else {"object": "list", "data": models})

    def route_model(self, call: Call) -> Reply:
        wanted = call.req.path[len(self.prefix_routes[0][1]):]
        for i, entry in enumerate(self.model_entries()):
            if entry["id"] == wanted:
                return Reply(body=self.model_obj(entry, i))
        return self.model_not_found(wanted)

    def route_chat(self, call: Call) -> Reply:
        body = call.body
        if not body.get("model"):
            return self.error(400, "you must provide a model parameter")
        if not isinstance(body.get("messages"), list):
            return self.error(400, "'messages' is a required property")
        if bad := self.check_model(call):
            return bad
        tool = self.tool_call_for(call)
        if tool:
            tool = (tool[0] or self.new_id("call_"), tool[1], tool[2])
        text = "" if tool else self.reply_text(call)
        usage = self.usage_for(call, json.dumps(tool[2]) if tool else text)
        base = self.envelope(call, self.new_id(self.id_prefix), "chat.completion")
        if body.get("stream"):
            base["object"] = "chat.completion.chunk"
            return self.stream(self._chat_frames(call, base, text, tool, usage))
        message: dict[str, Any] = {"role": "assistant", "content": text or None,
                                   "refusal": None, "annotations": []}
        if tool:
            message["tool_calls"] = [{"id": tool[0], "type": "function", "function": {
                "name": tool[1], "arguments": json.dumps(tool[2])}}]
        result = {**base, "choices": [self.choice("tool_calls" if tool else "stop",
                                                  message=message)]}
        if not call.fault("no_usage"):
            result["usage"] = self.usage_obj(call, usage)
        result["service_tier"] = "default"
        return Reply(body=result)

    def _chat_frames(self, call: Call, base: dict[str, Any], text: str,
                     tool: tuple[str, str, dict[str, Any]] | None, usage: Usage) -> Iterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return self.sse({**base, "choices": [self.choice(finish, delta=delta)]})

        yield from self.stream_preamble()
        if tool:
            call_id, name, args = tool
            yield chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": call_id, "type": "function",
                 "function": {"name": name, "arguments": ""}}]})
            for piece in split_even(json.dumps(args), 3):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        else:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            for piece in self.text_chunks(call, text):
                yield chunk({"content": piece})
        yield chunk({}, "tool_calls" if tool else "stop")
        if self.include_usage(call) and not call.fault("no_usage"):
            yield self.sse({**base, "choices": [], "usage": self.usage_obj(call, usage)})
        yield b"data: [DONE]\n\n"

    def route_responses(self, call: Call) -> Reply:
        """The Responses API: a message (or a function call when tools are offered and a
        ``tool_call`` is configured), usage in Responses names."""
        body = call.body
        if not body.get("model"):
            return self.error(400, "Missing required parameter: 'model'.")
        if body.get("input") in (None, "", []) and not body.get("previous_response_id"):
            return self.error(400, "Missing required parameter: 'input'.")
        if bad := self.check_model(call):
            return bad
        tool = self.tool_call_for(call)
        text = "" if tool else self.reply_text(call)
        usage = self.usage_for(call, json.dumps(tool[2]) if tool else text)
        resp_id = self.new_id("resp_")
        response: dict[str, Any] = {
            "id": resp_id, "object": "response", "created_at": CREATED, "status": "in_progress",
            "background": False, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"], "output": [], "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"), "reasoning": body.get("reasoning"),
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": None, "metadata": body.get("metadata") or {},
        }
        if tool:
            item = {"type": "function_call", "id": self.new_id("fc_"), "call_id": tool[0] or self.new_id("call_"),
                    "name": tool[1], "arguments": json.dumps(tool[2]), "status": "completed"}
        else:
            item = {"type": "message", "id": self.new_id("msg_"), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
        wire_usage = None if call.fault("no_usage") else {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens,
                                     "cache_write_tokens": usage.cache_creation_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens,
        }
        if body.get("stream"):
            return self.stream(self._responses_frames(call, response, item, wire_usage))
        return Reply(body={**response, "status": "completed", "completed_at": CREATED + 1, "output": [item],
                           "usage": wire_usage})

    def _responses_frames(self, call: Call, response: dict[str, Any], item: dict[str, Any],
                          usage: dict[str, Any] | None) -> Iterator[bytes]:
        seq = itertools.count()

        def ev(name: str, **fields: Any) -> bytes:
            return self.named_sse(name, {"type": name, "sequence_number": next(seq), **fields})

        yield ev("response.created", response=response)
        yield ev("response.in_progress", response=response)
        where = {"item_id": item["id"], "output_index": 0}
        if item["type"] == "function_call":
            yield ev("response.output_item.added", output_index=0,
                     item={**item, "arguments": "", "status": "in_progress"})
            for piece in split_even(item["arguments"], 3):
                yield ev("response.function_call_arguments.delta", **where, delta=piece)
            yield ev("response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"])
        else:
            text = item["content"][0]["text"]
            yield ev("response.output_item.added", output_index=0,
                     item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield ev("response.content_part.added", **where, content_index=0, part=part)
            for piece in self.text_chunks(call, text):
                yield ev("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
            yield ev("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            yield ev("response.content_part.done", **where, content_index=0, part={**part, "text": text})
        yield ev("response.output_item.done", output_index=0, item=item)
        yield ev("response.completed", response={**response, "status": "completed", "completed_at": CREATED + 1,
                                                 "output": [item], "usage": usage})

    def route_embeddings(self, call: Call) -> Reply:
        body = call.body
        raw = body.get("input")
        if not body.get("model") or raw in (None, "", []):
            return self.error(400, "'input' and 'model' are required")
        if bad := self.check_model(call):
            return bad
        items = [raw] if isinstance(raw, str) else list(raw)
        dim = int(body.get("dimensions") or self.embedding_dim)
        data = []
        for i, item in enumerate(items):
            vec = embedding_vector(json.dumps(item), dim)
            if body.get("encoding_format") == "base64":
                data.append({"object": "embedding", "index": i, "embedding":
                             base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()})
            else:
                data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = self.usage_for(call, "").prompt_tokens
        result: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if not call.fault("no_usage"):
            result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return Reply(body=result)


OPENROUTER_MESSAGES = {
    400: "Invalid request parameters",
    401: "Missing Authentication header",
    402: "Insufficient credits. Add more using https://openrouter.ai/credits",
    403: "Forbidden",
    404: "Resource not found",
    408: "Request timeout",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "Service temporarily unavailable",
}
DEFAULT_PRICING = {"prompt": "0.000001", "completion": "0.000002", "request": "0", "image": "0"}


class FakeOpenRouter(FakeOpenAI):
    """OpenRouter: OpenAI shape plus its differences. ``base_url`` ends with ``/api/v1``."""

    protocol = "openrouter"
    base_path = "/api/v1"
    default_models: ClassVar[list[str]] = [
        "openai/gpt-4o", "anthropic/claude-sonnet-4.5", "meta-llama/llama-3.1-8b-instruct"]
    model_prefix = "fake/model"
    routes: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/api/v1/models"): "models",
        ("POST", "/api/v1/chat/completions"): "chat",
        ("POST", "/api/v1/embeddings"): "embeddings",
    }
    prefix_routes = (("GET", "/api/v1/model/", "model"),)
    id_prefix = "gen-"
    retry_after_statuses = (429, 503)
    provider_name: ClassVar[str] = "FakeProvider"

    def response_headers(self) -> dict[str, str]:
        return {}

    def check_auth(self, call: Call) -> Reply | None:
        if call.route in ("models", "model") or self.api_key is None:
            return None  # the catalog is public
        auth = call.req.headers.get("authorization", "")
        if auth == f"Bearer {self.api_key}":
            return None
        return self.error(401, None if not auth else "User not found.")

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        default = OPENROUTER_MESSAGES.get(status, f"HTTP {status}")
        err: dict[str, Any] = {"code": status, "message": message or default}
        if variant:
            err["metadata"] = {"error_type": variant}
        return Reply(status, {"error": err})

    def model_not_found(self, model: str) -> Reply:
        return self.error(400, f"{model} is not a valid model ID")

    def context_window_reply(self, call: Call, fault: Fault) -> Reply:
        return self.error(400, fault.message or "This endpoint's maximum context length is 128000 tokens. However, "
                          "you requested about 200000 tokens (200000 of text input). Please reduce the length of "
                          "either one, or use the \"middle-out\" transform to compress your prompt automatically.")

    def content_policy_reply(self, call: Call, fault: Fault) -> Reply:
        """403: the moderation of a moderated model flagged the input."""
        reply = self.error(403, fault.message or "openai/gpt-4o requires moderation on OpenRouter. Your input was "
                                                 "flagged for \"violence\".")
        reply.body["error"]["metadata"] = {"reasons": ["violence"], "flagged_input": "…",
                                           "provider_name": self.provider_name, "model_slug": "openai/gpt-4o"}
        return reply

    def stream_error_frame(self, fault: Fault) -> bytes:
        err = self.error(fault.status, fault.message,
                         variant=fault.variant or "server").body["error"]
        return self.sse({"id": "gen-error", "object": "chat.completion.chunk", "created": CREATED,
                         "provider": self.provider_name, "error": err,
                         "choices": [{"index": 0, "delta": {"content": ""},
                                      "finish_reason": "error"}]})

    def stream_preamble(self) -> list[bytes]:
        return [b": OPENROUTER PROCESSING\n\n"]

    def include_usage(self, call: Call) -> bool:
        return True  # always sent; stream_options / usage.include are deprecated no-ops

    def envelope(self, call: Call, ident: str, obj: str) -> dict[str, Any]:
        return {"id": ident, "provider": self.provider_name, "model": call.body.get("model"),
                "object": obj, "created": CREATED}

    def choice(self, finish: str | None, **fields: Any) -> dict[str, Any]:
        return {**super().choice(finish, **fields), "native_finish_reason": finish}

    @staticmethod
    def marked_parts(body: dict[str, Any]) -> bool:
        """Whether a request carries a ``cache_control`` marker where OpenRouter reads one: on a
        content part (a marker on a whole message is ignored)."""
        return any(isinstance(part, dict) and "cache_control" in part
                   for m in body.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("content"), list)
                   for part in m["content"])

    def usage_obj(self, call: Call, u: Usage) -> dict[str, Any]:
        """The usage, as OpenRouter reports it: ``prompt_tokens`` holds the cache reads and writes.
        A Claude or Gemini model caches only what a content part's ``cache_control`` marks, so
        without one the configured cache counts are reported as zero. ``cost`` from the model's
        pricing (cache reads at ``input_cache_read``, writes at ``input_cache_write``, else the
        prompt price) unless configured."""
        model = str(call.body.get("model", ""))
        if model.startswith(("anthropic/", "google/")) and not self.marked_parts(call.body):
            u = dataclasses.replace(u, cached_tokens=0, cache_creation_tokens=0)
        cost = u.cost
        if cost is None:
            pricing = self._pricing(model)
            read = float(pricing.get("input_cache_read", pricing["prompt"]))
            write = float(pricing.get("input_cache_write", pricing["prompt"]))
            cost = round((u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens) * float(pricing["prompt"])
                         + u.cached_tokens * read + u.cache_creation_tokens * write
                         + u.completion_tokens * float(pricing["completion"]), 12)
        return {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens,
                                      "cache_write_tokens": u.cache_creation_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "cost": cost,
            "is_byok": False,
        }

    def _pricing(self, model: str) -> dict[str, str]:
        for i, entry in enumerate(self.model_entries()):
            if entry["id"] == model:
                return self.model_obj(entry, i)["pricing"]
        return DEFAULT_PRICING

    def model_obj(self, entry: dict[str, Any], index: int) -> dict[str, Any]:
        """A full OpenRouter model object; nested dicts of ``entry`` are merged over defaults."""
        mid = entry["id"]
        obj: dict[str, Any] = {
            "id": mid,
            "canonical_slug": mid,
            "name": mid.split("/")[-1].replace("-", " ").title(),
            "created": CREATED - index,
            "description": f"Fake model {mid}.",
            "context_length": 128000,
            "architecture": {"modality": "text->text", "input_modalities": ["text"],
                             "output_modalities": ["text"], "tokenizer": "Other",
                             "instruct_type": None},
            "pricing": dict(DEFAULT_PRICING),
            "top_provider": {"context_length": 128000, "max_completion_tokens": 16384,
                             "is_moderated": False},
            "per_request_limits": None,
            "supported_parameters": ["max_tokens", "temperature", "top_p", "tools",
                                     "tool_choice", "stream"],
            "default_parameters": None,
            "supported_voices": None,
            "expiration_date": None,
            "knowledge_cutoff": None,
            "links": {"details": f"/api/v1/models/{mid}/endpoints"},
        }
        for key, value in entry.items():
            obj[key] = {**obj[key], **value} if isinstance(obj.get(key), dict) else value
        return obj

    def route_models(self, call: Call) -> Reply:
        query = call.req.query
        models = [self.model_obj(e, i) for i, e in enumerate(self.model_entries())]
        if wanted := query.get("supported_parameters"):
            models = [m for m in models if wanted in (m.get("supported_parameters") or [])]
        total, nxt = len(models), None
        if "offset" in query or "limit" in query:
            offset = max(0, int(query.get("offset") or 0))
            limit = min(1000, max(1, int(query.get("limit") or 500)))
            models = models[offset : offset + limit]
            if offset + limit < total:
                nxt = f"/api/v1/models?offset={offset + limit}&limit={limit}"
        return Reply(body={"data": models, "total_count": total, "links": {"next": nxt}})

    def route_model(self, call: Call) -> Reply:
        wanted = call.req.path[len(self.prefix_routes[0][1]):]
        for i, entry in enumerate(self.model_entries()):
            if entry["id"] == wanted:
                return Reply(body={"data": self.model_obj(entry, i)})
        return self.error(404)
