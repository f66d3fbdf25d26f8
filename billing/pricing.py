"""The cost of one request, in Decimal USD, from its tokens and the model's prices (USD per
million tokens) in force when it ran; and an upstream's usage bounded to what a ledger row
holds."""

from decimal import Decimal

from providers.adapters.types import Deployment, Usage

PER_MILLION = Decimal(1_000_000)
STEP = Decimal("0.000000000001")  # 12 places, as stored
# What one ledger row holds (billing.models.UsageLog): token counts are 32-bit integers and a
# cost has 8 whole digits. Usage an upstream reports is clamped to these where it becomes a
# row (usage_bounded), and a request of MAX_TOKENS in and out at the dearest price
# a model may have (providers.models.MAX_PRICE) costs under $43 million: it fits.
MAX_TOKENS = 2**31 - 1
MAX_COST = Decimal("99999999.999999999999")
ZERO = Decimal(0)
TOKEN_COUNTS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
                "reasoning_tokens")
# Anthropic prices a prompt-cache write kept for an hour at twice the input price (a 5-minute
# write at the model's cache-write price, 1.25 times); catalogs carry only the 5-minute price.
CACHE_WRITE_1H_INPUT_MULTIPLE = Decimal(2)


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
    cache_write_1h_tokens: int = 0,
) -> Decimal | None:
    """uncached input × input price + cache reads × cached price + cache writes × cache-write
    price + output × output price. Of the cache writes, the ``cache_write_1h_tokens`` kept for
    an hour cost ``CACHE_WRITE_1H_INPUT_MULTIPLE`` × the input price instead.

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
    hour = min(cache_write_1h_tokens, written)
    total = ((input_tokens - cached - written) * input_price + cached * cached_price
             + (written - hour) * write_price + hour * input_price * CACHE_WRITE_1H_INPUT_MULTIPLE
             + output_tokens * output_price)
    return (total / PER_MILLION).quantize(STEP)


def deployment_cost(deployment: Deployment, usage: Usage) -> Decimal | None:
    """What ``usage`` costs at ``deployment``'s prices (None when they are unknown)."""
    return usage_cost(
        input_tokens=usage.input_tokens, cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens, cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens,
        input_price=deployment.input_price, output_price=deployment.output_price,
        cached_input_price=deployment.cached_input_price, cache_write_price=deployment.cache_write_price,
    )


def usage_bounded(usage: Usage) -> Usage:
    """Clamp every count and the reported cost of ``usage``, in place, to what a ledger row
    holds (a tenant's upstream may report anything), flagging ``clamped``; the cost is rounded
    to the places stored. The one place usage is bounded: where a request becomes a row."""
    for name in TOKEN_COUNTS:
        value = getattr(usage, name)
        if not 0 <= value <= MAX_TOKENS:
            setattr(usage, name, int(min(max(value, 0), MAX_TOKENS)))
            usage.clamped = True
    cost = usage.provider_cost
    if cost is not None:
        if not 0 <= cost <= MAX_COST:
            cost = min(max(cost, ZERO), MAX_COST)
            usage.clamped = True
        if cost.as_tuple().exponent < -12:  # more places than stored: rounded, not refused
            cost = cost.quantize(STEP)
        usage.provider_cost = cost
    return usage
