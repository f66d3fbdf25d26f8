"""The built-in ``mock`` provider: no network, a fixed catalog, deterministic answers.
Used by the embedded demo and by tests."""

from decimal import Decimal

from providers.catalog import CatalogEntry
from providers.models import ModelMode, PriceSource

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


def fetch_catalog() -> list[CatalogEntry]:
    return list(CATALOG)
