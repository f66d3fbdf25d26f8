"""core.money.usd: the one USD formatter (console, admin, alert messages)."""

from decimal import Decimal

import pytest

from core.money import usd


@pytest.mark.parametrize("value, shown", [
    (None, "unknown"),
    (Decimal(0), "$0.0000"),
    (Decimal("-0"), "$0.0000"),
    (Decimal("0.00000004"), "<$0.0001"),  # a sliver is not shown as nothing
    (Decimal("0.0001"), "$0.0001"),
    (Decimal("1.23455"), "$1.2346"),  # half up
    (Decimal("1234567.5"), "$1,234,567.5000"),
    (Decimal("-2.5"), "-$2.5000"),  # a budget overspent
    (3, "$3.0000"),
    (0.1, "$0.1000"),  # a float goes through its text, not its binary value
    ("12.5", "$12.5000"),
])
def test_usd_shows_four_places_by_default(value, shown):
    assert usd(value) == shown


@pytest.mark.parametrize("value, shown", [
    (Decimal("165.25"), "$165.25"),
    (Decimal("200"), "$200.00"),
    (Decimal("1234567.125"), "$1,234,567.13"),  # half up
    (Decimal("0.004"), "<$0.01"),
    (Decimal(0), "$0.00"),
    (None, "unknown"),
])
def test_usd_in_cents(value, shown):
    assert usd(value, places=2) == shown
