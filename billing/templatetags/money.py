"""The ``usd`` template filter (a builtin, see settings.TEMPLATES): a cost as the console
shows it — "$1,234.5678", "-$2.5000" (over a budget), "<$0.0001" for a sliver, "$0.0000",
or "unknown" when the price is not known (None). A filter rather than an included template: the support list renders
a few hundred of these per page."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

SLIVER = Decimal("0.0001")


@register.filter
def usd(value) -> SafeString | str:
    if value is None or value == "":
        return mark_safe('<span class="unknown">unknown</span>')
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    if amount == 0:
        return "$0.0000"
    if 0 < amount < SLIVER:
        return mark_safe("&lt;$0.0001")
    sign = "-" if amount < 0 else ""
    return format_html("{}${}", sign, f"{abs(amount).quantize(SLIVER, rounding=ROUND_HALF_UP):,}")
