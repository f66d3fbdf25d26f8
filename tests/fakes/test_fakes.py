"""Tests for the loopback fake LLM providers in ``tests.fakes`` (no Django, no database).

Run: ``DEBUG=true .venv/bin/python -m pytest tests/test_fakes.py -q -p no:django``
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.fakes import FakeAnthropic, FakeGemini, FakeOllama, FakeOpenAI, FakeOpenRouter, make_models

pytestmark: list[Any] = []

MSGS = [{"role": "user", "content": "Hello there fake"}]
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-test") as fake:
        yield fake


@pytest.fixture
def oa(openai: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=openai.base_url, headers={"authorization": "Bearer sk-test"},
                      timeout=5) as client:
        yield client


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key="sk-ant-test") as fake:
        yield fake


@pytest.fixture
def an(anthropic: FakeAnthropic) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=anthropic.base_url, headers=ANTHROPIC_HEADERS, timeout=5) as c:
        yield c


def sse_data(resp: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an SSE response (comments and event names dropped)."""
    return [line[len("data: "):] for line in resp.iter_lines() if line.startswith("data: ")]


def openai_stream(client: httpx.Client, path: str = "/chat/completions",
                  **extra: Any) -> list[dict[str, Any]]:
    body = {"model": "gpt-4o", "messages": MSGS, "stream": True, **extra}
    with client.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        data = sse_data(resp)
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


# --------------------------------------------------------------------------- OpenAI
def test_openai_chat_non_stream_records_request(openai: FakeOpenAI, oa: httpx.Client) -> None:
    assert openai.base_url.endswith("/v1") and openai.url.startswith("http://127.0.0.1:")
    resp = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS},
                   headers={"OpenAI-Organization": "org-1"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o"
    assert body["choices"][0]["message"]["content"] == openai.reply
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {**body["usage"], "prompt_tokens": 3, "completion_tokens": 9,
                             "total_tokens": 12}
    assert resp.headers["x-request-id"]
    req = openai.last_request
    assert req is not None and req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.headers["openai-organization"] == "org-1"
    assert req.body["messages"] == MSGS
    assert openai.requests_to("/chat/completions") == [req]


def test_openai_stream_with_usage_details(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.usage = {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 40,
                    "reasoning_tokens": 7}
    chunks = openai_stream(oa, stream_options={"include_usage": True})
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "".join(content) == openai.reply and sum(1 for c in content if c) >= 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    counts = (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
    assert counts == (100, 20, 120)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 40
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 7


def test_openai_stream_without_include_usage(oa: httpx.Client) -> None:
    chunks = openai_stream(oa)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_tool_calls(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.tool_call = {"arguments": {"city": "Tokyo"}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS,
                                              "tools": tools}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Tokyo"}

    chunks = openai_stream(oa, tools=tools)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d)
    assert json.loads(args) == {"city": "Tokyo"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # Without tools in the request, the fake answers with text.
    plain = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS}).json()
    assert plain["choices"][0]["message"]["content"] == openai.reply


def test_openai_embeddings_and_models(openai: FakeOpenAI, oa: httpx.Client) -> None:
    body = oa.post("/embeddings", json={"model": "text-embedding-3-small",
                                        "input": ["a b", "c"], "dimensions": 4}).json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) == 4 and body["usage"]["prompt_tokens"] == 3
    b64 = oa.post("/embeddings", json={"model": "m", "input": "a b", "dimensions": 4,
                                       "encoding_format": "base64"}).json()
    floats = struct.unpack("<4f", base64.b64decode(b64["data"][0]["embedding"]))
    assert floats == pytest.approx(body["data"][0]["embedding"], abs=1e-6)

    assert [m["id"] for m in oa.get("/models").json()["data"]] == openai.models
    assert oa.get("/models/gpt-4o").json()["id"] == "gpt-4o"
    assert oa.get("/models/nope").json()["error"]["code"] == "model_not_found"
    openai.models = make_models(500)
    data = oa.get("/models").json()["data"]
    assert len(data) == 500 and data[0]["id"] == "fake-model-0001"


def test_openai_auth_failures(openai: FakeOpenAI) -> None:
    with httpx.Client(base_url=openai.base_url) as client:
        wrong = client.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS},
                            headers={"authorization": "Bearer sk-wrong"})
        missing = client.get("/models")
    assert wrong.status_code == 401 and missing.status_code == 401
    err = wrong.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == "invalid_api_key"
    assert "API key" in missing.json()["error"]["message"]


