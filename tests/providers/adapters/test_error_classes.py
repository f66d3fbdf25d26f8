"""Error classes for routing (providers/adapters/failures.py ``error_class``): a prompt too long
for the model is a ``context_window`` failure and a refusal by the provider's safety system a
``content_policy`` one, on every adapter, final (not retryable) and with the upstream's status;
checked against each fake's documented error bodies and against bodies seen from other servers."""

from __future__ import annotations

import json

import pytest

from providers.adapters import anthropic, azure, gemini, ollama, openai, openrouter
from providers.adapters.failures import error_class
from providers.adapters.types import UpstreamFailure
from tests.fakes import FakeAnthropic, FakeAzure, FakeGemini, FakeOpenAI, FakeOpenRouter

from .helpers import feed_all, make_deployment, send

HELLO = {"model": "x", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 50}


def failure_of(adapter, dep, fake, kind, variant=None, *, stream=False) -> UpstreamFailure:
    """Given ``fake`` answering the ``kind`` fault, when ``adapter`` sends a chat and reads the
    answer, then the failure it raises or returns."""
    fake.clear_faults()
    fake.set_fault(kind, variant=variant)
    resp = send(adapter.build_chat(dep, HELLO, stream=stream))
    if resp.status_code != 200:
        return adapter.parse_error(dep, resp.status_code, dict(resp.headers), resp.content)
    with pytest.raises(UpstreamFailure) as info:
        if stream:
            feed_all(adapter.stream_translator(dep, request_id="r", created=1), resp.content, step=7)
        else:
            adapter.parse_chat(dep, resp.content, request_id="r")
    return info.value


def assert_final(result: UpstreamFailure, kind: str, status: int | None) -> None:
    assert (result.kind, result.retryable, result.status) == (kind, False, status), result
    assert "Say hello" not in result.message


@pytest.mark.parametrize("variant", [None, "vllm"])
def test_openai_context_length_exceeded_by_code_and_by_vllm_words(variant):
    with FakeOpenAI() as fake:
        dep = make_deployment("openai", base_url=fake.base_url)
        result = failure_of(openai, dep, fake, "context_window", variant)
    assert_final(result, "context_window", 400)
    assert "maximum context length is 128000 tokens" in result.message


def test_openai_content_policy_violation():
    with FakeOpenAI() as fake:
        result = failure_of(openai, make_deployment("openai", base_url=fake.base_url), fake, "content_policy")
    assert_final(result, "content_policy", 400)
    assert "safety system" in result.message


def test_a_plain_400_stays_a_bad_request():
    with FakeOpenAI() as fake:
        fake.set_fault("status", status=400, message="'messages' must contain the word 'json'")
        dep = make_deployment("openai", base_url=fake.base_url)
        resp = send(openai.build_chat(dep, HELLO, stream=False))
        result = openai.parse_error(dep, resp.status_code, dict(resp.headers), resp.content)
    assert result.kind == "bad_request"


def test_azure_content_filter_and_context_length():
    with FakeAzure() as fake:
        dep = make_deployment("azure", base_url=fake.url, model_id="my-gpt4o")
        filtered = failure_of(azure, dep, fake, "content_policy")
        too_long = failure_of(azure, dep, fake, "context_window")
    assert_final(filtered, "content_policy", 400)
    assert "content management policy" in filtered.message
    assert_final(too_long, "context_window", 400)


def test_azure_responsible_ai_inner_code_alone_is_enough():
    body = json.dumps({"error": {"message": "filtered", "code": "BadRequest",
                                 "innererror": {"code": "ResponsibleAIPolicyViolation"}}}).encode()
    assert azure.parse_error(make_deployment("azure"), 400, {}, body).kind == "content_policy"


def test_openrouter_context_words_and_moderation():
    with FakeOpenRouter() as fake:
        dep = make_deployment("openrouter", base_url=fake.base_url, model_id="openai/gpt-4o")
        too_long = failure_of(openrouter, dep, fake, "context_window")
        flagged = failure_of(openrouter, dep, fake, "content_policy")
    assert_final(too_long, "context_window", 400)
    assert_final(flagged, "content_policy", 403)
    assert "flagged by moderation" in flagged.message


