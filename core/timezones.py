"""The tenant's time zone, or UTC: one helper for pages, reports, budget periods and retention.

A tenant's ``timezone`` is validated when it is set through the API or the console, but a row
edited by hand (or a zone dropped from tzdata) may still name none; then its days are counted in
UTC and a warning is logged once per process for that name, rather than failing a request."""

import logging
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

UTC = ZoneInfo("UTC")


@lru_cache(maxsize=256)
def zone_of(name: str | None) -> ZoneInfo:
    """The zone called ``name``; UTC when it is empty or not a known zone (logged once)."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        log.warning("unknown time zone %r; counting its days in UTC", name)
        return UTC

