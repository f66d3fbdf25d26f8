"""Money as people read it: one USD formatter for the console, the admin and alert messages.

``usd(Decimal("1234.5678"))`` is ``"$1,234.5678"``; ``-2.5`` is ``"-$2.5000"`` (a budget
overspent); a positive amount too small to show in ``places`` decimals is ``"<$0.0001"`` rather
than a misleading ``"$0.0000"``; ``None`` (the price is not known) is ``"unknown"``. Rounding is
half up. The console and the admin show 4 decimals (requests cost fractions of a cent); alert
messages and budget amounts show cents (``places=2``)."""

from decimal import ROUND_HALF_UP, Decimal

UNKNOWN = "unknown"


def usd(value: Decimal | int | float | str | None, *, places: int = 4) -> str:
    """``value`` in US dollars with ``places`` decimals and thousands separators (plain text)."""
    if value is None:
        return UNKNOWN
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    unit = Decimal(1).scaleb(-places)
    if 0 < amount < unit:
        return f"<${unit:f}"
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount).quantize(unit, rounding=ROUND_HALF_UP):,}"