def test_openai_strict_models_and_bad_requests(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.strict_models = True
    resp = oa.post("/chat/completions", json={"model": "gpt-5", "messages": MSGS})
    assert resp.status_code == 404 and "`gpt-5`" in resp.json()["error"]["message"]
    assert oa.post("/chat/completions", json={"messages": MSGS}).status_code == 400
    assert oa.post("/chat/completions", content=b"not json").status_code == 400
    assert oa.get("/nothing-here").status_code == 404


# --------------------------------------------------------------------------- Anthropic
def test_openai_responses_with_the_official_sdk(openai: FakeOpenAI) -> None:
    """The fake's /v1/responses as the openai SDK reads it: an answer, a stream, a tool call
    and a mid-stream error event."""
    from openai import OpenAI

    openai.usage = {"input_tokens": 30, "output_tokens": 7, "cached_tokens": 10, "reasoning_tokens": 2}
    client = OpenAI(base_url=openai.base_url, api_key="sk-test", max_retries=0)
    resp = client.responses.create(model="gpt-4o", input="Hello there", instructions="terse")
    assert resp.output_text == openai.reply and resp.status == "completed"
    assert (resp.usage.input_tokens, resp.usage.input_tokens_details.cached_tokens,
            resp.usage.output_tokens_details.reasoning_tokens) == (30, 10, 2)
    with client.responses.stream(model="gpt-4o", input="Hello there") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") >= 3 and final.output_text == openai.reply
    openai.tool_call = {"arguments": {"city": "Tokyo"}}
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    call = client.responses.create(model="gpt-4o", input="weather?", tools=tools).output[0]
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Tokyo"})
    openai.tool_call = None
    openai.set_fault("stream_error", status=500, after_chunks=3, times=1)
    with client.responses.stream(model="gpt-4o", input="Hello there") as stream:
        events = []
        try:
            for event in stream:
                events.append(event.type)
        except Exception as exc:  # the SDK raises on an error event inside a stream
            events.append(type(exc).__name__)
    assert events[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert events[3:] in (["error"], ["APIError"]), events


def test_anthropic_auth_and_version_required(anthropic: FakeAnthropic) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": MSGS}
    with httpx.Client(base_url=anthropic.base_url) as client:
        no_key = client.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
        bad_key = client.post("/v1/messages", json=body,
                              headers={"x-api-key": "wrong", "anthropic-version": "2023-06-01"})
        no_version = client.post("/v1/messages", json=body, headers={"x-api-key": "sk-ant-test"})
    assert no_key.status_code == bad_key.status_code == 401
    assert bad_key.json()["type"] == "error"
    assert bad_key.json()["error"] == {"type": "authentication_error",
                                       "message": "invalid x-api-key"}
    assert bad_key.json()["request_id"].startswith("req_")
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_message_non_stream(anthropic: FakeAnthropic, an: httpx.Client) -> None:
    anthropic.usage = {"input_tokens": 50, "output_tokens": 9, "cache_read_input_tokens": 30,
                       "cache_creation_input_tokens": 5}
    resp = an.post("/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 64,
                                         "system": "be nice", "messages": MSGS})
    assert resp.status_code == 200 and resp.headers["request-id"]
    body = resp.json()
    assert body["type"] == "message" and body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "text", "text": anthropic.reply}]
    usage = body["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (50, 9)
    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (30, 5)
    assert anthropic.requests[-1].headers["anthropic-version"] == "2023-06-01"
    missing = an.post("/v1/messages", json={"model": "claude-sonnet-4-5", "messages": MSGS})
    assert missing.status_code == 400 and "max_tokens" in missing.json()["error"]["message"]


def anthropic_events(client: httpx.Client, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": MSGS, "stream": True,
            **extra}
    events, name = [], ""
    with client.stream("POST", "/v1/messages", json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                assert data["type"] == name
                events.append((name, data))
    return events


def test_anthropic_stream(anthropic: FakeAnthropic, an: httpx.Client) -> None:
    anthropic.usage = {"cached_tokens": 12, "cache_creation_tokens": 3}
    events = anthropic_events(an)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1] == "content_block_start" and "ping" in names
    start_usage = events[0][1]["message"]["usage"]
    assert start_usage["cache_read_input_tokens"] == 12
    assert start_usage["cache_creation_input_tokens"] == 3
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == anthropic.reply and names.count("content_block_delta") >= 3
    assert events[-2][1]["usage"]["output_tokens"] == 9
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_anthropic_tool_use(anthropic: FakeAnthropic, an: httpx.Client) -> None:
    anthropic.tool_call = {"name": "lookup", "arguments": {"q": "x"}}
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    body = an.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": MSGS,
                                         "tools": tools}).json()
    assert body["stop_reason"] == "tool_use"
    assert body["content"][0] == {**body["content"][0], "type": "tool_use", "name": "lookup",
                                  "input": {"q": "x"}}
    events = anthropic_events(an, tools=tools)
    assert events[1][1]["content_block"]["type"] == "tool_use"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"q": "x"}


