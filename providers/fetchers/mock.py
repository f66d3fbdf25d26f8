"""The built-in mock provider's catalog: fixed, with prices, and no network."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from providers.catalog import CatalogEntry
from providers.models import ModelMode, PriceSource, Provider

CATALOG = (
    CatalogEntry(
        model_id="mock-fast",
        display_name="Mock Fast",
        context_length=16_384,
        supports_tools=True,
        input_price=Decimal("0.10"),
        output_price=Decimal("0.40"),
        cached_input_price=Decimal("0.025"),
        price_source=PriceSource.SYNCED,
    ),
    CatalogEntry(
        model_id="mock-smart",
        display_name="Mock Smart",
        context_length=128_000,
        supports_tools=True,
        supports_vision=True,
        input_price=Decimal("2.50"),
        output_price=Decimal("10.00"),
        cached_input_price=Decimal("1.25"),
        price_source=PriceSource.SYNCED,
    ),
    CatalogEntry(
        model_id="mock-embed",
        display_name="Mock Embeddings",
        mode=ModelMode.EMBEDDING,
        context_length=8_192,
        input_price=Decimal("0.02"),
        output_price=Decimal("0"),
        price_source=PriceSource.SYNCED,
    ),
)


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    """The fixed catalog; ``get`` is never called."""
    return list(CATALOG)
