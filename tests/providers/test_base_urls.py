"""A provider's base URL as typed (providers/base_urls.py): the provider type it suggests and
its canonical form, with errors that say what to fix. No network access."""

import pytest

from core.errors import InvalidInput
from providers.base_urls import detect_provider_type, normalize_base_url, vertex_base_url


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://API.OpenAI.com/v1/", "openai"),
        ("api.openai.com", "openai"),
        ("https://api.anthropic.com", "anthropic"),
        ("https://api.anthropic.com/v1///", "anthropic"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://eu.OpenRouter.ai/api/v1/", "openrouter"),
        ("http://localhost:11434", "ollama"),
        ("http://gpu-box:11434/v1", "ollama"),
        ("https://ollama.example.com/api", "ollama"),
        ("https://ollama.example.com/API/", "ollama"),
        ("https://llm.example.com/apis/v1", "openai_compatible"),
        ("https://api.groq.com/openai/v1", "openai_compatible"),
        ("http://localhost:8000/v1", "openai_compatible"),
        ("https://openrouter.ai.evil.example/v1", "openai_compatible"),
        ("https://notopenai.com/v1", "openai_compatible"),
        ("", "openai_compatible"),
        ("http://[::1", "openai_compatible"),
        ("https://generativelanguage.googleapis.com/v1beta", "gemini"),
        ("generativelanguage.googleapis.com", "gemini"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "openai_compatible"),  # Google's Chat API
        ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google",
         "gemini"),
        ("https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google", "gemini"),
        ("https://aiplatform.googleapis.com.evil.example/v1", "openai_compatible"),
    ],
)
def test_detect_provider_type(base_url, expected):
    assert detect_provider_type(base_url) == expected


@pytest.mark.parametrize(
    ("base_url", "provider_type", "expected"),
    [
        ("", "openai", "https://api.openai.com/v1"),
        ("   ", "anthropic", "https://api.anthropic.com"),
        ("", "openrouter", "https://openrouter.ai/api/v1"),
        ("", "ollama", "http://localhost:11434"),
        ("HTTPS://API.Example.COM/V1/", "openai_compatible", "https://api.example.com/V1"),
        ("http://gpu-box:11434//", "ollama", "http://gpu-box:11434"),
        ("https://[2001:DB8::1]:8443/v1/", "openai_compatible", "https://[2001:db8::1]:8443/v1"),
        (" https://api.openai.com/v1/ ", "openai", "https://api.openai.com/v1"),
        ("", "mock", ""),
        ("", "gemini", "https://generativelanguage.googleapis.com/v1beta"),
        ("https://generativelanguage.googleapis.com/", "gemini", "https://generativelanguage.googleapis.com/v1beta"),
        ("https://generativelanguage.googleapis.com/v1", "gemini", "https://generativelanguage.googleapis.com/v1"),
        ("https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/publishers/google/",
         "gemini",
         "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/publishers/google"),
    ],
)
def test_normalize_base_url(base_url, provider_type, expected):
    assert normalize_base_url(base_url, provider_type) == expected


@pytest.mark.parametrize(
    ("base_url", "provider_type", "message"),
    [
        ("", "openai_compatible", "base_url is required"),
        ("api.example.com/v1", "openai_compatible", "must start with http:// or https://"),
        ("ftp://files.example.com", "openai_compatible", "must start with http:// or https://"),
        ("https://", "openai", "must start with http:// or https://"),
        ("https://:443/v1", "openai", "no host name"),
        ("https://user:secret@api.example.com", "openai_compatible", "user name or password"),
        ("https://api.example.com:99999", "openai_compatible", "invalid port"),
        ("https://api.example.com:0", "openai_compatible", "invalid port"),
        ("https://api.example.com/v1?key=1", "openai_compatible", "query string"),
        ("https://api.example.com/v1#x", "openai_compatible", "fragment"),
        ("https://api.example .com", "openai_compatible", "spaces"),
    ],
)
def test_normalize_base_url_errors_say_what_to_fix(base_url, provider_type, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        normalize_base_url(base_url, provider_type)
    assert caught.value.field == "base_url"


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://[::1", "not a valid URL"),
        ("https://[zz]/v1", "not a valid URL"),
        ("http://a]b/v1", "not a valid URL"),
        ("http://[::1]x:80/v1", "invalid host"),
        ("http://[v1.fe]/v1", "invalid host"),
        ("http://a%20b.example.com/v1", "invalid host"),
        ("http://a<b/v1", "invalid host"),
        ("http://a\x00b/v1", "control characters"),
    ],
)
def test_malformed_base_urls_are_input_errors(base_url, message):
    """What urlsplit raises ValueError on (a 500 before) or lets through in a shape no HTTP
    client here can connect to: an input error on base_url."""
    with pytest.raises(InvalidInput, match=message) as caught:
        normalize_base_url(base_url, "openai_compatible")
    assert caught.value.field == "base_url"


@pytest.mark.parametrize("base_url", ["http://[::1]:8000/v1", "http://[fe80::1%25eth0]/v1", "http://gpu_box:11434",
                                      "https://пример.рф/v1", "http://10.0.0.2:8000/v1/", "https://api.example.com."])
def test_unusual_but_valid_hosts_pass(base_url):
    assert normalize_base_url(base_url, "openai_compatible") == base_url.rstrip("/").lower()


def test_normalize_base_url_unknown_type():
    with pytest.raises(InvalidInput, match="Unknown provider type") as caught:
        normalize_base_url("https://api.example.com", "gopher")
    assert caught.value.field == "provider_type"


def test_a_vertex_url_must_name_project_and_location():
    with pytest.raises(InvalidInput) as info:
        normalize_base_url("https://us-central1-aiplatform.googleapis.com", "gemini")
    assert info.value.field == "base_url" and "/projects/{project}/locations/{location}" in info.value.message


def test_vertex_base_url_from_project_and_location():
    url = vertex_base_url("acme-prod", "europe-west4")
    assert url == ("https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-prod/locations/europe-west4/"
                   "publishers/google")
    assert normalize_base_url(url, "gemini") == url and detect_provider_type(url) == "gemini"
    assert vertex_base_url("acme", "global").startswith("https://aiplatform.googleapis.com/v1/projects/acme/")
    with pytest.raises(InvalidInput) as info:
        vertex_base_url("acme/../x", "us-central1")
    assert info.value.field == "options.project"