def test_anthropic_count_tokens_one_hour_cache_tier_and_thinking(anthropic: FakeAnthropic,
                                                                an: httpx.Client) -> None:
    counted = an.post("/v1/messages/count_tokens", json={"model": "m", "messages": MSGS})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    anthropic.usage = {"input_tokens": 42}
    assert an.post("/v1/messages/count_tokens", json={"model": "m", "messages": MSGS}).json() == {"input_tokens": 42}
    assert an.post("/v1/messages/count_tokens", json={"model": "m"}).status_code == 400
    anthropic.usage = {"cache_creation_tokens": 10, "cache_creation_1h_tokens": 4}
    body = an.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": MSGS,
                                         "thinking": {"type": "enabled", "budget_tokens": 1024}}).json()
    assert body["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 6, "ephemeral_1h_input_tokens": 4}
    assert [b["type"] for b in body["content"]] == ["thinking", "text"] and body["content"][0]["signature"]
    events = anthropic_events(an, thinking={"type": "enabled", "budget_tokens": 1024})
    deltas = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert deltas[:2] == ["thinking_delta", "signature_delta"] and set(deltas[2:]) == {"text_delta"}
    assert events[1][1]["content_block"]["type"] == "thinking"
    assert {d["index"] for n, d in events if n == "content_block_delta"} == {0, 1}


def test_anthropic_models_paging(anthropic: FakeAnthropic, an: httpx.Client) -> None:
    anthropic.models = make_models(45, "claude-fake")
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 20, **({"after_id": after} if after else {})}
        page = an.get("/v1/models", params=params).json()
        pages += 1
        seen += [m["id"] for m in page["data"]]
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        assert page["data"][0]["type"] == "model" and page["data"][0]["created_at"].endswith("Z")
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert pages == 3 and seen == anthropic.models
    before = an.get("/v1/models", params={"before_id": "claude-fake-0030", "limit": 5}).json()
    assert [m["id"] for m in before["data"]] == [f"claude-fake-{i:04d}" for i in range(25, 30)]
    assert before["has_more"] is True
    assert len(an.get("/v1/models").json()["data"]) == 20  # default limit
    assert an.get("/v1/models/claude-fake-0007").json()["id"] == "claude-fake-0007"


