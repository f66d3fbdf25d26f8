"""The cost of one request, in Decimal USD, from its tokens and the model's prices (USD per
million tokens) in force when it ran."""

from decimal import Decimal

PER_MILLION = Decimal(1_000_000)
STEP = Decimal("0.000000000001")  # 12 places, as stored
# What one ledger row holds (billing.models.UsageLog): token counts are 32-bit integers and a
# cost has 8 whole digits. Usage an upstream reports is clamped to these where it enters
# (providers.adapters.types.Usage), and a request of MAX_TOKENS in and out at the dearest price
# a model may have (providers.models.MAX_PRICE) costs under $43 million: it fits.
MAX_TOKENS = 2**31 - 1
MAX_COST = Decimal("99999999.999999999999")


def usage_cost(
    *,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    input_price: Decimal | None,
    output_price: Decimal | None,
    cached_input_price: Decimal | None,
    cache_write_tokens: int = 0,
    cache_write_price: Decimal | None = None,
) -> Decimal | None:
    """uncached input × input price + cache reads × cached price + cache writes × cache-write
    price + output × output price.

    ``input_tokens`` counts every prompt token, cache reads and writes included (Anthropic's
    ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``), so the uncached
    part is what is left. Reasoning tokens are part of ``output_tokens`` and priced as output.
    With no cached price, cache reads cost the input price; with no cache-write price, cache
    writes do. An unknown input or output price gives None (the ledger flags it), never $0."""
    if input_price is None or output_price is None:
        return None
    cached = min(cached_input_tokens, input_tokens)
    written = min(cache_write_tokens, input_tokens - cached)
    cached_price = cached_input_price if cached_input_price is not None else input_price
    write_price = cache_write_price if cache_write_price is not None else input_price
    total = ((input_tokens - cached - written) * input_price + cached * cached_price + written * write_price
             + output_tokens * output_price)
    return (total / PER_MILLION).quantize(STEP)
