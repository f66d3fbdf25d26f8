"""Fake Ollama native API server.

Serves ``GET /`` ("Ollama is running"), ``GET /api/version``, ``GET /api/tags``, ``POST /api/chat``
(NDJSON stream by default, one JSON object with ``"stream": false``; the final object has
``done: true``, ``done_reason``, ``prompt_eval_count``, ``eval_count`` and nanosecond durations),
``POST /api/embed`` and legacy ``POST /api/embeddings``. Errors are ``{"error": "<text>"}``. No auth
unless ``api_key`` is given (then ``Authorization: Bearer <key>``, as ollama.com requires).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from .base import Call, FakeServer, Fault, Reply, Usage, embedding_vector

CREATED_AT = "2025-01-01T00:00:00.000000Z"
OLLAMA_MESSAGES = {
    400: "invalid request",
    401: "unauthorized",
    404: "model '{model}' not found",
    429: "too many requests",
    500: "an error was encountered while running the model",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


class FakeOllama(FakeServer):
    """Ollama native API. ``base_url`` is the server root."""

    protocol = "ollama"
    base_path = ""
    default_models: ClassVar[list[str]] = ["llama3.2:latest", "all-minilm:latest"]
    model_prefix = "fake-model"
    stream_content_type = "application/x-ndjson"
    retry_after_statuses = ()
    routes: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/"): "root",
        ("GET", "/api/version"): "version",
        ("GET", "/api/tags"): "models",
        ("POST", "/api/chat"): "chat",
        ("POST", "/api/embed"): "embed",
        ("POST", "/api/embeddings"): "embeddings",
    }

    def check_auth(self, call: Call) -> Reply | None:
        auth = call.req.headers.get("authorization")
        if self.api_key is None or auth == f"Bearer {self.api_key}":
            return None
        return self.error(401)

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        default = OLLAMA_MESSAGES.get(status, f"HTTP {status}")
        text = message or default.format(model=model or "unknown")
        return Reply(status, {"error": text})

    def model_not_found(self, model: str) -> Reply:
        return self.error(404, model=model)

    def normalize_model(self, model: str) -> str:
        return model if ":" in model else f"{model}:latest"

    def malformed_body(self) -> bytes:
        return b'{"model": "broken", "message": {"role": "assistant", "content": "trunc'

    def malformed_frame(self) -> bytes:
        return b'{"model":"broken","message":{"role":"assis\n'

    def stream_error_frame(self, fault: Fault) -> bytes:
        return self.line({"error": fault.message or OLLAMA_MESSAGES[500]})

    @staticmethod
    def line(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    @staticmethod
    def metrics(u: Usage) -> dict[str, int]:
        prompt_ns, eval_ns = u.prompt_tokens * 1_000_000, u.completion_tokens * 10_000_000
        load_ns = 1_000_000
        return {"total_duration": prompt_ns + eval_ns + load_ns, "load_duration": load_ns,
                "prompt_eval_count": u.prompt_tokens, "prompt_eval_duration": prompt_ns,
                "eval_count": u.completion_tokens, "eval_duration": eval_ns}

    # ------------------------------------------------------------ routes
    def route_root(self, call: Call) -> Reply:
        return Reply(body=b"Ollama is running", content_type="text/plain; charset=utf-8")

    def route_version(self, call: Call) -> Reply:
        return Reply(body={"version": "0.12.0"})

    def route_models(self, call: Call) -> Reply:
        models = []
        for i, entry in enumerate(self.model_entries()):
            family = entry["id"].split(":")[0].split("-")[0]
            models.append({
                "name": entry["id"], "model": entry["id"],
                "modified_at": f"2025-01-01T00:00:{i % 60:02d}.000000Z",
                "size": 2_019_393_189, "digest": f"{i:064x}",
                "details": {"parent_model": "", "format": "gguf", "family": family,
                            "families": [family], "parameter_size": "3.2B",
                            "quantization_level": "Q4_K_M"},
                **{k: v for k, v in entry.items() if k != "id"},
            })
        return Reply(body={"models": models})

    def route_chat(self, call: Call) -> Reply:
        body = call.body
        if not body.get("model"):
            return self.error(400, "model is required")
        if bad := self.check_model(call):
            return bad
        tool = self.tool_call_for(call)
        text = "" if tool else self.reply_text(call)
        usage = self.usage_for(call, json.dumps(tool[2]) if tool else text)
        head = {"model": body["model"], "created_at": CREATED_AT}
        final: dict[str, Any] = {**head, "message": {"role": "assistant", "content": ""},
                                 "done": True, "done_reason": "stop"}
        if not call.fault("no_usage"):
            final.update(self.metrics(usage))
        tool_calls = [{"function": {"name": tool[1], "arguments": tool[2]}}] if tool else None
        if body.get("stream", True):
            return self.stream(self._frames(call, head, text, tool_calls, final))
        final["message"] = {"role": "assistant", "content": text}
        if tool_calls:
            final["message"]["tool_calls"] = tool_calls
        return Reply(body=final)

    def _frames(self, call: Call, head: dict[str, Any], text: str,
                tool_calls: list[dict[str, Any]] | None, final: dict[str, Any]) -> Iterator[bytes]:
        if tool_calls:
            yield self.line({**head, "message": {"role": "assistant", "content": "",
                                                 "tool_calls": tool_calls}, "done": False})
        for piece in self.text_chunks(call, text) if text else []:
            yield self.line({**head, "message": {"role": "assistant", "content": piece},
                             "done": False})
        yield self.line(final)

    def route_embed(self, call: Call) -> Reply:
        body = call.body
        raw = body.get("input")
        if not body.get("model"):
            return self.error(400, "model is required")
        if bad := self.check_model(call):
            return bad
        items = [raw] if isinstance(raw, str) else list(raw or [])
        dim = int(body.get("dimensions") or self.embedding_dim)
        vectors = [embedding_vector(json.dumps(x), dim) for x in items]
        result: dict[str, Any] = {"model": body["model"], "embeddings": vectors,
                                  "total_duration": 14_143_917, "load_duration": 1_019_500}
        if not call.fault("no_usage"):
            result["prompt_eval_count"] = self.usage_for(call, "").prompt_tokens
        return Reply(body=result)

    def route_embeddings(self, call: Call) -> Reply:
        body = call.body
        if not body.get("model"):
            return self.error(400, "model is required")
        if bad := self.check_model(call):
            return bad
        vec = embedding_vector(json.dumps(body.get("prompt", "")), self.embedding_dim)
        return Reply(body={"embedding": vec})
