"""Budget periods in a tenant's time zone (UTC if the name is not a known zone: core.timezones)."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from billing.models import BudgetPeriod
from core.timezones import UTC, zone_of


@dataclass(frozen=True)
class Period:
    start: date  # first day counted
    end: date  # first day not counted (exclusive)
    resets_at: datetime  # when the amount starts over (rolling: when the oldest day drops off)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]


def local_today(tz_name: str, now: datetime | None = None) -> date:
    now = now or datetime.now(UTC)
    return now.astimezone(zone_of(tz_name)).date()


def period_for(period: str, tz_name: str, now: datetime | None = None) -> Period:
    """The period containing ``now`` (default: now), in the tenant's time zone."""
    zone = zone_of(tz_name)
    today = local_today(tz_name, now)
    if period == BudgetPeriod.DAY:
        start, end = today, today + timedelta(days=1)
    elif period == BudgetPeriod.WEEK:
        start = today - timedelta(days=today.weekday())
        end = start + timedelta(days=7)
    elif period == BudgetPeriod.MONTH:
        start = today.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    elif period == BudgetPeriod.ROLLING_30D:
        start, end = today - timedelta(days=29), today + timedelta(days=1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    resets_at = datetime.combine(end, time.min, tzinfo=zone)
    return Period(start=start, end=end, resets_at=resets_at)
