"""OpenRouter adapter: the OpenAI format plus attribution headers (in the deployment's extra
headers), ``usage.cost``, comment keep-alives, both final-usage chunk shapes, int-coded errors;
round trips with FakeOpenRouter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from providers.adapters import openrouter as adapter
from providers.adapters.types import UpstreamFailure, Usage
from tests.fakes import FakeOpenRouter

from .helpers import (
    chunks_of,
    feed_all,
    finish_reasons,
    make_deployment,
    run_stream,
    send,
    stream_text,
    validate_completion,
)

DEP = make_deployment("openrouter", name="openrouter", base_url="https://openrouter.invalid/api/v1",
                      api_key="sk-or-v1-abcdef0123456789", model_id="openai/gpt-4o")
# What Provider.upstream_extra_headers gives an OpenRouter provider when the settings name the site.
ATTRIBUTION = (("HTTP-Referer", "https://gw.example"), ("X-Title", "Tollgate"))

ANSWER = {
    "id": "gen-xxxxxxxxxxxxxx", "provider": "OpenAI", "model": "openai/gpt-4o", "object": "chat.completion",
    "created": 1677652288,
    "choices": [{"index": 0, "finish_reason": "stop", "native_finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello there!"}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
              "prompt_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 3},
              "completion_tokens_details": {"reasoning_tokens": 1}, "cost": 0.00014},
}


def test_build_chat_headers_and_body():
    body = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "provider": {"order": ["OpenAI"]},
            "models": ["a/b"], "top_k": 3}
    req = adapter.build_chat(replace(DEP, extra_headers=ATTRIBUTION), body, stream=True)
    assert req.url == "https://openrouter.invalid/api/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer sk-or-v1-abcdef0123456789"
    assert req.headers["HTTP-Referer"] == "https://gw.example" and req.headers["X-Title"] == "Tollgate"
    sent = json.loads(req.body)
    assert sent["model"] == "openai/gpt-4o" and sent["provider"] == {"order": ["OpenAI"]} and sent["top_k"] == 3
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_parse_chat_cost_and_cache_write():
    body = json.dumps(ANSWER).encode()
    result = adapter.parse_chat(DEP, body, request_id="r")
    assert result.body is body
    validate_completion(result.body)
    assert result.usage == Usage(input_tokens=10, cached_input_tokens=2, cache_write_tokens=3, output_tokens=4,
                                 reasoning_tokens=1, provider_cost=Decimal("0.00014"))


def test_parse_chat_partial_failure_raises():
    answer = {**ANSWER, "choices": [{"index": 0, "finish_reason": "error",
                                     "message": {"role": "assistant", "content": "Hal"},
                                     "error": {"code": 502, "message": "Provider returned error"}}]}
    with pytest.raises(UpstreamFailure) as info:
        adapter.parse_chat(DEP, json.dumps(answer).encode(), request_id="r")
    assert info.value.kind == "server_error" and info.value.retryable
    assert "Provider returned error" in info.value.message


def head(extra: str) -> bytes:
    return ('data: {"id":"gen-1","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk",'
            '"created":1,' + extra + "}\n\n").encode()


USAGE = ('"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"cost":0.5,'
         '"prompt_tokens_details":{"cached_tokens":4}}')
OLD_SHAPE = (
    b": OPENROUTER PROCESSING\n\n"
    + head('"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,'
           '"native_finish_reason":null}]')
    + b": OPENROUTER PROCESSING\n\n"
    + head('"choices":[{"index":0,"delta":{},"finish_reason":"stop","native_finish_reason":"stop"}]')
    + head('"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,'
           '"native_finish_reason":null,"logprobs":null}],' + USAGE)
    + b"data: [DONE]\n\n"
)
NEW_SHAPE = OLD_SHAPE.replace(
    head('"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,'
         '"native_finish_reason":null,"logprobs":null}],' + USAGE),
    ('data: {"choices":[],' + USAGE + "}\n\n").encode(),
)


@pytest.mark.parametrize("data", [OLD_SHAPE, NEW_SHAPE], ids=["usage-after-stop", "choices-empty"])
@pytest.mark.parametrize("step", [None, 1])
def test_stream_usage_shapes(data, step):
    t = adapter.stream_translator(DEP, request_id="r", created=1)
    chunks = chunks_of(feed_all(t, data, step))
    assert len(chunks) == 2 and stream_text(chunks) == "Hi" and finish_reasons(chunks) == ["stop"]
    assert t.usage == Usage(input_tokens=12, cached_input_tokens=4, output_tokens=3, provider_cost=Decimal("0.5"))


def test_stream_mid_stream_error():
    t = adapter.stream_translator(DEP, request_id="r", created=1)
    t.feed(OLD_SHAPE.split(b"data: ")[0]
           + head('"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]'))
    frame = head('"error":{"code":429,"message":"Rate limit exceeded","metadata":{"error_type":"rate_limit_exceeded"}},'
                 '"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]')
    with pytest.raises(UpstreamFailure) as info:
        t.feed(frame)
    assert info.value.kind == "rate_limit" and info.value.retryable and "Rate limit exceeded" in info.value.message


def err(status, error, headers=None):
    return adapter.parse_error(DEP, status, headers or {}, json.dumps({"error": error}).encode())


def test_parse_error_variants():
    result = err(402, {"code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai/credits"})
    assert (result.kind, result.retryable) == ("quota", False)
    result = err(429, {"code": 429, "message": "Rate limit exceeded"}, {"retry-after": "4"})
    assert (result.kind, result.retryable, result.retry_after) == ("rate_limit", True, 4.0)
    assert result.message == "openrouter answered 429 (rate limited): Rate limit exceeded"
    result = err(400, {"message": "acme/fake-1.0 is not a valid model ID", "error_type": "invalid_request",
                       "http_status": 400, "availability": {"code": "model_not_found", "retryable": False,
                                                            "requested_models": ["acme/fake-1.0"]}})
    assert (result.kind, result.retryable) == ("not_found", False)
    result = err(503, {"message": "No endpoints",
                       "availability": {"code": "no_endpoints", "retryable": True, "retry_after": 9}})
    assert (result.kind, result.retryable, result.retry_after) == ("server_error", True, 9.0)
    result = err(403, {"code": 403, "message": "Input flagged",
                       "metadata": {"reasons": ["violence"], "flagged_input": "..."}})
    assert (result.kind, result.retryable) == ("content_policy", False)
    result = err(401, {"code": 401, "message": "Invalid key sk-or-v1-abcdef0123456789"})
    assert result.kind == "auth" and "abcdef" not in result.message
    result = err(502, {"code": 502, "message": "Provider returned error", "metadata": {"provider_name": "Together"}})
    assert result.kind == "server_error" and "Together" in result.message


# ----------------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter(api_key="sk-or-fake", reply="Routed reply from the fake.") as server:
        yield server


@pytest.fixture
def upstream(fake):
    fake.clear_faults()
    fake.usage = None
    return make_deployment("openrouter", base_url=fake.base_url, api_key="sk-or-fake", model_id="openai/gpt-4o")


BODY = {"model": "alias", "messages": [{"role": "user", "content": "Route me"}]}


def test_round_trip_chat(fake, upstream):
    fake.usage = {"cached_tokens": 1, "cache_creation_tokens": 2, "cost": 0.25}
    resp = send(adapter.build_chat(replace(upstream, extra_headers=ATTRIBUTION), BODY, stream=False))
    assert fake.last_request.headers["http-referer"] == "https://gw.example"
    result = adapter.parse_chat(upstream, resp.content, request_id="r")
    obj = validate_completion(result.body)
    assert obj["id"].startswith("gen-") and obj["choices"][0]["message"]["content"] == "Routed reply from the fake."
    assert result.usage.provider_cost == Decimal("0.25") and result.usage.cache_write_tokens == 2
    assert result.usage.cached_input_tokens == 1


def test_round_trip_stream(fake, upstream):
    t = adapter.stream_translator(upstream, request_id="r", created=1)
    chunks = chunks_of(run_stream(adapter.build_chat(upstream, BODY, stream=True), t))
    assert stream_text(chunks) == "Routed reply from the fake." and finish_reasons(chunks) == ["stop"]
    assert t.usage is not None and t.usage.provider_cost is not None and t.usage.provider_cost > 0


def test_round_trip_errors(fake, upstream):
    fake.set_fault("stream_error", times=1, status=429, variant="rate_limit_exceeded", message="Rate limit exceeded")
    with pytest.raises(UpstreamFailure) as info:
        run_stream(adapter.build_chat(upstream, BODY, stream=True),
                   adapter.stream_translator(upstream, request_id="r", created=1))
    assert info.value.kind == "rate_limit"
    fake.set_fault("status", status=503, times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "server_error" and result.retry_after == 1.0
    fake.set_fault("status", status=402, times=1)
    resp = send(adapter.build_chat(upstream, BODY, stream=False))
    result = adapter.parse_error(upstream, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "quota" and not result.retryable
    fake.strict_models = True
    try:
        missing = make_deployment("openrouter", base_url=upstream.base_url, api_key="sk-or-fake", model_id="acme/none")
        resp = send(adapter.build_chat(missing, BODY, stream=False))
        result = adapter.parse_error(missing, resp.status_code, dict(resp.headers), resp.content)
        assert resp.status_code == 400 and result.kind == "bad_request" and "not a valid model ID" in result.message
    finally:
        fake.strict_models = False


# ----------------------------------------------------------------------------- prompt caching
CLAUDE = replace(DEP, model_id="anthropic/claude-sonnet-4.5")
EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


def test_cache_markers_go_on_content_parts_where_openrouter_reads_them():
    body = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "rules", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": "a long document", "cache_control": EPHEMERAL},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "f", "arguments": "{}"}}], "cache_control": EPHEMERAL},
        {"role": "tool", "tool_call_id": "c1", "content": "result", "cache_control": EPHEMERAL},
        {"role": "user", "content": "plain"}],
        "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": EPHEMERAL}]}
    sent = json.loads(adapter.build_chat(CLAUDE, body, stream=False).body)
    assert sent["messages"][0] == body["messages"][0]
    assert sent["messages"][1] == {"role": "user", "content": [
        {"type": "text", "text": "a long document", "cache_control": EPHEMERAL}]}
    assert "cache_control" not in sent["messages"][2] and sent["messages"][2]["content"] is None  # nowhere to go
    assert sent["messages"][3]["content"] == [{"type": "text", "text": "result", "cache_control": EPHEMERAL}]
    assert sent["messages"][4] == {"role": "user", "content": "plain"}
    assert sent["tools"][0]["cache_control"] == EPHEMERAL
    unmarked = {"messages": [{"role": "user", "content": "hi"}]}
    assert json.loads(adapter.build_chat(CLAUDE, unmarked, stream=False).body)["messages"] == unmarked["messages"]


def test_an_hour_long_ttl_is_kept_and_priced_only_when_every_claude_marker_asks_it():
    def marked(*marks):
        return {"messages": [{"role": "user", "content": [{"type": "text", "text": f"part {i}", "cache_control": m}
                                                          for i, m in enumerate(marks)]}]}

    def ttls(d, body):
        return [p["cache_control"].get("ttl") for p in
                json.loads(adapter.build_chat(d, body, stream=False).body)["messages"][0]["content"]]

    assert ttls(CLAUDE, marked(HOUR, HOUR)) == ["1h", "1h"]
    assert ttls(CLAUDE, marked(HOUR, EPHEMERAL)) == [None, None]  # mixed: all five minutes
    assert ttls(replace(DEP, model_id="google/gemini-2.5-pro"), marked(HOUR)) == [None]
    body = json.dumps(ANSWER).encode()
    assert adapter.parse_chat(CLAUDE, body, request_id="r", request=marked(HOUR)).usage.cache_write_1h_tokens == 3
    assert adapter.parse_chat(CLAUDE, body, request_id="r", request=marked(HOUR, EPHEMERAL)).usage \
        .cache_write_1h_tokens == 0
    stream = (b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n'
              b'data: {"choices":[],"usage":' + json.dumps(ANSWER["usage"]).encode() + b'}\n\ndata: [DONE]\n\n')
    translator = adapter.stream_translator(CLAUDE, request_id="s", created=1, request=marked(HOUR))
    feed_all(translator, stream)
    assert (translator.usage.cache_write_tokens, translator.usage.cache_write_1h_tokens) == (3, 3)
