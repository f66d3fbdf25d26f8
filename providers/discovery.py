"""Platform providers described by the environment (``discover_providers``): the big three's keys
(OpenAI's organization, OPENAI_ORG_ID, as its OpenAI-Organization header),
the presets' keys or URLs (providers/presets.py), Ollama's host and PROVIDER_<NAME>_URL/_KEY pairs."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from providers.models import ProviderType
from providers.presets import PRESETS

# env var with the key -> (provider name, type, base URL, env var that overrides the URL); the
# OpenAI-compatible services come from the presets' table (providers/presets.py).
KNOWN = (
    ("OPENAI_API_KEY", "openai", ProviderType.OPENAI, "https://api.openai.com/v1", "OPENAI_BASE_URL"),
    ("ANTHROPIC_API_KEY", "anthropic", ProviderType.ANTHROPIC, "https://api.anthropic.com", "ANTHROPIC_BASE_URL"),
    ("OPENROUTER_API_KEY", "openrouter", ProviderType.OPENROUTER, "https://openrouter.ai/api/v1",
     "OPENROUTER_BASE_URL"),
    ("GEMINI_API_KEY", "gemini", ProviderType.GEMINI, "https://generativelanguage.googleapis.com/v1beta",
     "GEMINI_BASE_URL"),
)
CUSTOM_URL = re.compile(r"^PROVIDER_([A-Z0-9_]+)_URL$")


@dataclass(frozen=True)
class Discovered:
    name: str
    provider_type: str | None  # None: detect from the URL
    base_url: str
    api_key: str
    preset: str | None = None
    extra_headers: dict[str, str] | None = None  # None: leave the provider's own alone


def discover(environ: Mapping[str, str] = os.environ) -> list[Discovered]:
    found: list[Discovered] = []
    for key_var, name, kind, default_url, url_var in KNOWN:
        if environ.get(key_var, "").strip():
            url = environ.get(url_var, "").strip() or default_url
            # OPENAI_ORG_ID (the seed's): requests on behalf of that organization.
            org = environ.get("OPENAI_ORG_ID", "").strip() if name == "openai" else ""
            found.append(Discovered(name, kind, url, environ[key_var].strip(),
                                    extra_headers={"OpenAI-Organization": org} if org else None))
    for preset in PRESETS.values():
        # A hosted service is described by its key (its URL optional), a self-hosted one by its URL
        # (vLLM and LM Studio need no key; <NAME>_API_KEY is sent when set).
        key = environ.get(preset.key_env or f"{preset.name.upper()}_API_KEY", "").strip()
        url = environ.get(preset.url_env, "").strip() if preset.url_env else ""
        if (key if preset.key_env else url):
            found.append(Discovered(preset.name, ProviderType.OPENAI_COMPATIBLE, url or preset.base_url, key,
                                    preset=preset.name))
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
