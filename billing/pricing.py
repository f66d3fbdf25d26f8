"""The cost of one request, in Decimal USD, from its tokens and the model's prices (USD per
million tokens) in force when it ran."""

from decimal import Decimal

PER_MILLION = Decimal(1_000_000)
STEP = Decimal("0.000000000001")  # 12 places, as stored


def usage_cost(
    *,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    input_price: Decimal | None,
    output_price: Decimal | None,
    cached_input_price: Decimal | None,
) -> Decimal | None:
    """input × input price + cached × cached price + output × output price.

    ``input_tokens`` counts every prompt token, cached ones included, so the uncached part is
    the difference. Reasoning tokens are part of ``output_tokens`` and priced as output. With
    no cached price, cached tokens cost the input price. An unknown price gives None (the
    ledger flags it), never $0."""
    if input_price is None or output_price is None:
        return None
    cached = min(cached_input_tokens, input_tokens)
    cached_price = cached_input_price if cached_input_price is not None else input_price
    total = (input_tokens - cached) * input_price + cached * cached_price + output_tokens * output_price
    return (total / PER_MILLION).quantize(STEP)