# --------------------------------------------------------------------------- Ollama
def test_ollama_chat_stream_default_and_non_stream() -> None:
    with FakeOllama() as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        assert fake.base_url == fake.url
        assert client.get("/").text == "Ollama is running"
        with client.stream("POST", "/api/chat", json={"model": "llama3.2", "messages": MSGS}) as r:
            assert r.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert all(not x["done"] for x in lines[:-1]) and len(lines) >= 4
        assert "".join(x["message"]["content"] for x in lines) == fake.reply
        final = lines[-1]
        assert final["done"] is True and final["done_reason"] == "stop"
        assert (final["prompt_eval_count"], final["eval_count"]) == (3, 9)
        assert final["total_duration"] > 0 and "eval_count" not in lines[0]

        body = client.post("/api/chat", json={"model": "llama3.2", "messages": MSGS,
                                              "stream": False}).json()
        assert body["message"]["content"] == fake.reply and body["done"] is True

        fake.tool_call = {"arguments": {"city": "Tokyo"}}
        tools = [{"type": "function", "function": {"name": "get_weather"}}]
        body = client.post("/api/chat", json={"model": "llama3.2", "messages": MSGS,
                                              "stream": False, "tools": tools}).json()
        assert body["message"]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]


def test_ollama_tags_embed_errors() -> None:
    with FakeOllama(strict_models=True, models=500) as fake, \
            httpx.Client(base_url=fake.base_url) as client:
        tags = client.get("/api/tags").json()["models"]
        assert len(tags) == 500 and tags[0]["name"] == "fake-model-0001"
        assert set(tags[0]) >= {"name", "model", "modified_at", "size", "digest", "details"}
        emb = client.post("/api/embed", json={"model": "fake-model-0001:latest",
                                              "input": ["a", "b c"]}).json()
        assert len(emb["embeddings"]) == 2 and emb["prompt_eval_count"] == 3
        legacy = client.post("/api/embeddings", json={"model": "fake-model-0002", "prompt": "x"})
        assert len(legacy.json()["embedding"]) == fake.embedding_dim
        missing = client.post("/api/chat", json={"model": "llama3", "messages": MSGS})
        assert missing.status_code == 404
        assert missing.json() == {"error": "model 'llama3' not found"}
        no_model = client.post("/api/chat", json={"messages": MSGS})
        assert no_model.json() == {"error": "model is required"}
    with FakeOllama(api_key="ok") as fake, httpx.Client(base_url=fake.base_url) as client:
        assert client.get("/api/tags").status_code == 401
        assert client.get("/api/tags", headers={"authorization": "Bearer ok"}).status_code == 200


