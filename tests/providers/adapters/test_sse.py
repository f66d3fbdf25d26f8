"""Shared stream/header/error helpers (providers/adapters/sse.py)."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from providers.adapters.sse import (
    ChunkBuilder,
    NDJSONDecoder,
    SSEDecoder,
    deployment_headers,
    failure,
    parse_data_url,
    parse_retry_after,
    scrub,
    usage_from_openai,
    usage_to_openai,
)
from providers.adapters.types import UpstreamFailure, Usage

from .helpers import make_deployment

STREAM = (
    b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
    b": keep-alive comment\n\n"
    b"data: first line\ndata: second line\n\n"
    b"id: 7\nretry: 100\ndata:no-space\n\n"
    b"event: x\rdata: cr-only\r\r"
)
EXPECTED = [
    (b"message_start", b'{"a":1}'),
    (b"", b"first line\nsecond line"),
    (b"", b"no-space"),
    (b"x", b"cr-only"),
]


def decode(data: bytes, step: int | None) -> list[tuple[bytes, bytes]]:
    decoder = SSEDecoder()
    events = []
    if step is None:
        events += decoder.feed(data)
    else:
        for i in range(0, len(data), step):
            events += decoder.feed(data[i : i + step])
    return events + decoder.finish()


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7, 64])
def test_sse_decoder_handles_any_split(step):
    assert decode(STREAM, step) == EXPECTED


def test_sse_decoder_crlf_split_between_cr_and_lf():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [(b"", b"a"), (b"", b"b")]


def test_sse_decoder_flushes_an_unterminated_last_event():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\ndata: tail") == [(b"", b"x")]
    assert decoder.finish() == [(b"", b"tail")]


def test_sse_decoder_only_comments_gives_nothing():
    assert decode(b": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\r\n\r\n", 1) == []


@pytest.mark.parametrize("step", [None, 1, 5])
def test_ndjson_decoder(step):
    data = b'{"a":1}\n\n{"b":2}\r\n{"c":3}'
    decoder = NDJSONDecoder()
    lines = []
    if step is None:
        lines += decoder.feed(data)
    else:
        for i in range(0, len(data), step):
            lines += decoder.feed(data[i : i + step])
    lines += decoder.finish()
    assert [line.strip() for line in lines] == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_parse_retry_after_variants():
    assert parse_retry_after({"retry-after-ms": "644"}) == pytest.approx(0.644)
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == pytest.approx(1.5)
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "junk", "retry-after": "3"}) == 3.0
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-1"}) is None
    when = formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": when}) <= 31
    past = formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0


def test_scrub_hides_keys():
    text = "Incorrect API key provided: sk-...abcd. You can find your API key at https://x"
    assert scrub(text) == "Incorrect API key provided: [key hidden]. You can find your API key at https://x"
    assert "sk-or-v1" not in scrub("bad key sk-or-v1-0123456789abcdef")
    assert "sk-ant" not in scrub("key sk-ant-api03-XYZ_abc-123 rejected")
    assert "secret" not in scrub("Authorization: Bearer secret123")
    deployment = make_deployment(api_key="plainsecretkey")
    assert "plainsecretkey" not in scrub("your key plainsecretkey is wrong", deployment)
    assert scrub("a risk-based task-list") == "a risk-based task-list"


def test_failure_message_names_provider_and_clips():
    deployment = make_deployment(name="acme-openai")
    result = failure(deployment, 500, {}, "x " * 1000)
    assert result.message.startswith("acme-openai answered 500 (server error): x x")
    assert len(result.message) < 360
    assert result.kind == "server_error" and result.retryable and result.status == 500
    assert isinstance(result, UpstreamFailure)


def test_failure_honours_x_should_retry_false():
    result = failure(make_deployment(), 503, {"x-should-retry": "false"}, "busy")
    assert result.kind == "server_error" and result.retryable is False


def test_deployment_headers_openai_style():
    headers = deployment_headers(make_deployment(extra_headers=(("OpenAI-Project", "proj_1"), ("User-Agent", "Custom"))))
    assert headers["Authorization"] == "Bearer sk-test-key-123456"
    assert headers["OpenAI-Project"] == "proj_1"
    assert headers["User-Agent"] == "Custom"  # extra headers win
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in deployment_headers(make_deployment("openai_compatible", api_key=""))


def test_deployment_headers_anthropic():
    headers = deployment_headers(make_deployment("anthropic", api_key="sk-ant-1"))
    assert headers["x-api-key"] == "sk-ant-1"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers


def test_deployment_headers_openrouter_attribution(settings):
    settings.OPENROUTER_SITE_URL = "https://tollgate.example"
    settings.OPENROUTER_APP_NAME = "Tollgate Test"
    headers = deployment_headers(make_deployment("openrouter", api_key="sk-or-1"))
    assert headers["Authorization"] == "Bearer sk-or-1"
    assert headers["HTTP-Referer"] == "https://tollgate.example"
    assert headers["X-Title"] == "Tollgate Test"
    settings.OPENROUTER_SITE_URL = ""
    settings.OPENROUTER_APP_NAME = ""
    headers = deployment_headers(make_deployment("openrouter", api_key="sk-or-1"))
    assert "HTTP-Referer" not in headers and "X-Title" not in headers
    assert "HTTP-Referer" not in deployment_headers(make_deployment("openai"))


def test_usage_round_trip():
    usage = usage_from_openai({
        "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 7},
        "completion_tokens_details": {"reasoning_tokens": 5}, "cost": 0.0012,
    }, with_cost=True)
    assert usage == Usage(input_tokens=100, cached_input_tokens=40, cache_write_tokens=7, output_tokens=20,
                          reasoning_tokens=5, provider_cost=usage.provider_cost)
    assert str(usage.provider_cost) == "0.0012"
    assert usage_to_openai(usage) == {
        "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 7},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    assert usage_to_openai(Usage(input_tokens=3, output_tokens=4)) == {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert usage_from_openai({"prompt_tokens": None, "prompt_tokens_details": None}) == Usage()
    assert usage_from_openai(None) is None


def test_chunk_builder_is_valid_json():
    chunks = ChunkBuilder("chatcmpl-1", 1700000000, 'we"ird')
    import json

    for event in (chunks.role(), chunks.content("hé\n"), chunks.delta({"tool_calls": []}), chunks.finish("stop")):
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        obj = json.loads(event[6:])
        assert obj["model"] == 'we"ird' and obj["created"] == 1700000000
    assert json.loads(chunks.finish("length")[6:])["choices"][0]["finish_reason"] == "length"


def test_parse_data_url():
    assert parse_data_url("data:image/png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("data:image/svg+xml,<svg/>") is None
    assert parse_data_url("https://x/y.png") is None


@pytest.mark.parametrize("kind", ["openai", "openai_compatible", "openrouter", "anthropic",
                                  "ollama"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_adapter_reports_a_redirect_without_quoting_it(kind, status):
    from gateway.engine import ADAPTERS

    # Whatever the body claims (even an error type meaning something else), a 3xx is a redirect.
    body = (b'{"error": {"message": "SECRET from 169.254.169.254", "type": "billing_error", '
            b'"code": "insufficient_quota"}}')
    result = ADAPTERS[kind].parse_error(make_deployment(kind, name="acme-up"), status,
                                        {"location": "http://169.254.169.254/latest/"}, body)
    assert result.kind == "redirect" and result.status == status and not result.retryable
    assert result.message == (f"acme-up answered with a redirect ({status}) to another address; "
                              "Tollgate does not follow redirects — fix the provider's base URL.")
