"""Google Gemini's catalog: ``GET {base}/models`` (the Gemini API's ``models.list``), page by
page with ``pageToken``. ``supportedGenerationMethods`` tells a chat model
(``generateContent``) from an embedding one (``embedContent``); ``inputTokenLimit`` is the
context length. Vertex AI has no such list of its publisher's models at the v1 root, so a Vertex
provider's catalog is the list Tollgate knows (:func:`vertex_catalog`), no request made."""

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from providers.adapters.headers import is_vertex
from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import UpstreamError, require_list
from providers.models import ModelMode, Provider
from providers.pricing import known_models

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


# Vertex AI's catalog: Google's own Gemini models genai-prices knows (``gemini-<version>-…``, the
# ids Vertex's publishers/google path takes), without the speech (``-tts``), image-output
# (``-image``) and Live API (``-live``) ones, which generateContent cannot serve as chat; the 1.x
# generation is retired. The text embedding models are Vertex's documented ones.
VERTEX_CHAT = re.compile(r"^gemini-[2-9](\.\d+)?-")
VERTEX_CHAT_EXCLUDED = re.compile(r"-tts\b|-image\b|-live\b|(^|-)live-")
VERTEX_EMBEDDING_MODELS = ("gemini-embedding-001", "text-embedding-005", "text-multilingual-embedding-002")
VERTEX_EMBED_INPUT = 2048  # tokens a text (longer ones are cut short by Vertex)


def vertex_catalog(provider: Provider) -> list[CatalogEntry]:
    """The chat models of genai-prices' ``google`` list that Vertex AI serves under
    ``publishers/google`` (see ``VERTEX_CHAT``) and Vertex's text embedding models, priced as
    genai-prices prices them (those it does not know stay unpriced)."""
    entries = [
        entry_from_name(provider, model.model_id, display_name=model.name, context_length=model.context_window,
                        mode=ModelMode.CHAT, tools=True, vision=True)
        for model in known_models("google")
        if VERTEX_CHAT.match(model.model_id) and not VERTEX_CHAT_EXCLUDED.search(model.model_id)
    ]
    entries += [entry_from_name(provider, model_id, mode=ModelMode.EMBEDDING, context_length=VERTEX_EMBED_INPUT)
                for model_id in VERTEX_EMBEDDING_MODELS]
    return entries


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    """``GET /models?pageSize=1000`` then ``&pageToken=<nextPageToken>`` until a page has none
    (Vertex AI: :func:`vertex_catalog`, no request)."""
    if is_vertex(provider.base_url):
        return vertex_catalog(provider)
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
