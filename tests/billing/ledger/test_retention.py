"""Ledger retention: old ledger rows go, in bounded batches, only once their day is final;
recent rows and every rollup stay."""

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.models import UsageLog
from billing.retention import retention_cutoff, retention_days_for, usage_retention_purge
from tests.billing.ledger.conftest import ledger_ids, rollups, utc, write

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 15, 15, 0)  # 2026-03-16 00:00 in Tokyo
US = timedelta(microseconds=1)


@pytest.fixture(autouse=True)
def _global_default(settings):
    """The global retention as shipped: the setting unset, so 400 days."""
    if hasattr(settings, "USAGE_RETENTION_DAYS"):
        del settings.USAGE_RETENTION_DAYS


@pytest.fixture
def tokyo(world):
    world.other.timezone = "Asia/Tokyo"
    world.other.save()
    return world.other


def deletes(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]


def test_global_retention_deletes_each_tenants_rows_before_its_local_cutoff(world, tokyo, gpt, chat_key):
    acme = world.tenant
    # 400 days before acme's today (2026-03-15, UTC) is 2025-02-08; before Tokyo's (03-16), 02-09.
    acme_cutoff, tokyo_cutoff = utc(2025, 2, 8), utc(2025, 2, 8, 15)  # 2025-02-09 00:00 in Tokyo
    acme_old = write(acme, utc(2024, 1, 1), acme_cutoff - US, model=gpt, key=chat_key)
    acme_kept = write(acme, acme_cutoff, NOW - timedelta(days=10), NOW, model=gpt)
    # 2025-02-08 14:00 UTC would be kept in UTC, but it is 23:00 on 02-08 in Tokyo: past retention.
    tokyo_old = write(tokyo, utc(2025, 1, 20), acme_cutoff + timedelta(hours=14), tokyo_cutoff - US, model=gpt)
    tokyo_kept = write(tokyo, tokyo_cutoff, NOW, model=gpt)
    before = {t.pk: rollups(t) for t in (acme, tokyo)}

    result = usage_retention_purge(now=NOW)

    assert ledger_ids(acme) == set(acme_kept)
    assert ledger_ids(tokyo) == set(tokyo_kept)
    assert result == {"deleted": 5, "batches": 2, "finished": True, "tenants": {"acme": 2, "other": 3}}
    assert {t.pk: rollups(t) for t in (acme, tokyo)} == before  # every rollup row, every column
    assert rollups(acme)[0][2] == utc(2024, 1, 1).date()  # the oldest day is still in the rollups
    assert set(acme_old).isdisjoint(UsageLog.objects.values_list("request_id", flat=True))
    assert set(tokyo_old).isdisjoint(UsageLog.objects.values_list("request_id", flat=True))

    assert usage_retention_purge(now=NOW) == {"deleted": 0, "batches": 0, "finished": True, "tenants": {}}


def test_the_setting_and_a_tenant_override(world, tokyo, gpt, settings):
    acme = world.tenant
    acme_rows = write(acme, utc(2025, 12, 1), utc(2026, 3, 1), model=gpt)
    tokyo_old, tokyo_kept = write(tokyo, utc(2026, 2, 13, 14, 59), utc(2026, 2, 13, 15), model=gpt)
    before = rollups(tokyo)
    # The tenant field may not exist yet: the purge reads whatever the tenant object carries.
    tokyo.usage_retention_days = 30  # 30 days before 2026-03-16: kept from 02-14 00:00 Tokyo time

    result = usage_retention_purge(now=NOW, tenants=[acme, tokyo])

    assert result["tenants"] == {"other": 1}
    assert ledger_ids(tokyo) == {tokyo_kept} and ledger_ids(acme) == set(acme_rows)
    assert rollups(tokyo) == before

    settings.USAGE_RETENTION_DAYS = 90  # 2025-12-15: acme's December row is now past it
    assert usage_retention_purge(now=NOW)["tenants"] == {"acme": 1}
    assert ledger_ids(acme) == {acme_rows[1]}


def test_the_tenant_setting_is_read_from_the_database(world, tokyo, gpt):
    Tenant = type(tokyo)
    Tenant.objects.filter(pk=tokyo.pk).update(usage_retention_days=30)
    tokyo_old, tokyo_kept = write(tokyo, utc(2026, 2, 13, 14, 59), utc(2026, 2, 13, 15), model=gpt)
    acme_kept = write(world.tenant, utc(2026, 2, 1), model=gpt)

    assert usage_retention_purge(now=NOW)["tenants"] == {"other": 1}
    assert ledger_ids(tokyo) == {tokyo_kept} and ledger_ids(world.tenant) == set(acme_kept)


def test_retention_days_for(world, settings):
    tenant = world.tenant
    assert retention_days_for(tenant) == 400
    settings.USAGE_RETENTION_DAYS = 30
    assert retention_days_for(tenant) == 30
    tenant.usage_retention_days = 7
    assert retention_days_for(tenant) == 7
    tenant.usage_retention_days = None
    settings.USAGE_RETENTION_DAYS = None  # keep forever, unless a tenant says otherwise
    assert retention_days_for(tenant) is None
    tenant.usage_retention_days = -1
    with pytest.raises(ImproperlyConfigured, match="usage_retention_days of tenant 'acme'"):
        retention_days_for(tenant)


