"""Upstream failures (providers/adapters/failures.py): classification, retry-after, and no
secret in what a client or tenant admin reads."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from providers.adapters.failures import failure, parse_retry_after, scrub
from providers.adapters.registry import ADAPTERS
from providers.adapters.types import UpstreamFailure

from .helpers import make_deployment


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


@pytest.mark.parametrize("kind", [kind for kind, adapter in ADAPTERS.items() if not adapter.IN_PROCESS])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_adapter_reports_a_redirect_without_quoting_it(kind, status):
    # Whatever the body claims (even an error type meaning something else), a 3xx is a redirect.
    body = (b'{"error": {"message": "SECRET from 169.254.169.254", "type": "billing_error", '
            b'"code": "insufficient_quota"}}')
    result = ADAPTERS[kind].parse_error(make_deployment(kind, name="acme-up"), status,
                                        {"location": "http://169.254.169.254/latest/"}, body)
    assert result.kind == "redirect" and result.status == status and not result.retryable
    assert result.message == (f"acme-up answered with a redirect ({status}) to another address; "
                              "Tollgate does not follow redirects — fix the provider's base URL.")
