"""The ``usd`` template filter (a builtin, see settings.TEMPLATES): ``core.money.usd`` for
templates — "$1,234.5678", "-$2.5000" (over a budget), "&lt;$0.0001" for a sliver, "$0.0000",
or a styled "unknown" when the price is not known (None). A filter rather than an included
template: the support list renders a few hundred of these per page."""

from decimal import Decimal, InvalidOperation

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from core.money import UNKNOWN
from core.money import usd as usd_text

register = template.Library()


@register.filter
def usd(value) -> SafeString | str:
    if value is None or value == "":
        return mark_safe(f'<span class="unknown">{UNKNOWN}</span>')
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    return escape(usd_text(amount))
