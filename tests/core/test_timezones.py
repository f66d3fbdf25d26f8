"""core.timezones: the tenant's time zone, or UTC when its name is not a known zone."""

import logging
from datetime import UTC as DT_UTC
from datetime import datetime

import pytest

from core.timezones import UTC, zone_of


def test_a_known_zone_is_that_zone():
    zone = zone_of("Pacific/Auckland")
    assert zone.key == "Pacific/Auckland"
    # given 2026-11-21 20:00 UTC, when read in Auckland, then it is already Sunday morning
    assert datetime(2026, 11, 21, 20, tzinfo=DT_UTC).astimezone(zone).date().isoformat() == "2026-11-22"


@pytest.mark.parametrize("name", ["", None, "Nowhere/Atlantis", "../etc/passwd", "Europe", "utc\x00"])
def test_an_empty_or_unknown_name_is_utc(name):
    assert zone_of(name) is UTC
    assert zone_of(name).key == "UTC"


def test_an_unknown_name_is_logged_once(caplog):
    zone_of.cache_clear()
    with caplog.at_level(logging.WARNING, logger="core.timezones"):
        zone_of("Mars/Olympus_Mons")
        zone_of("Mars/Olympus_Mons")
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["unknown time zone 'Mars/Olympus_Mons'; counting its days in UTC"]