# --------------------------------------------------------------------------- OpenRouter
def test_openrouter_catalog_chat_and_stream() -> None:
    models = ["openai/gpt-4o", {"id": "acme/cheap", "pricing": {"prompt": "0.000001",
                                                                "completion": "0.000002"},
                                "context_length": 4096,
                                "architecture": {"input_modalities": ["text", "image"]}}]
    with FakeOpenRouter(api_key="sk-or-1", models=models) as fake, \
            httpx.Client(base_url=fake.base_url, timeout=5,
                         headers={"authorization": "Bearer sk-or-1",
                                  "HTTP-Referer": "https://t.example", "X-Title": "Tollgate"}
                         ) as client:
        assert fake.base_url.endswith("/api/v1")
        catalog = httpx.get(fake.base_url + "/models").json()  # public, no auth
        cheap = catalog["data"][1]
        assert cheap["context_length"] == 4096 and cheap["pricing"]["completion"] == "0.000002"
        assert cheap["architecture"]["input_modalities"] == ["text", "image"]
        assert cheap["architecture"]["modality"] == "text->text"
        assert "tools" in cheap["supported_parameters"] and catalog["total_count"] == 2
        page = client.get("/models", params={"offset": 1, "limit": 1}).json()
        assert [m["id"] for m in page["data"]] == ["acme/cheap"] and page["links"]["next"] is None

        body = client.post("/chat/completions",
                           json={"model": "acme/cheap", "messages": MSGS}).json()
        assert body["id"].startswith("gen-") and body["provider"]
        assert body["choices"][0]["native_finish_reason"] == "stop"
        assert body["usage"]["cost"] == pytest.approx(3 * 0.000001 + 9 * 0.000002)
        req = fake.last_request
        assert req is not None
        assert req.headers["http-referer"] == "https://t.example"
        assert req.headers["x-title"] == "Tollgate"

        with client.stream("POST", "/chat/completions",
                           json={"model": "acme/cheap", "messages": MSGS, "stream": True}) as r:
            lines = list(r.iter_lines())
        assert ": OPENROUTER PROCESSING" in lines
        data = [line[6:] for line in lines if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        usage_chunk = json.loads(data[-2])
        assert usage_chunk["choices"] == [] and usage_chunk["usage"]["cost"] > 0

        denied = httpx.post(fake.base_url + "/chat/completions",
                            json={"model": "x", "messages": MSGS})
        assert denied.status_code == 401
        assert denied.json() == {"error": {"code": 401, "message": "Missing Authentication header"}}


# --------------------------------------------------------------------------- faults
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Hello there fake"}]}]}


def test_gemini_auth_generate_stream_and_validation() -> None:
    with FakeGemini(api_key="AIza-test", usage={"prompt_tokens": 10, "completion_tokens": 4,
                                                 "cached_tokens": 3, "reasoning_tokens": 20}) as fake:
        url = fake.base_url + "/models/gemini-2.5-flash:generateContent"
        assert httpx.post(url, json=GEMINI_BODY).json()["error"]["status"] == "PERMISSION_DENIED"
        wrong = httpx.post(url, json=GEMINI_BODY, headers={"x-goog-api-key": "nope"})
        assert wrong.status_code == 400 and wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        headers = {"x-goog-api-key": "AIza-test"}
        answer = httpx.post(url, json=GEMINI_BODY, headers=headers).json()
        assert answer["candidates"][0]["content"]["parts"][0]["text"] == fake.reply
        assert answer["usageMetadata"] == {
            "promptTokenCount": 10, "candidatesTokenCount": 4, "cachedContentTokenCount": 3,
            "thoughtsTokenCount": 20, "totalTokenCount": 34,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10}]}
        assert httpx.post(url + "?key=AIza-test", json=GEMINI_BODY).status_code == 200
        for bad in ({"messages": []}, {"contents": []}, {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
                    {"contents": [{"role": "user", "parts": [{"text": "x", "inlineData": {}}]}]}):
            resp = httpx.post(url, json=bad, headers=headers)
            assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT", bad
        stream_url = fake.base_url + "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        with httpx.stream("POST", stream_url, json=GEMINI_BODY, headers=headers) as resp:
            events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
        assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == fake.reply
        assert [e["candidates"][0].get("finishReason") for e in events][-1] == "STOP"
        assert events[-1]["usageMetadata"]["thoughtsTokenCount"] == 20
        assert "candidatesTokenCount" not in events[0]["usageMetadata"]


def test_gemini_models_paging_and_429_retry_info() -> None:
    with FakeGemini(models=5) as fake:
        headers = {"x-goog-api-key": "k"}
        first = httpx.get(fake.base_url + "/models?pageSize=2", headers=headers).json()
        assert len(first["models"]) == 2 and first["nextPageToken"] == "2"
        last = httpx.get(fake.base_url + "/models?pageSize=2&pageToken=4", headers=headers).json()
        assert len(last["models"]) == 1 and "nextPageToken" not in last
        assert first["models"][0]["name"] == "models/gemini-fake-0001"
        fake.set_fault("status", status=429, retry_after=41, times=1)
        resp = httpx.post(fake.base_url + "/models/gemini-fake-0001:generateContent", json=GEMINI_BODY, headers=headers)
        error = resp.json()["error"]
        assert resp.status_code == 429 and "retry-after" not in resp.headers
        assert error["status"] == "RESOURCE_EXHAUSTED" and error["details"][-1]["retryDelay"] == "41s"


def test_fault_status_retry_after_and_times(openai: FakeOpenAI, oa: httpx.Client) -> None:
    fault = openai.set_fault("status", status=429, times=2)
    for _ in range(2):
        resp = oa.get("/models")
        assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert oa.get("/models").status_code == 200  # expired after 2 uses
    assert fault.hits == 2 and openai.faults == []

    openai.set_fault("status", status=429, variant="insufficient_quota", retry_after=None)
    quota = oa.get("/models")
    assert quota.json()["error"]["code"] == "insufficient_quota"
    assert "retry-after" not in quota.headers
    for status in (500, 503, 401, 404, 400):
        openai.set_fault("status", status=status)
        resp = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS})
        assert resp.status_code == status and set(resp.json()["error"]) == {
            "message", "type", "param", "code"}
    openai.clear_faults()
    assert oa.get("/models").status_code == 200


