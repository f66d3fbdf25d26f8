"""Anthropic's catalog: ``GET {base}/v1/models``, page by page."""

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import UpstreamError, require_list
from providers.models import Provider

PAGE_SIZE = 1000
MAX_PAGES = 50


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    """``GET /v1/models`` follows ``has_more`` / ``last_id`` pages."""
    entries: list[CatalogEntry] = []
    after = None
    for _ in range(MAX_PAGES):
        url = f"{provider.base_url}/v1/models?limit={PAGE_SIZE}"
        if after:
            url += f"&after_id={quote(after, safe='')}"
        body = get(url)
        for item in require_list(body, "data", url=url):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                context = item.get("max_input_tokens")
                entries.append(
                    entry_from_name(
                        provider,
                        item["id"],
                        display_name=str(item.get("display_name") or ""),
                        context_length=context if isinstance(context, int) else None,
                        tools=True,  # every model the Messages API lists takes tools
                    )
                )
        if not body.get("has_more"):
            return entries
        after = body.get("last_id")
        if not after:
            raise UpstreamError(f"{url} said has_more but gave no last_id.")
    raise UpstreamError(f"Anthropic's model list did not end after {MAX_PAGES} pages.")
