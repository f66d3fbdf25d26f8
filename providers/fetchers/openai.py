"""The catalog of OpenAI and OpenAI-compatible servers: ``GET {base}/models``, with the quirks of
the presets (providers/presets.py): a built-in list for a service without a usable listing
(Perplexity), a bare JSON array instead of ``{"data": [...]}`` and listed prices (Together)."""

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import require_list
from providers.models import MAX_PRICE, ModelMode, PriceSource, Provider
from providers.presets import provider_preset

PRICE_STEP = Decimal("0.000000000001")  # the 12 decimal places ProviderModel keeps
# A listing's "type" (Together's) that the gateway can serve; other types (image, audio, rerank,
# moderation) are left out of the catalog.
_SERVED_TYPES = {"chat": None, "language": None, "code": None, "embedding": ModelMode.EMBEDDING}


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    preset = provider_preset(provider)
    if preset is not None and preset.models:
        return [entry_from_name(provider, model_id) for model_id in preset.models]
    url = f"{provider.base_url}/models"
    body = get(url)
    items = body if isinstance(body, list) else require_list(body, "data", url=url)
    entries = []
    for item in items:
        if not (isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]):
            continue
        kind = item.get("type")
        if isinstance(kind, str) and kind not in _SERVED_TYPES:
            continue
        entry = entry_from_name(
            provider, item["id"], context_length=_context(item),
            display_name=item["display_name"] if isinstance(item.get("display_name"), str) else "",
            mode=_SERVED_TYPES.get(kind) if isinstance(kind, str) else None,
        )
        if preset is not None and preset.prices_listed:
            entry = _with_listed_prices(entry, item.get("pricing"))
        entries.append(entry)
    return entries


def _context(item: dict) -> int | None:
    # Not in OpenAI's own schema, but vLLM (max_model_len), Groq (context_window), Mistral
    # (max_context_length), Together and Fireworks (context_length) report one.
    for key in ("context_length", "context_window", "max_model_len", "max_context_length"):
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _with_listed_prices(entry: CatalogEntry, pricing: Any) -> CatalogEntry:
    """Together lists ``pricing.input`` / ``pricing.output`` in USD per million tokens; 0 and 0
    means the model runs only on a dedicated (hourly) endpoint, so the catalog's price stays."""
    if not isinstance(pricing, dict):
        return entry
    input_price, output_price = _price(pricing.get("input")), _price(pricing.get("output"))
    if input_price is None or output_price is None or input_price == output_price == 0:
        return entry
    return replace(entry, input_price=input_price, output_price=output_price, cached_input_price=None,
                   cache_write_price=None, price_source=PriceSource.SYNCED)


def _price(value: Any) -> Decimal | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value)).quantize(PRICE_STEP)
    except InvalidOperation:
        return None
    return price if price.is_finite() and 0 <= price <= MAX_PRICE else None