def test_fault_status_shapes_other_protocols(anthropic: FakeAnthropic, an: httpx.Client) -> None:
    anthropic.set_fault("status", status=529, times=1)
    resp = an.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": MSGS})
    assert resp.status_code == 529 and resp.json()["error"]["type"] == "overloaded_error"
    anthropic.set_fault("status", status=429, times=1, retry_after=7)
    resp = an.get("/v1/models")
    assert resp.headers["retry-after"] == "7" and resp.headers["x-should-retry"] == "true"
    assert resp.json()["error"]["type"] == "rate_limit_error"
    with FakeOpenRouter() as fake:
        fake.set_fault("status", status=503, times=1)
        resp = httpx.post(fake.base_url + "/chat/completions",
                          json={"model": "x", "messages": MSGS})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == 503
    with FakeOllama() as fake:
        fake.set_fault("status", status=503, times=1)
        resp = httpx.post(fake.base_url + "/api/chat", json={"model": "x", "messages": MSGS})
        assert resp.status_code == 503 and resp.json()["error"].startswith("server busy")


def test_fault_per_path(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.set_fault("status", status=500, path="/embeddings")
    assert oa.get("/models").status_code == 200
    assert oa.post("/embeddings", json={"model": "m", "input": "x"}).status_code == 500


def test_fault_slow(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.set_fault("slow", delay=0.3, times=1)
    started = time.monotonic()
    assert oa.get("/models").status_code == 200
    assert time.monotonic() - started >= 0.3
    openai.set_fault("slow", delay=2, times=1)
    with pytest.raises(httpx.ReadTimeout):
        oa.get("/models", timeout=0.2)
    openai.set_fault("slow", chunk_delay=0.05, times=1)
    started = time.monotonic()
    chunks = openai_stream(oa)
    assert time.monotonic() - started >= 0.05 * (len(chunks) - 1)


def test_fault_reset_before_response_and_mid_stream(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.set_fault("reset", times=1)
    with pytest.raises(httpx.TransportError):
        oa.get("/models")
    assert oa.get("/models").status_code == 200

    openai.set_fault("reset", after_chunks=2, times=1)
    received: list[str] = []
    body = {"model": "gpt-4o", "messages": MSGS, "stream": True}
    with pytest.raises(httpx.TransportError):
        with oa.stream("POST", "/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            received += sse_data(resp)
    assert received == [] or len(received) <= 2  # iter_lines may buffer; never the [DONE]

    openai.set_fault("reset", after_chunks=1, times=1)  # non-stream: half the body, then RST
    with pytest.raises(httpx.TransportError):
        oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS})


def test_fault_reset_mid_stream_ollama_lines_received() -> None:
    with FakeOllama() as fake, httpx.Client(base_url=fake.base_url) as client:
        fake.set_fault("reset", after_chunks=2)
        fake.set_fault("slow", chunk_delay=0.05)  # let the first lines arrive separately
        got: list[dict[str, Any]] = []
        with pytest.raises(httpx.TransportError):
            with client.stream("POST", "/api/chat", json={"model": "m", "messages": MSGS}) as r:
                for line in r.iter_lines():
                    got.append(json.loads(line))
        assert len(got) == 2 and not any(x["done"] for x in got)


def test_fault_malformed(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.set_fault("malformed", times=2)
    resp = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS})
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        resp.json()
    body = {"model": "gpt-4o", "messages": MSGS, "stream": True}
    with oa.stream("POST", "/chat/completions", json=body) as r:
        data = sse_data(r)
    bad = []
    for item in data[:-1]:
        try:
            json.loads(item)
        except json.JSONDecodeError:
            bad.append(item)
    assert len(bad) == 1 and data[-1] == "[DONE]"


def test_fault_huge(openai: FakeOpenAI, oa: httpx.Client) -> None:
    size = 20 * 1024 * 1024
    openai.set_fault("huge", size=size, times=1)
    resp = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS})
    assert resp.status_code == 200 and len(resp.content) > size
    assert len(resp.json()["choices"][0]["message"]["content"]) == size
    openai.set_fault("huge", size=1024 * 1024, times=1)
    chunks = openai_stream(oa)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len(text) == 1024 * 1024 and len(chunks) > 10
    openai.set_fault("huge", size=2 * 1024 * 1024, path="/models", times=1)
    assert len(oa.get("/models").content) > 2 * 1024 * 1024


