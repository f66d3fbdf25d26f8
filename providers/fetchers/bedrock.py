"""Amazon Bedrock's catalog, from the control plane (``bedrock.{region}.amazonaws.com`` beside
the runtime's ``bedrock-runtime.{region}…``; see providers/base_urls.py
:func:`~providers.base_urls.bedrock_control_url`), every request signed like the runtime's
(providers/fetchers/registry.py):

- ``GET /foundation-models`` (ListFoundationModels, one page): the models that are ``ACTIVE``
  and callable by their id (``ON_DEMAND`` in ``inferenceTypesSupported``; not the ``…:200k``
  provisioned variants), with ``TEXT`` output as chat models or, for Amazon Titan's text
  embeddings and Cohere Embed (the ones the adapter translates), ``EMBEDDING`` output as
  embedding models;
- ``GET /inference-profiles?type=SYSTEM_DEFINED`` (ListInferenceProfiles, paged with
  ``nextToken``): the ``ACTIVE`` cross-region profiles (``us.anthropic.…``, ``global.…``) of
  those models, the only way to call the newest ones (whose foundation entry says
  ``INFERENCE_PROFILE`` only). A 403 or 404 there (a role without
  ``bedrock:ListInferenceProfiles``, a proxy without it) leaves the profiles out rather than
  failing the sync.

Prices: genai-prices' ``aws`` list (a profile id finds its model's); vision from the
foundation model's ``inputModalities``."""

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from providers.adapters.bedrock import embedding_model
from providers.base_urls import bedrock_control_url
from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import UpstreamError, require_list
from providers.models import ModelMode, Provider

PAGE_SIZE = 1000  # ListInferenceProfiles' maximum
MAX_PAGES = 50


def _strings(item: dict[str, Any], key: str) -> list[str]:
    value = item.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _active(item: dict[str, Any]) -> bool:
    lifecycle = item.get("modelLifecycle") if isinstance(item.get("modelLifecycle"), dict) else {}
    return lifecycle.get("status", item.get("status", "ACTIVE")) == "ACTIVE"


def catalog_entry(provider: Provider, item: Any) -> CatalogEntry | None:
    """The entry for one ``FoundationModelSummary``, or None for one the gateway cannot call."""
    if not isinstance(item, dict) or not isinstance(item.get("modelId"), str) or not item["modelId"]:
        return None
    outputs = _strings(item, "outputModalities")
    if "ON_DEMAND" not in _strings(item, "inferenceTypesSupported") or not _active(item):
        return None
    if "TEXT" in outputs:
        mode = ModelMode.CHAT
    elif "EMBEDDING" in outputs and embedding_model(item["modelId"]):
        mode = ModelMode.EMBEDDING
    else:
        return None
    name = str(item.get("modelName") or "")
    maker = str(item.get("providerName") or "")
    return entry_from_name(
        provider,
        item["modelId"],
        display_name=f"{maker} {name}".strip() if name and maker and not name.startswith(maker) else name,
        mode=mode,
        vision="IMAGE" in _strings(item, "inputModalities"),
    )


def profile_entry(provider: Provider, item: Any, foundations: dict[str, dict[str, Any]]) -> CatalogEntry | None:
    """The entry for one ``InferenceProfileSummary`` of a text model or a translated embedding
    model (Cohere Embed v4's ``us.``/``global.`` profiles), or None."""
    if not isinstance(item, dict) or not isinstance(item.get("inferenceProfileId"), str) or not _active(item):
        return None
    models = item.get("models") if isinstance(item.get("models"), list) else []
    arn = models[0].get("modelArn") if models and isinstance(models[0], dict) else None
    foundation = foundations.get(arn.rsplit("/", 1)[-1]) if isinstance(arn, str) else None
    if foundation is None:
        return None
    outputs = _strings(foundation, "outputModalities")
    if "TEXT" in outputs:
        mode = ModelMode.CHAT
    elif "EMBEDDING" in outputs and embedding_model(str(foundation.get("modelId"))):
        mode = ModelMode.EMBEDDING
    else:
        return None
    return entry_from_name(
        provider,
        item["inferenceProfileId"],
        display_name=str(item.get("inferenceProfileName") or ""),
        mode=mode,
        vision="IMAGE" in _strings(foundation, "inputModalities"),
    )


def _profiles(provider: Provider, get: Callable[[str], Any], root: str,
              foundations: dict[str, dict[str, Any]]) -> list[CatalogEntry]:
    entries: list[CatalogEntry] = []
    token = ""
    for _ in range(MAX_PAGES):
        url = f"{root}/inference-profiles?maxResults={PAGE_SIZE}&type=SYSTEM_DEFINED"
        if token:
            url += f"&nextToken={quote(token, safe='')}"
        try:
            body = get(url)
        except UpstreamError as exc:
            if exc.upstream_status in (403, 404):
                return entries
            raise
        for item in require_list(body, "inferenceProfileSummaries", url=url):
            entry = profile_entry(provider, item, foundations)
            if entry is not None:
                entries.append(entry)
        token = body.get("nextToken")
        if not token:
            return entries
        if not isinstance(token, str):
            raise UpstreamError(f"{url} answered a nextToken that is not a string.")
    raise UpstreamError(f"Bedrock's inference profile list did not end after {MAX_PAGES} pages.")


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    root = bedrock_control_url(provider.base_url)
    url = f"{root}/foundation-models"
    items = [item for item in require_list(get(url), "modelSummaries", url=url) if isinstance(item, dict)]
    entries = [entry for entry in (catalog_entry(provider, item) for item in items) if entry is not None]
    foundations = {item["modelId"]: item for item in items if isinstance(item.get("modelId"), str)}
    return entries + _profiles(provider, get, root, foundations)
