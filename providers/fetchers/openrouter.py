"""OpenRouter's catalog: ``GET {base}/models``, which reports prices and capabilities."""

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from providers.catalog import CatalogEntry
from providers.fetchers.base import require_list
from providers.models import ModelMode, PriceSource, Provider
from providers.pricing import guess_mode, guess_tools, guess_vision

PER_MILLION = Decimal(1_000_000)
PRICE_STEP = Decimal("0.000000000001")  # the 12 decimal places ProviderModel keeps


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    url = f"{provider.base_url}/models"
    entries = []
    for item in require_list(get(url), "data", url=url):
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            entries.append(_entry(item))
    return entries


def _entry(item: dict) -> CatalogEntry:
    model_id = item["id"]
    arch = item.get("architecture") if isinstance(item.get("architecture"), dict) else {}
    inputs = arch.get("input_modalities") if isinstance(arch.get("input_modalities"), list) else None
    outputs = arch.get("output_modalities") if isinstance(arch.get("output_modalities"), list) else None
    params = item.get("supported_parameters") if isinstance(item.get("supported_parameters"), list) else None
    pricing = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
    input_price = _per_million(pricing.get("prompt"))
    output_price = _per_million(pricing.get("completion"))
    priced = input_price is not None and output_price is not None
    context = item.get("context_length")
    if outputs is not None and "embeddings" in outputs:
        mode = ModelMode.EMBEDDING
    else:
        mode = guess_mode(model_id) if outputs is None else ModelMode.CHAT
    return CatalogEntry(
        model_id=model_id,
        display_name=str(item.get("name") or ""),
        mode=mode,
        context_length=context if isinstance(context, int) and context > 0 else None,
        supports_tools=("tools" in params) if params is not None else guess_tools(model_id),
        supports_vision=("image" in inputs) if inputs is not None else guess_vision(model_id),
        input_price=input_price if priced else None,
        output_price=output_price if priced else None,
        cached_input_price=_per_million(pricing.get("input_cache_read")) if priced else None,
        cache_write_price=_per_million(pricing.get("input_cache_write")) if priced else None,
        price_source=PriceSource.SYNCED if priced else PriceSource.UNKNOWN,
    )


def _per_million(value: Any) -> Decimal | None:
    """OpenRouter prices are strings in USD per token; "-1" means "varies" (routers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value))
        if price < 0 or not price.is_finite():
            return None
        return (price * PER_MILLION).quantize(PRICE_STEP)
    except InvalidOperation:  # not a number, or too many digits to quantize (an absurd price)
        return None
