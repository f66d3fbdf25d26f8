"""The ``usd`` template filter every console and support page shows costs with."""

from decimal import Decimal

import pytest
from django.template import Context, Template


@pytest.mark.parametrize("value, shown", [
    (None, '<span class="unknown">unknown</span>'),
    (Decimal(0), "$0.0000"),
    (Decimal("0.00000004"), "&lt;$0.0001"),
    (Decimal("0.00005"), "&lt;$0.0001"),
    (Decimal("0.0001"), "$0.0001"),
    (Decimal("1.23455"), "$1.2346"),  # half up, as floatformat did
    (Decimal("1234567.5"), "$1,234,567.5000"),
    (Decimal("-2.5"), "-$2.5000"),  # a budget overspent: remaining is negative
    (3, "$3.0000"),
    (0.5, "$0.5000"),
    ("not money", ""),
])
def test_usd_shows_costs_the_console_way(value, shown):
    assert Template("{{ v|usd }}").render(Context({"v": value})) == shown
