"""One catalog fetcher per provider type (the mock an ordinary entry), and ``catalog_fetch``,
which runs the right one through the guarded HTTP client (core/net.py)."""

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx
from django.conf import settings

from core.net import fetch_json, guarded_client
from providers.catalog import CatalogEntry
from providers.fetchers import anthropic, azure, bedrock, gemini, mock, ollama, openai, openrouter
from providers.fetchers.base import raise_for_status, request_headers, request_signature
from providers.models import Provider, ProviderType
from providers.tokens import provider_token_refused

# A fetcher takes the provider and ``get(url)`` (the JSON of a successful GET, or a
# TollgateError) and returns its catalog.
Fetcher = Callable[[Provider, Callable[[str], Any]], list[CatalogEntry]]

FETCHERS: dict[str, Fetcher] = {
    ProviderType.OPENAI: openai.fetch_catalog,
    ProviderType.OPENAI_COMPATIBLE: openai.fetch_catalog,
    ProviderType.OPENROUTER: openrouter.fetch_catalog,
    ProviderType.AZURE: azure.fetch_catalog,
    ProviderType.ANTHROPIC: anthropic.fetch_catalog,
    ProviderType.OLLAMA: ollama.fetch_catalog,
    ProviderType.GEMINI: gemini.fetch_catalog,
    ProviderType.BEDROCK: bedrock.fetch_catalog,
    ProviderType.MOCK: mock.fetch_catalog,
}


def catalog_fetch(provider: Provider) -> list[CatalogEntry]:
    """The provider's catalog, or a TollgateError whose message says what went wrong. The HTTP
    client is opened on the first request, so a fetcher that needs none (the mock) opens none."""
    fetcher = FETCHERS[provider.provider_type]
    name = provider.display_name or provider.name
    with ExitStack() as stack:
        client: httpx.Client | None = None

        def get(url: str) -> Any:
            nonlocal client
            if client is None:
                client = stack.enter_context(guarded_client(
                    timeout=provider.timeout_seconds,
                    headers=request_headers(provider),
                    max_bytes=settings.PROVIDER_MAX_RESPONSE_BYTES,
                ))
            status, _, body, snippet = fetch_json(client, "GET", url, headers=request_signature(provider, "GET", url))
            if status == 401 and (token := client.headers.get("authorization", "").removeprefix("Bearer ")):
                provider_token_refused(provider, token)  # a minted token: the next sync mints anew
            raise_for_status(provider_name=name, url=url, status=status, body=body, snippet=snippet)
            return body

        return fetcher(provider, get)
