"""Shared bits for the adapter tests: deployments built by hand (no database), sending an
``UpstreamRequest`` to a loopback fake, and running a stream through a translator."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from providers.adapters.types import Deployment, UpstreamRequest

try:  # the OpenAI SDK's own models are the strictest check of "OpenAI-shaped"
    from openai.types import CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
except ImportError:  # pragma: no cover - optional dev dependency
    ChatCompletion = ChatCompletionChunk = CreateEmbeddingResponse = None


def make_deployment(
    provider_type: str = "openai",
    *,
    base_url: str = "http://upstream.invalid/v1",
    api_key: str = "sk-test-key-123456",
    model_id: str = "gpt-4o-mini",
    name: str | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
    mode: str = "chat",
) -> Deployment:
    return Deployment(
        provider_id=1,
        provider_name=name or provider_type,
        provider_type=provider_type,
        base_url=base_url,
        api_key=api_key,
        extra_headers=extra_headers,
        provider_model_id=1,
        model_id=model_id,
        timeout=10.0,
        max_retries=1,
        input_price=Decimal("1"),
        output_price=Decimal("2"),
        cached_input_price=None,
        mode=mode,
    )


def send(req: UpstreamRequest) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.request(req.method, req.url, headers=req.headers, content=req.body)


def run_stream(req: UpstreamRequest, translator: Any) -> list[bytes]:
    """Send ``req`` and feed the raw response bytes, as they arrive, through ``translator``."""
    out: list[bytes] = []
    with httpx.Client(timeout=10) as client:
        with client.stream(req.method, req.url, headers=req.headers, content=req.body) as resp:
            assert resp.status_code == 200, resp.read()
            for raw in resp.iter_raw():
                out += translator.feed(raw)
    out += translator.finish()
    return out


def feed_all(translator: Any, data: bytes, step: int | None = None) -> list[bytes]:
    """Feed ``data`` in pieces of ``step`` bytes (all at once when None), then finish."""
    out: list[bytes] = []
    if step is None:
        out += translator.feed(data)
    else:
        for i in range(0, len(data), step):
            out += translator.feed(data[i : i + step])
    out += translator.finish()
    return out


def chunks_of(events: list[bytes]) -> list[dict[str, Any]]:
    """The JSON of each emitted SSE event, checking the framing (and the OpenAI chunk model)."""
    result = []
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n"), event
        payload = event[len(b"data: ") : -2]
        assert b"\n" not in payload
        assert payload != b"[DONE]"
        obj = json.loads(payload)
        assert obj["object"] == "chat.completion.chunk"
        assert {"id", "created", "model", "choices"} <= obj.keys()
        assert "usage" not in obj or obj["usage"] is None
        if ChatCompletionChunk is not None:
            ChatCompletionChunk.model_validate_json(payload)
        result.append(obj)
    return result


def stream_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def stream_tool_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Tool calls reassembled from chunk deltas: index -> {id, name, arguments}."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                if call.get("id"):
                    entry["id"] = call["id"]
                function = call.get("function") or {}
                if function.get("name"):
                    entry["name"] = function["name"]
                entry["arguments"] += function.get("arguments") or ""
    return calls


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]


def validate_completion(body: bytes) -> dict[str, Any]:
    if ChatCompletion is not None:
        ChatCompletion.model_validate_json(body)
    return json.loads(body)


def validate_embeddings(body: bytes) -> dict[str, Any]:
    if CreateEmbeddingResponse is not None:
        CreateEmbeddingResponse.model_validate_json(body)
    return json.loads(body)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
