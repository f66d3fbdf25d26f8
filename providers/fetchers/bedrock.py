"""Amazon Bedrock's catalog: ``GET /foundation-models`` (ListFoundationModels) on the control
plane (``bedrock.{region}.amazonaws.com`` beside the runtime's ``bedrock-runtime.{region}…``;
see providers/base_urls.py :func:`~providers.base_urls.bedrock_control_url`), signed like the
runtime's requests (providers/fetchers/registry.py). One page holds every model.

Kept: models whose ``inferenceTypesSupported`` hold ``ON_DEMAND`` (callable by their id; the
``…:200k`` context variants and models only served through an inference profile, such as the
newest Claude ones, are not: add those by their profile id, ``us.anthropic.…``, by hand) and
that are ``ACTIVE``, with ``TEXT`` output (chat models) or, for Amazon Titan's text embeddings
(the ones the adapter translates), ``EMBEDDING`` output. Prices: genai-prices' ``aws`` list;
vision from ``inputModalities``."""

from collections.abc import Callable
from typing import Any

from providers.adapters.bedrock import TITAN_EMBED_PREFIX
from providers.base_urls import bedrock_control_url
from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import require_list
from providers.models import ModelMode, Provider


def catalog_entry(provider: Provider, item: Any) -> CatalogEntry | None:
    """The entry for one ``FoundationModelSummary``, or None for one the gateway cannot call."""
    if not isinstance(item, dict) or not isinstance(item.get("modelId"), str) or not item["modelId"]:
        return None
    outputs = item.get("outputModalities") if isinstance(item.get("outputModalities"), list) else []
    inference = item.get("inferenceTypesSupported") if isinstance(item.get("inferenceTypesSupported"), list) else []
    lifecycle = item.get("modelLifecycle") if isinstance(item.get("modelLifecycle"), dict) else {}
    if "ON_DEMAND" not in inference or lifecycle.get("status", "ACTIVE") != "ACTIVE":
        return None
    if "TEXT" in outputs:
        mode = ModelMode.CHAT
    elif "EMBEDDING" in outputs and item["modelId"].startswith(TITAN_EMBED_PREFIX):
        mode = ModelMode.EMBEDDING
    else:
        return None
    inputs = item.get("inputModalities") if isinstance(item.get("inputModalities"), list) else []
    name = str(item.get("modelName") or "")
    maker = str(item.get("providerName") or "")
    return entry_from_name(
        provider,
        item["modelId"],
        display_name=f"{maker} {name}".strip() if name and maker and not name.startswith(maker) else name,
        mode=mode,
        vision="IMAGE" in inputs,
    )


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    url = f"{bedrock_control_url(provider.base_url)}/foundation-models"
    entries = []
    for item in require_list(get(url), "modelSummaries", url=url):
        entry = catalog_entry(provider, item)
        if entry is not None:
            entries.append(entry)
    return entries
