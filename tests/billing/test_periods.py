"""Budget periods in the tenant's time zone, and what the rollups count in them."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.periods import period_for
from billing.selectors import budget_period, budget_spent
from tests.billing.conftest import add_spend, make_budget

UTC = ZoneInfo("UTC")
AKL, LAX = "Pacific/Auckland", "America/Los_Angeles"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_one_instant_is_a_different_day_week_and_month_in_auckland_and_los_angeles():
    now = at("2026-03-01T12:00")  # Auckland: Mon 2 March 01:00 (NZDT); Los Angeles: Sun 1 March 04:00 (PST)
    akl_day, lax_day = period_for("day", AKL, now), period_for("day", LAX, now)
    assert (akl_day.start, akl_day.end) == (date(2026, 3, 2), date(2026, 3, 3))
    assert (lax_day.start, lax_day.end) == (date(2026, 3, 1), date(2026, 3, 2))
    assert akl_day.resets_at == datetime(2026, 3, 3, tzinfo=ZoneInfo(AKL))
    assert akl_day.resets_at.astimezone(UTC) == at("2026-03-02T11:00")

    # Weeks start on Monday: Auckland's new week began at its midnight, Los Angeles is on Sunday.
    assert period_for("week", AKL, now).start == date(2026, 3, 2)
    assert period_for("week", LAX, now).start == date(2026, 2, 23)
    assert period_for("week", LAX, now).end == date(2026, 3, 2)

    assert period_for("month", AKL, now).start == date(2026, 3, 1)
    lax_month = period_for("month", LAX, now)
    assert (lax_month.start, lax_month.end) == (date(2026, 3, 1), date(2026, 4, 1))

    earlier = at("2026-03-01T07:00")  # Auckland 20:00 on 1 March, Los Angeles 23:00 on 28 February
    assert period_for("month", AKL, earlier).start == date(2026, 3, 1)
    feb = period_for("month", LAX, earlier)
    assert (feb.start, feb.end) == (date(2026, 2, 1), date(2026, 3, 1))
    assert feb.resets_at.astimezone(UTC) == at("2026-03-01T08:00")


@pytest.mark.parametrize(
    "today, start, end",
    [
        ("2026-12-31", date(2026, 12, 1), date(2027, 1, 1)),  # the year rolls over
        ("2028-02-29", date(2028, 2, 1), date(2028, 3, 1)),  # leap day
        ("2026-01-01", date(2026, 1, 1), date(2026, 2, 1)),
    ],
)
def test_calendar_month_boundaries(today, start, end):
    period = period_for("month", "UTC", at(f"{today}T12:00"))
    assert (period.start, period.end) == (start, end)
    assert period.days()[0] == start and period.days()[-1] == date.fromordinal(end.toordinal() - 1)


def test_week_runs_monday_to_sunday():
    for day in range(16, 23):  # Mon 16 .. Sun 22 November 2026
        period = period_for("week", "UTC", at(f"2026-11-{day}T09:00"))
        assert (period.start, period.end) == (date(2026, 11, 16), date(2026, 11, 23))
        assert period.start.weekday() == 0


def test_rolling_30_days_ends_today_and_resets_as_days_drop_off():
    period = period_for("rolling_30d", LAX, at("2026-03-10T20:00"))  # 13:00 on 10 March in LA
    assert (period.start, period.end) == (date(2026, 2, 9), date(2026, 3, 11))
    assert len(period.days()) == 30
    assert period.resets_at == datetime(2026, 3, 11, tzinfo=ZoneInfo(LAX))


def test_month_resets_at_local_midnight_across_a_dst_change():
    # Los Angeles moves to PDT on 8 March 2026: April starts at 07:00 UTC, not 08:00.
    period = period_for("month", LAX, at("2026-03-20T12:00"))
    assert period.resets_at.astimezone(UTC) == at("2026-04-01T07:00")


def test_unknown_period_is_refused():
    with pytest.raises(ValueError, match="unknown budget period"):
        period_for("fortnight", "UTC")


@pytest.mark.django_db
def test_cost_counts_in_the_period_of_its_local_day(world):
    """The rollups are keyed by the tenant's local day; a budget sums the local days of its
    period, so the same UTC instant falls in different months for the two tenants."""
    akl, lax = world.tenant, world.other
    akl.timezone, lax.timezone = AKL, LAX
    akl.save()
    lax.save()
    akl_budget = make_budget(akl, period="month")
    lax_budget = make_budget(lax, period="month")
    for tenant in (akl, lax):
        add_spend(tenant, date(2026, 2, 28), "1")
        add_spend(tenant, date(2026, 3, 1), "10")
        add_spend(tenant, date(2026, 3, 2), "100")

    now = at("2026-03-01T07:00")  # Auckland: 1 March; Los Angeles: still 28 February
    akl_budget.refresh_from_db()
    lax_budget.refresh_from_db()
    assert budget_spent(budget=akl_budget, period=budget_period(akl_budget, now)) == Decimal("110")
    assert budget_spent(budget=lax_budget, period=budget_period(lax_budget, now)) == Decimal("1")

    week_now = at("2026-03-01T12:00")  # Auckland: Monday 2 March (a new week); LA: Sunday 1 March
    week_akl = make_budget(akl, name="w", period="week")
    week_lax = make_budget(lax, name="w", period="week")
    assert budget_spent(budget=week_akl, period=budget_period(week_akl, week_now)) == Decimal("100")
    assert budget_spent(budget=week_lax, period=budget_period(week_lax, week_now)) == Decimal("11")

    rolling = make_budget(lax, name="r", period="rolling_30d")
    assert budget_spent(budget=rolling, period=budget_period(rolling, at("2026-03-30T12:00"))) == Decimal("110")
    assert budget_spent(budget=rolling, period=budget_period(rolling, at("2026-03-31T12:00"))) == Decimal("100")


@pytest.mark.django_db
def test_key_budget_counts_only_its_key(world):
    from tenants.models import ApiKey

    key = ApiKey.objects.get(tenant=world.tenant, scope="chat")
    admin_key = ApiKey.objects.get(tenant=world.tenant, scope="admin")
    budget = make_budget(world.tenant, api_key=key.pk, period="day")
    day = date(2026, 5, 5)
    add_spend(world.tenant, day, "2", key=key)
    add_spend(world.tenant, day, "3", key=admin_key)
    add_spend(world.tenant, day, "4")
    period = budget_period(budget, at("2026-05-05T12:00"))
    assert budget_spent(budget=budget, period=period) == Decimal("2")


def test_a_tenant_time_zone_that_names_no_zone_counts_its_periods_in_utc():
    # given a tenant row edited by hand to a zone tzdata does not know
    now = at("2026-03-01T23:30")
    # when its budget period is asked for, then it is UTC's, as everywhere else (not an error)
    assert period_for("day", "Nowhere/Atlantis", now) == period_for("day", "UTC", now)
    assert period_for("month", "", now).start == date(2026, 3, 1)
