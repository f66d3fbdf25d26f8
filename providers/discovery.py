"""Platform providers described by the environment (``discover_providers``)."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from providers.models import ProviderType

# env var with the key -> (provider name, type, base URL, env var that overrides the URL)
KNOWN = (
    ("OPENAI_API_KEY", "openai", ProviderType.OPENAI, "https://api.openai.com/v1", "OPENAI_BASE_URL"),
    ("ANTHROPIC_API_KEY", "anthropic", ProviderType.ANTHROPIC, "https://api.anthropic.com", "ANTHROPIC_BASE_URL"),
    ("OPENROUTER_API_KEY", "openrouter", ProviderType.OPENROUTER, "https://openrouter.ai/api/v1",
     "OPENROUTER_BASE_URL"),
    ("GEMINI_API_KEY", "gemini", ProviderType.GEMINI, "https://generativelanguage.googleapis.com/v1beta",
     "GEMINI_BASE_URL"),
    ("FIREWORKS_API_KEY", "fireworks", ProviderType.OPENAI_COMPATIBLE, "https://api.fireworks.ai/inference/v1",
     "FIREWORKS_BASE_URL"),
    ("DEEPSEEK_API_KEY", "deepseek", ProviderType.OPENAI_COMPATIBLE, "https://api.deepseek.com/v1",
     "DEEPSEEK_BASE_URL"),
    ("XAI_API_KEY", "xai", ProviderType.OPENAI_COMPATIBLE, "https://api.x.ai/v1", "XAI_BASE_URL"),
)
CUSTOM_URL = re.compile(r"^PROVIDER_([A-Z0-9_]+)_URL$")


@dataclass(frozen=True)
class Discovered:
    name: str
    provider_type: str | None  # None: detect from the URL
    base_url: str
    api_key: str


def discover(environ: Mapping[str, str] = os.environ) -> list[Discovered]:
    found: list[Discovered] = []
    for key_var, name, kind, default_url, url_var in KNOWN:
        if environ.get(key_var, "").strip():
            url = environ.get(url_var, "").strip() or default_url
            found.append(Discovered(name, kind, url, environ[key_var].strip()))
    ollama = environ.get("OLLAMA_BASE_URL", "").strip() or _ollama_from_host(environ)
    if ollama:
        found.append(Discovered("ollama", ProviderType.OLLAMA, ollama, environ.get("OLLAMA_API_KEY", "").strip()))
    for var in sorted(environ):
        match = CUSTOM_URL.match(var)
        if match and environ[var].strip():
            name = match.group(1).lower().replace("_", "-")
            key = environ.get(f"PROVIDER_{match.group(1)}_KEY", "").strip()
            found.append(Discovered(name, None, environ[var].strip(), key))
    return found


def _ollama_from_host(environ: Mapping[str, str]) -> str:
    host = environ.get("OLLAMA_HOST", "").strip()
    if not host:
        return ""
    port = environ.get("OLLAMA_PORT", "").strip() or "11434"
    if "://" not in host:
        host = f"http://{host}"
    scheme, rest = host.split("://", 1)
    if ":" not in rest.split("/", 1)[0]:
        rest = f"{rest}:{port}"
    return f"{scheme}://{rest}"
