"""What a provider says it offers, normalised: one ``CatalogEntry`` per model."""

from dataclasses import dataclass, fields
from decimal import Decimal

from providers.models import ModelMode, PriceSource


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
    price_source: str = PriceSource.UNKNOWN


CATALOG_FIELDS = tuple(f.name for f in fields(CatalogEntry) if f.name != "model_id")
PRICE_FIELDS = ("input_price", "output_price", "cached_input_price", "price_source")
