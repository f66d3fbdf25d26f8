"""The catalog of OpenAI and OpenAI-compatible servers: ``GET {base}/models``."""

from collections.abc import Callable
from typing import Any

from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import require_list
from providers.models import Provider


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    url = f"{provider.base_url}/models"
    entries = []
    for item in require_list(get(url), "data", url=url):
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            entries.append(entry_from_name(provider, item["id"], context_length=_context(item)))
    return entries


def _context(item: dict) -> int | None:
    # Not in OpenAI's own schema, but vLLM (max_model_len), Fireworks and others report one.
    for key in ("context_length", "context_window", "max_model_len", "max_context_length"):
        value = item.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None
