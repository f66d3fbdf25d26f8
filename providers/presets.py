"""Presets: the OpenAI-compatible services users ask for by name (Groq, Mistral, vLLM …), in one
table. Each preset says how to reach the service (default base URL, the environment variables
``discover_providers`` reads), how to recognise it from a base URL (its hosts, or a port and path
for self-hosted servers), where its prices come from (a genai-prices provider id, or "local")
and what its model catalog lacks. A preset is not a provider type: such providers stay
``openai_compatible``; the preset is the one named when the provider was created
(``Provider.options["preset"]``) or else the one its base URL matches."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from providers.models import Provider

__all__ = ["PRESETS", "Preset", "preset_for_url", "preset_get", "preset_names", "provider_preset", "url_parts"]

OPENAI_COMPATIBLE = "openai_compatible"  # ProviderType.OPENAI_COMPATIBLE (models imports nothing of this)


@dataclass(frozen=True)
class Preset:
    name: str  # also the provider name a preset provider gets by default
    display_name: str
    base_url: str
    hosts: tuple[str, ...] = ()  # exact host names that identify the service
    port: int | None = None  # self-hosted servers: the default port (with ``path``) identifies them
    path: str = ""
    genai_id: str | None = None  # genai-prices provider id; None: no catalog price
    key_env: str | None = None  # the API key's environment variable (discover_providers)
    url_env: str = ""  # the environment variable that overrides base_url
    local: bool = False  # self-hosted: no per-token price (price source "local")
    models: tuple[str, ...] = ()  # a built-in catalog, for a service without a usable /models
    prices_listed: bool = False  # /models lists pricing.input / .output in USD per million tokens


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("mistral", "Mistral", "https://api.mistral.ai/v1", hosts=("api.mistral.ai",), genai_id="mistral",
           key_env="MISTRAL_API_KEY", url_env="MISTRAL_BASE_URL"),
    Preset("groq", "Groq", "https://api.groq.com/openai/v1", hosts=("api.groq.com",), genai_id="groq",
           key_env="GROQ_API_KEY", url_env="GROQ_BASE_URL"),
    Preset("together", "Together AI", "https://api.together.xyz/v1", hosts=("api.together.xyz",),
           genai_id="together", key_env="TOGETHER_API_KEY", url_env="TOGETHER_BASE_URL", prices_listed=True),
    Preset("deepseek", "DeepSeek", "https://api.deepseek.com/v1", hosts=("api.deepseek.com",), genai_id="deepseek",
           key_env="DEEPSEEK_API_KEY", url_env="DEEPSEEK_BASE_URL"),
    Preset("xai", "xAI", "https://api.x.ai/v1", hosts=("api.x.ai",), genai_id="x-ai", key_env="XAI_API_KEY",
           url_env="XAI_BASE_URL"),
    Preset("fireworks", "Fireworks AI", "https://api.fireworks.ai/inference/v1", hosts=("api.fireworks.ai",),
           genai_id="fireworks", key_env="FIREWORKS_API_KEY", url_env="FIREWORKS_BASE_URL"),
    # Perplexity has no model listing: its catalog is this list (docs.perplexity.ai, model cards).
    Preset("perplexity", "Perplexity", "https://api.perplexity.ai", hosts=("api.perplexity.ai",),
           genai_id="perplexity", key_env="PERPLEXITY_API_KEY", url_env="PERPLEXITY_BASE_URL",
           models=("sonar", "sonar-pro", "sonar-reasoning", "sonar-reasoning-pro", "sonar-deep-research")),
    Preset("cerebras", "Cerebras", "https://api.cerebras.ai/v1", hosts=("api.cerebras.ai",), genai_id="cerebras",
           key_env="CEREBRAS_API_KEY", url_env="CEREBRAS_BASE_URL"),
    Preset("vllm", "vLLM", "http://localhost:8000/v1", port=8000, path="/v1", url_env="VLLM_BASE_URL", local=True),
    Preset("lmstudio", "LM Studio", "http://localhost:1234/v1", port=1234, path="/v1", url_env="LMSTUDIO_BASE_URL",
           local=True),
)}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_get(name: str) -> Preset | None:
    return PRESETS.get((name or "").strip().lower())


def url_parts(base_url: str) -> tuple[str, int | None, str] | None:
    """``(host, port, path)`` of a base URL as typed (case-insensitive, scheme optional, trailing
    dots and slashes dropped), or None when it does not parse."""
    text = (base_url or "").strip()
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
        return (parts.hostname or "").rstrip("."), parts.port, parts.path.lower().rstrip("/")
    except ValueError:
        return None


def _in_house(host: str) -> bool:
    """A host a self-hosted server lives on: loopback or a private address, a name without a
    dot (``gpu-box``) or under a local suffix. A public name on port 8000 is not taken for vLLM:
    its models would be priced at $0 (self-hosted) where a paid service's are unknown."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    return address.is_private or address.is_loopback


_LOCAL_SUFFIXES = (".localhost", ".local", ".lan", ".internal", ".home.arpa")


def preset_for_url(base_url: str) -> Preset | None:
    """The preset whose host the URL names exactly (no look-alikes: ``api.groq.com.example``
    is not Groq), or a self-hosted one whose port and path it has on an in-house host
    (``http://gpu:8000/v1`` is vLLM; ``https://api.example.com:8000/v1`` is not)."""
    parts = url_parts(base_url)
    if parts is None:
        return None
    host, port, path = parts
    for preset in PRESETS.values():
        if host and host in preset.hosts:
            return preset
        if preset.port is not None and port == preset.port and path == preset.path and _in_house(host):
            return preset
    return None


def provider_preset(provider: Provider) -> Preset | None:
    """The preset of an openai_compatible provider: the one it was created with, else its URL's."""
    if provider.provider_type != OPENAI_COMPATIBLE:
        return None
    named = (provider.options or {}).get("preset")
    if isinstance(named, str) and named in PRESETS:
        return PRESETS[named]
    return preset_for_url(provider.base_url)