def test_fault_not_json(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.set_fault("not_json", times=1)
    resp = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert resp.text.lstrip().startswith("<!DOCTYPE html>")


def test_fault_redirect(openai: FakeOpenAI, oa: httpx.Client) -> None:
    openai.set_fault("redirect", location="http://169.254.169.254/latest/", message="go there",
                     times=1)
    resp = oa.post("/chat/completions", json={"model": "gpt-4o", "messages": MSGS})
    assert resp.status_code == 307 and resp.headers["location"] == "http://169.254.169.254/latest/"
    assert resp.json() == {"error": {"message": "go there"}}
    openai.set_fault("redirect", location="/v1/models", status=301, times=1)
    assert oa.get("/models").status_code == 301
    assert oa.get("/models").status_code == 200


def test_fault_no_usage(openai: FakeOpenAI, oa: httpx.Client, anthropic: FakeAnthropic,
                        an: httpx.Client) -> None:
    openai.set_fault("no_usage")
    chunks = openai_stream(oa, stream_options={"include_usage": True})
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert "usage" not in oa.post("/chat/completions",
                                  json={"model": "gpt-4o", "messages": MSGS}).json()
    anthropic.set_fault("no_usage")
    events = anthropic_events(an)
    assert "usage" not in events[0][1]["message"] and "usage" not in events[-2][1]
    with FakeOllama() as fake:
        fake.set_fault("no_usage")
        final = httpx.post(fake.base_url + "/api/chat",
                           json={"model": "m", "messages": MSGS, "stream": False}).json()
        assert final["done"] and "eval_count" not in final and "prompt_eval_count" not in final


def test_fault_stream_error(anthropic: FakeAnthropic, an: httpx.Client) -> None:
    anthropic.set_fault("stream_error", after_chunks=3, times=1)
    events = anthropic_events(an)
    assert [n for n, _ in events][-1] == "error"
    assert events[-1][1]["error"]["type"] == "overloaded_error" and len(events) == 4
    with FakeOpenRouter() as fake, httpx.Client(base_url=fake.base_url) as client:
        fake.set_fault("stream_error", status=429)
        with client.stream("POST", "/chat/completions",
                           json={"model": "x", "messages": MSGS, "stream": True}) as r:
            data = sse_data(r)
        last = json.loads(data[-1])
        assert last["error"]["code"] == 429 and last["choices"][0]["finish_reason"] == "error"


def test_faults_are_thread_safe(openai: FakeOpenAI) -> None:
    openai.set_fault("status", status=500, times=5)
    with httpx.Client(base_url=openai.base_url, headers={"authorization": "Bearer sk-test"},
                      limits=httpx.Limits(max_connections=20)) as client:
        with ThreadPoolExecutor(max_workers=10) as pool:
            codes = list(pool.map(lambda _: client.get("/models").status_code, range(30)))
    assert sorted(codes).count(500) == 5 and codes.count(200) == 25
    assert len(openai.requests_to("/models")) == 30


def test_lifecycle_start_stop() -> None:
    fake = FakeOpenAI().start()
    url = fake.base_url
    assert httpx.get(url + "/models").status_code == 200
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models", timeout=1)
    with pytest.raises(RuntimeError):
        _ = fake.url
    with pytest.raises(ValueError):
        fake.set_fault("bogus")
