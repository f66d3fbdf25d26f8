"""End-user rollup retention: EndUserDaily rows of local days older than
END_USER_ROLLUP_RETENTION_DAYS go, in bounded batches, for every tenant whatever its ledger
retention; what end-user budgets rebuild from stays; a retention too short for budgets is
refused."""

import os
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import EndUserDaily, UsageDaily
from billing.retention import end_user_rollup_cutoff, end_user_rollup_purge
from billing.spend import SpendSource, spend_by_day, to_nanos
from billing.tasks import usage_retention
from tests.billing.ledger.conftest import ledger_ids, rollups, utc, write
from tests.utils.procs import REPO

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 15, 15, 0)  # 2026-03-16 00:00 in Tokyo


@pytest.fixture(autouse=True)
def _shipped_defaults(settings):
    """Both retentions as shipped: the settings unset, so 400 days each."""
    for name in ("USAGE_RETENTION_DAYS", "END_USER_ROLLUP_RETENTION_DAYS"):
        if hasattr(settings, name):
            delattr(settings, name)


@pytest.fixture
def tokyo(world):
    world.other.timezone = "Asia/Tokyo"
    world.other.save()
    return world.other


def days_of(tenant) -> list[tuple[date, str]]:
    return sorted(EndUserDaily.objects.filter(tenant=tenant).values_list("day", "end_user"))


def test_rows_before_each_tenants_local_cutoff_go_and_the_other_rollups_stay(world, tokyo, gpt):
    acme = world.tenant
    # 400 days before acme's today (2026-03-15) is 2025-02-08; before Tokyo's (03-16), 2025-02-09.
    write(acme, utc(2024, 5, 1), utc(2025, 2, 7, 23), model=gpt, end_user="old")
    write(acme, utc(2025, 2, 8), NOW, model=gpt, end_user="kept")
    # 2025-02-08 14:00 UTC is 23:00 on 02-08 in Tokyo: a day past Tokyo's retention.
    write(tokyo, utc(2025, 2, 8, 14), model=gpt, end_user="old")
    write(tokyo, utc(2025, 2, 8, 15), model=gpt, end_user="kept")  # 02-09 00:00 in Tokyo
    ledger = {t.pk: ledger_ids(t) for t in (acme, tokyo)}
    daily = {t.pk: rollups(t) for t in (acme, tokyo)}

    result = end_user_rollup_purge(now=NOW)

    assert result == {"deleted": 3, "batches": 2, "finished": True, "tenants": {"acme": 2, "other": 1}}
    assert days_of(acme) == [(date(2025, 2, 8), "kept"), (date(2026, 3, 15), "kept")]
    assert days_of(tokyo) == [(date(2025, 2, 9), "kept")]
    assert {t.pk: ledger_ids(t) for t in (acme, tokyo)} == ledger  # the ledger has its own retention
    assert {t.pk: rollups(t) for t in (acme, tokyo)} == daily  # UsageDaily is kept forever
    assert end_user_rollup_purge(now=NOW) == {"deleted": 0, "batches": 0, "finished": True, "tenants": {}}


def test_end_user_budgets_still_rebuild_from_what_is_kept(world, gpt, settings):
    """At the shortest retention allowed, the longest budget window (a calendar month, or the
    rolling 30 days) reads the same spend after the purge as before it."""
    settings.END_USER_ROLLUP_RETENTION_DAYS = 62
    acme = world.tenant
    now = utc(2026, 3, 31, 12)
    write(acme, *[now - timedelta(days=n) for n in range(0, 80, 3)], model=gpt, end_user="alice",
          cost=Decimal("0.5"))
    month = [date(2026, 3, 1) + timedelta(days=n) for n in range(31)]
    rolling = [now.date() - timedelta(days=n) for n in range(29, -1, -1)]
    source = SpendSource(end_user="alice")
    before = [spend_by_day(tenant_id=acme.pk, days=days, source=source) for days in (month, rolling)]

    assert end_user_rollup_purge(now=now)["deleted"] > 0

    assert min(day for day, _ in days_of(acme)) >= now.date() - timedelta(days=62)
    assert [spend_by_day(tenant_id=acme.pk, days=days, source=source) for days in (month, rolling)] == before
    assert sum(before[0].values()) == 11 * to_nanos(Decimal("0.5"))  # 03-01 … 03-31, every third day


def test_a_tenants_short_ledger_retention_does_not_cut_the_end_user_rollup(world, gpt, settings):
    settings.END_USER_ROLLUP_RETENTION_DAYS = 90
    acme = world.tenant
    acme.usage_retention_days = 7  # request rows: a week
    write(acme, utc(2026, 1, 10), utc(2025, 12, 1), model=gpt, end_user="alice")

    end_user_rollup_purge(now=NOW, tenants=[acme])

    # 90 days before 2026-03-15 is 2025-12-15: December's day goes, January's stays.
    assert days_of(acme) == [(date(2026, 1, 10), "alice")]


@pytest.mark.parametrize("value", [61, 0, -1, "400", None, True])
def test_a_retention_too_short_for_budgets_is_refused(settings, value):
    settings.END_USER_ROLLUP_RETENTION_DAYS = value
    with pytest.raises(ImproperlyConfigured, match=r"END_USER_ROLLUP_RETENTION_DAYS must be a whole number of "
                                                   r"days >= 62: end-user budgets .* are rebuilt from"):
        end_user_rollup_purge(now=NOW)


def test_the_process_refuses_to_start_with_a_retention_too_short(tmp_path):
    """settings.py checks the environment at startup, as for every other setting."""
    env = {**os.environ, "END_USER_ROLLUP_RETENTION_DAYS": "30", "ENV_FILE": "/dev/null"}
    run = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "END_USER_ROLLUP_RETENTION_DAYS must be at least 62 days (got 30)" in run.stderr


def test_deletes_in_batches_and_stops_at_max_batches(world, gpt):
    acme = world.tenant
    write(acme, *[utc(2024, 6, 1) + timedelta(days=i) for i in range(12)], model=gpt, end_user="bob")
    write(acme, NOW, model=gpt, end_user="bob")

    with CaptureQueriesContext(connection) as queries:
        first = end_user_rollup_purge(now=NOW, batch_size=5, max_batches=2)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert first == {"deleted": 10, "batches": 2, "finished": False, "tenants": {"acme": 10}}
    assert len(deletes) == 2 and all("billing_enduserdaily" in sql for sql in deletes)
    assert len(days_of(acme)) == 3

    assert end_user_rollup_purge(now=NOW, batch_size=5)["deleted"] == 2
    assert days_of(acme) == [(NOW.date(), "bob")]


def test_the_cutoff_is_the_tenants_local_day(world, tokyo):
    assert end_user_rollup_cutoff(tenant=world.tenant, days=400, now=NOW) == date(2025, 2, 8)
    assert end_user_rollup_cutoff(tenant=tokyo, days=400, now=NOW) == date(2025, 2, 9)


def test_the_hourly_task_prunes_the_ledger_and_the_end_user_rollup(world, gpt, settings):
    settings.USAGE_RETENTION_DAYS = 100
    write(world.tenant, utc(2020, 1, 1), model=gpt, end_user="old")
    kept = write(world.tenant, timezone.now() - timedelta(days=30), model=gpt, end_user="new")

    result = usage_retention()

    assert result["deleted"] == 1 and result["end_user_rollup"]["deleted"] == 1
    assert ledger_ids(world.tenant) == set(kept)
    assert [user for _, user in days_of(world.tenant)] == ["new"]
    assert UsageDaily.objects.filter(tenant=world.tenant).count() == 2  # kept forever
