"""Request headers (providers/adapters/headers.py): auth in each provider type's style, the
deployment's extra headers last."""

from __future__ import annotations

from providers.adapters.headers import deployment_headers

from .helpers import make_deployment


def test_deployment_headers_openai_style():
    headers = deployment_headers(
        make_deployment(extra_headers=(("OpenAI-Project", "proj_1"), ("User-Agent", "Custom")))
    )
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


def test_deployment_headers_send_the_extra_headers_last_and_need_no_settings():
    # OpenRouter's attribution comes in the deployment's extra headers
    # (Provider.upstream_extra_headers); the adapter reads no settings.
    attribution = (("HTTP-Referer", "https://tollgate.example"), ("X-Title", "Tollgate Test"))
    headers = deployment_headers(make_deployment("openrouter", api_key="sk-or-1", extra_headers=attribution))
    assert headers["Authorization"] == "Bearer sk-or-1"
    assert headers["HTTP-Referer"] == "https://tollgate.example" and headers["X-Title"] == "Tollgate Test"
    assert list(headers)[-2:] == ["HTTP-Referer", "X-Title"]
    headers = deployment_headers(make_deployment("openrouter", api_key="sk-or-1"))
    assert "HTTP-Referer" not in headers and "X-Title" not in headers
