"""Ollama's catalog: the local models of ``GET {base}/api/tags`` (free: self-hosted)."""

from collections.abc import Callable
from typing import Any

from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import require_list
from providers.models import ModelMode, Provider


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    url = f"{provider.base_url}/api/tags"
    entries = []
    for item in require_list(get(url), "models", url=url):
        if not isinstance(item, dict):
            continue
        name = item.get("model") or item.get("name")
        if not isinstance(name, str) or not name:
            continue
        details = item.get("details") if isinstance(item.get("details"), dict) else {}
        capabilities = item.get("capabilities") if isinstance(item.get("capabilities"), list) else None
        context = details.get("context_length")
        mode = None
        if capabilities is not None:
            embeds_only = "embedding" in capabilities and "completion" not in capabilities
            mode = ModelMode.EMBEDDING if embeds_only else ModelMode.CHAT
        elif details.get("embedding_length") and "bert" in str(details.get("family", "")):
            mode = ModelMode.EMBEDDING
        entries.append(
            entry_from_name(
                provider,
                name,
                context_length=context if isinstance(context, int) else None,
                mode=mode,
                tools=("tools" in capabilities) if capabilities is not None else None,
                vision=("vision" in capabilities) if capabilities is not None else None,
            )
        )
    return entries
