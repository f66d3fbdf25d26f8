"""Google Gemini's catalog: ``GET {base}/models`` (the Gemini API's ``models.list``), page by
page with ``pageToken``. ``supportedGenerationMethods`` tells a chat model
(``generateContent``) from an embedding one (``embedContent``); ``inputTokenLimit`` is the
context length. Vertex AI has no such list of its publisher's models under the same path, so a
Vertex provider's catalog is empty: its models are added by hand (see the README)."""

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from providers.adapters.headers import is_vertex
from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import UpstreamError, require_list
from providers.models import ModelMode, Provider

PAGE_SIZE = 1000  # the documented maximum
MAX_PAGES = 50
CHAT_METHOD = "generateContent"
EMBED_METHODS = frozenset({"embedContent", "batchEmbedContents"})


def catalog_entry(provider: Provider, item: Any) -> CatalogEntry | None:
    """The entry for one ``Model`` of the list: a chat model when it offers generateContent, an
    embedding model when it offers embedContent (called through batchEmbedContents); None for
    one the gateway cannot call (AQA, Imagen, Veo…)."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    name = item["name"].removeprefix("models/")
    methods = item.get("supportedGenerationMethods")
    methods = {m for m in methods if isinstance(m, str)} if isinstance(methods, list) else set()
    if not name:
        return None
    if CHAT_METHOD in methods:
        mode = ModelMode.CHAT
    elif methods & EMBED_METHODS:
        mode = ModelMode.EMBEDDING
    else:
        return None
    limit = item.get("inputTokenLimit")
    return entry_from_name(
        provider,
        name,
        display_name=str(item.get("displayName") or ""),
        context_length=limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None,
        mode=mode,
    )


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    """``GET /models?pageSize=1000`` then ``&pageToken=<nextPageToken>`` until a page has none."""
    if is_vertex(provider.base_url):
        return []
    entries: list[CatalogEntry] = []
    token = ""
    for _ in range(MAX_PAGES):
        url = f"{provider.base_url}/models?pageSize={PAGE_SIZE}"
        if token:
            url += f"&pageToken={quote(token, safe='')}"
        body = get(url)
        if not isinstance(body, dict):
            raise UpstreamError(f"{url} answered JSON that is not an object; is this the Gemini API?")
        for item in require_list(body, "models", url=url) if "models" in body else []:  # an empty page omits it
            entry = catalog_entry(provider, item)
            if entry is not None:
                entries.append(entry)
        token = body.get("nextPageToken")
        if not token:
            return entries
        if not isinstance(token, str):
            raise UpstreamError(f"{url} answered a nextPageToken that is not a string.")
    raise UpstreamError(f"Gemini's model list did not end after {MAX_PAGES} pages.")
