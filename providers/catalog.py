"""What a provider says it offers, normalised: one ``CatalogEntry`` per model."""

from dataclasses import dataclass, fields
from decimal import Decimal

from providers.models import ModelMode, PriceSource, Provider, ProviderType
from providers.presets import provider_preset
from providers.pricing import catalog_prices, guess_mode, guess_tools, guess_vision


@dataclass(frozen=True)
class CatalogEntry:
    model_id: str
    display_name: str = ""
    mode: str = ModelMode.CHAT
    context_length: int | None = None
    supports_tools: bool = False
    supports_vision: bool = False
    input_price: Decimal | None = None  # USD per million tokens
    output_price: Decimal | None = None
    cached_input_price: Decimal | None = None
    cache_write_price: Decimal | None = None
    price_source: str = PriceSource.UNKNOWN


CATALOG_FIELDS = tuple(f.name for f in fields(CatalogEntry) if f.name != "model_id")
PRICE_FIELDS = ("input_price", "output_price", "cached_input_price", "cache_write_price", "price_source")


def entry_from_name(
    provider: Provider,
    model_id: str,
    *,
    display_name: str = "",
    context_length: int | None = None,
    mode: str | None = None,
    tools: bool | None = None,
    vision: bool | None = None,
) -> CatalogEntry:
    """An entry for a provider that reports little more than a name: capabilities the
    provider did not state come from name patterns, prices from the genai-prices catalog
    (self-hosted models, Ollama's and those of a local preset such as vLLM, cost nothing per token)."""
    mode = mode or guess_mode(model_id)
    preset = provider_preset(provider)
    if provider.provider_type == ProviderType.OLLAMA or (preset is not None and preset.local):
        prices = None
        price_fields = {"input_price": Decimal(0), "output_price": Decimal(0),
                        "cached_input_price": Decimal(0), "cache_write_price": Decimal(0),
                        "price_source": PriceSource.LOCAL}
    else:
        prices = catalog_prices(provider=provider, model_id=model_id)
        price_fields = (
            {"input_price": prices.input, "output_price": prices.output,
             "cached_input_price": prices.cached_input, "cache_write_price": prices.cache_write,
             "price_source": PriceSource.CATALOG}
            if prices else {}
        )
    return CatalogEntry(
        model_id=model_id,
        display_name=display_name,
        mode=mode,
        context_length=context_length,
        supports_tools=(tools if tools is not None else guess_tools(model_id)) and mode == ModelMode.CHAT,
        supports_vision=(vision if vision is not None else guess_vision(model_id)) and mode == ModelMode.CHAT,
        **price_fields,
    )