def test_no_global_retention_purges_only_tenants_with_their_own(world, tokyo, gpt, settings):
    settings.USAGE_RETENTION_DAYS = None
    acme_rows = write(world.tenant, utc(2020, 1, 1), model=gpt)
    write(tokyo, utc(2020, 1, 1), model=gpt)
    tokyo.usage_retention_days = 400

    assert usage_retention_purge(now=NOW, tenants=[world.tenant, tokyo])["tenants"] == {"other": 1}
    assert ledger_ids(world.tenant) == set(acme_rows) and ledger_ids(tokyo) == set()


def test_a_bad_setting_stops_the_run_with_a_clear_error(settings):
    settings.USAGE_RETENTION_DAYS = "400"
    with pytest.raises(ImproperlyConfigured, match="USAGE_RETENTION_DAYS must be a whole number"):
        usage_retention_purge(now=NOW)


@pytest.mark.parametrize("zone, first_kept_utc", [
    # Retention 0: only finality holds rows back. NOW is 2026-03-15 15:00 UTC, so local days up to
    # 03-13 are final (at least 2 days before UTC today) and 03-14 is the oldest day kept...
    ("UTC", utc(2026, 3, 14)),
    ("Pacific/Pago_Pago", utc(2026, 3, 14, 11)),  # UTC-11: 03-14 starts at 11:00 UTC
    ("Pacific/Kiritimati", utc(2026, 3, 13, 10)),  # UTC+14: 03-14 started at 10:00 UTC on the 13th
])
def test_rows_of_days_that_are_not_final_stay_whatever_the_retention(world, gpt, zone, first_kept_utc):
    tenant = world.tenant
    tenant.timezone = zone
    tenant.save()
    tenant.usage_retention_days = 0
    old = write(tenant, first_kept_utc - timedelta(days=3), first_kept_utc - US, model=gpt)
    kept = write(tenant, first_kept_utc, first_kept_utc + timedelta(hours=20), NOW, model=gpt)

    assert retention_cutoff(tenant=tenant, days=0, now=NOW) == first_kept_utc
    assert usage_retention_purge(now=NOW, tenants=[tenant])["deleted"] == len(old)
    assert ledger_ids(tenant) == set(kept)


def test_deletes_in_batches_of_batch_size_and_stops_at_max_batches(world, tokyo, gpt):
    acme = world.tenant
    old = write(acme, *[utc(2024, 6, 1) + timedelta(minutes=i) for i in range(23)], model=gpt)
    recent = write(acme, NOW - timedelta(days=1), model=gpt)
    write(tokyo, NOW, model=gpt)
    before = rollups(acme)

    with CaptureQueriesContext(connection) as queries:
        first = usage_retention_purge(now=NOW, batch_size=5, max_batches=2)
    assert first == {"deleted": 10, "batches": 2, "finished": False, "tenants": {"acme": 10}}
    assert len(deletes(queries)) == 2
    assert ledger_ids(acme) == set(old[10:] + recent)  # lowest ids first

    with CaptureQueriesContext(connection) as queries:
        rest = usage_retention_purge(now=NOW, batch_size=5)
    assert rest == {"deleted": 13, "batches": 3, "finished": True, "tenants": {"acme": 13}}
    assert len(deletes(queries)) == 3  # 5 + 5 + 3: the short batch is known to be the last
    assert all("billing_usagelog" in sql for sql in deletes(queries))  # the ledger only, never the rollups
    assert ledger_ids(acme) == set(recent)
    assert rollups(acme) == before


def test_batch_size_and_max_batches_are_checked():
    with pytest.raises(ValueError, match="batch_size"):
        usage_retention_purge(batch_size=0)
    with pytest.raises(ValueError, match="max_batches"):
        usage_retention_purge(max_batches=0)


@pytest.mark.django_db(transaction=True)
def test_rows_another_worker_holds_are_skipped_not_waited_for(world, gpt):
    acme = world.tenant
    old = write(acme, *[utc(2024, 6, 1) + timedelta(seconds=i) for i in range(30)], model=gpt)
    held = old[:10]
    results = []

    with transaction.atomic():  # another worker is deleting these ten right now
        list(UsageLog.objects.select_for_update().filter(request_id__in=held))

        def purge():
            try:
                results.append(usage_retention_purge(now=NOW, batch_size=7))
            finally:
                connection.close()

        thread = threading.Thread(target=purge)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the purge waited for rows another worker holds"

    assert results[0]["deleted"] == 20
    assert ledger_ids(acme) == set(held)
    assert usage_retention_purge(now=NOW)["deleted"] == 10  # the next run takes them
    assert ledger_ids(acme) == set()


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_share_the_work_without_errors(world, gpt):
    acme, other = world.tenant, world.other
    start = utc(2024, 6, 1)
    for tenant in (acme, other):
        write(tenant, *[start + timedelta(seconds=i) for i in range(600)], model=gpt)
    kept = {t.pk: write(t, NOW - timedelta(days=3), model=gpt) for t in (acme, other)}
    before = {t.pk: rollups(t) for t in (acme, other)}
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(usage_retention_purge(now=NOW, batch_size=25))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(results) == 2
    assert sum(r["deleted"] for r in results) == 1200
    assert {t.pk: ledger_ids(t) for t in (acme, other)} == {pk: set(ids) for pk, ids in kept.items()}
    assert {t.pk: rollups(t) for t in (acme, other)} == before


@pytest.mark.django_db
def test_retention_runs_hourly_from_the_database_schedule():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="billing.usage_retention")
    assert task.enabled and (task.crontab.hour, task.crontab.minute) == ("*", "17")