@pytest.mark.parametrize(("variant", "words"), [(None, "prompt is too long"), ("max_tokens", "exceed context limit")])
def test_anthropic_prompt_too_long(variant, words):
    with FakeAnthropic() as fake:
        dep = make_deployment("anthropic", base_url=fake.url, model_id="claude-sonnet-4-5-20250929")
        result = failure_of(anthropic, dep, fake, "context_window", variant)
    assert_final(result, "context_window", 400)
    assert words in result.message


def test_anthropic_other_invalid_requests_stay_bad_requests():
    body = json.dumps({"type": "error", "error": {"type": "invalid_request_error",
                                                  "message": "max_tokens: 10000 > 4096, which is the maximum"}})
    assert anthropic.parse_error(make_deployment("anthropic"), 400, {}, body.encode()).kind == "bad_request"


def test_gemini_input_token_count_exceeds_the_maximum():
    with FakeGemini() as fake:
        dep = make_deployment("gemini", base_url=fake.base_url, model_id="gemini-2.5-flash")
        result = failure_of(gemini, dep, fake, "context_window")
    assert_final(result, "context_window", 400)
    assert "exceeds the maximum number of tokens allowed" in result.message


def test_gemini_streamed_request_error_array_is_classified_too():
    body = json.dumps([{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                  "The input token count (1200293) exceeds the maximum number of tokens allowed "
                                  "(1048576)."}}]).encode()
    assert gemini.parse_error(make_deployment("gemini"), 400, {}, body).kind == "context_window"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("variant", "words"), [(None, "prompt was blocked (SAFETY)"),
                                                 ("PROHIBITED_CONTENT", "prompt was blocked (PROHIBITED_CONTENT)"),
                                                 ("finish", "stopped (SAFETY) before any content")])
def test_gemini_refusals_in_a_200_answer_are_content_policy_failures(variant, words, stream):
    with FakeGemini() as fake:
        dep = make_deployment("gemini", base_url=fake.base_url, model_id="gemini-2.5-flash")
        result = failure_of(gemini, dep, fake, "content_policy", variant, stream=stream)
    assert_final(result, "content_policy", None)  # the engine answers it as a 400
    assert words in result.message


def test_gemini_safety_stop_after_some_content_is_still_an_answer():
    event = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Part of it"}]},
                             "finishReason": "SAFETY"}]}
    dep = make_deployment("gemini")
    body = json.loads(gemini.parse_chat(dep, json.dumps(event).encode(), request_id="r").body)
    assert body["choices"][0]["finish_reason"] == "content_filter"
    first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Part"}]}}]}
    stop = {"candidates": [{"finishReason": "SAFETY"}]}
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in (first, stop))
    translator = gemini.stream_translator(dep, request_id="r", created=1)
    out = feed_all(translator, raw)
    assert translator.finish_reason == "content_filter" and b"Part" in b"".join(out)


def test_ollama_context_length_error():
    body = json.dumps({"error": "the input length exceeds the context length"}).encode()
    result = ollama.parse_error(make_deployment("ollama"), 400, {}, body)
    assert_final(result, "context_window", 400)
    assert ollama.parse_error(make_deployment("ollama"), 400, {}, b'{"error": "invalid model name"}').kind \
        == "bad_request"


@pytest.mark.parametrize(("status", "codes", "message", "kind"), [
    (400, ("context_length_exceeded",), "", "context_window"),
    (400, (None, "BadRequestError"), "This model's maximum context length is 8192 tokens.", "context_window"),
    (None, (), "prompt is too long: 191989 tokens > 180000 maximum", "context_window"),
    (403, ("content_policy_violation",), "", "content_policy"),
    (400, (None, None, "ResponsibleAIPolicyViolation"), "", "content_policy"),
    # words alone never turn a rate limit or a server error into a context-window failure
    (429, ("rate_limit_exceeded",), "maximum context length", None),
    (500, (), "prompt is too long", None),
    (400, ("invalid_request_error",), "max_tokens is too large", None),
])
def test_error_class_table(status, codes, message, kind):
    found = error_class(status, codes, message)
    assert (found[0] if found else None) == kind
    if found:
        assert found[1] is False
