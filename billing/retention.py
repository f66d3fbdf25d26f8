"""Retention: ledger rows (UsageLog) older than their tenant's retention, and end-user rollup
rows (EndUserDaily) older than END_USER_ROLLUP_RETENTION_DAYS, are deleted in bounded batches;
the other daily rollups (UsageDaily, TenantDaily) are never touched, so dashboards, budgets and
grouped totals keep every day.

**How long.** ``retention_days_for(tenant)``: the tenant's ``usage_retention_days`` when it is
set, else ``settings.USAGE_RETENTION_DAYS`` (default 400); ``None`` keeps the ledger forever.
A row is older than the retention when its local day (the tenant's time zone, as in the
rollups) is more than that many days before the tenant's today. The cutoff is a local
midnight, so the ledger always holds whole local days: an export of a day is complete or
empty, never a part of it.

**Only final days.** A local day is *final* when it is at least 2 days in the past in UTC
terms: ``day <= UTC today - 2``. Every time zone's day ``D`` has ended by ``D + 1`` 12:00
UTC (UTC-12 is the last to finish), so a final day ended at least 12 hours ago and no late
write can still arrive for it. It matters because the ledger writer (``billing.ledger``)
decides "already counted" by the request id being in the ledger: a retried batch whose rows
had already been purged would be inserted and added to the rollups a second time. Whatever
the retention (even 0 days), rows of a day that is not final stay.

**How.** Per tenant, in primary-key order: select up to ``batch_size`` ids below the cutoff
(``FOR UPDATE SKIP LOCKED``), ``DELETE … WHERE id IN (those ids)``, commit; repeat. Each
transaction is small (short locks, a bounded amount of WAL, no long-running snapshot holding
back VACUUM). Two workers running at once take disjoint batches: one skips the rows the
other has locked and the run ends with fewer rows for each, without waiting or errors.

**The end-user rollup** grows with every distinct end user, so it is not kept forever:
``END_USER_ROLLUP_RETENTION_DAYS`` (default 400) for every tenant, whatever the tenant's ledger
retention (that one is about request rows; it may be a few days, and end-user budgets and the
end users page read up to 31 local days of this rollup). The setting may not be under
``END_USER_MIN_DAYS`` (62: the longest budget period, a calendar month, twice). The cut is a
local day as above, only final days, in the same batches.

Run it outside a transaction (the Celery task does): inside one, the batches are savepoints
and nothing is committed before the caller's block is."""

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from billing.health import KEEP_DAYS as HEALTH_KEEP_DAYS
from billing.health import SLOTS as HEALTH_SLOTS
from billing.models import EndUserDaily, HealthBucket, UsageLog
from core.timezones import zone_of
from tenants.models import Tenant

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 400
FINAL_AFTER_DAYS = 2  # a local day is final once it is this many days before today in UTC
# End-user budgets (day, week, calendar month, rolling 30 days) and the end users page read at
# most 31 local days of EndUserDaily; twice that keeps the whole previous month too.
END_USER_MIN_DAYS = 62


def _check_days(value, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(
            f"{source} must be a whole number of days >= 0, or None to keep the ledger forever; "
            f"got {value!r}."
        )
    return value


def global_retention_days() -> int | None:
    """``settings.USAGE_RETENTION_DAYS`` (400 when unset); ``None`` = keep forever."""
    return _check_days(getattr(settings, "USAGE_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
                       "settings.USAGE_RETENTION_DAYS")


def retention_days_for(tenant: Tenant, *, default: int | None = None) -> int | None:
    """Days of ledger kept for ``tenant``: its own ``usage_retention_days`` when set, else
    ``default`` (the global retention when not given). ``None`` = keep forever."""
    days = getattr(tenant, "usage_retention_days", None)
    if days is None:
        return global_retention_days() if default is None else default
    return _check_days(days, f"usage_retention_days of tenant '{tenant.slug}'")


def retention_cutoff(*, tenant: Tenant, days: int, now: datetime) -> datetime:
    """The first instant kept: local midnight starting the oldest day kept, which is the
    later of (tenant's today - ``days``) and the newest day that is not final."""
    zone = zone_of(tenant.timezone)
    local_today = now.astimezone(zone).date()
    utc_today = now.astimezone(UTC).date()
    first_kept = min(local_today - timedelta(days=days), utc_today - timedelta(days=FINAL_AFTER_DAYS - 1))
    return datetime.combine(first_kept, time.min, tzinfo=zone)


def end_user_retention_days() -> int:
    """``settings.END_USER_ROLLUP_RETENTION_DAYS`` (400 when unset), at least END_USER_MIN_DAYS."""
    value = getattr(settings, "END_USER_ROLLUP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    if isinstance(value, bool) or not isinstance(value, int) or value < END_USER_MIN_DAYS:
        raise ImproperlyConfigured(
            f"END_USER_ROLLUP_RETENTION_DAYS must be a whole number of days >= {END_USER_MIN_DAYS}: end-user "
            f"budgets (day, week, calendar month, rolling 30 days) are rebuilt from the end-user rollup, so it "
            f"keeps at least two months; got {value!r}."
        )
    return value


def _check_run(batch_size: int, max_batches: int | None) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be at least 1 or None; got {max_batches}.")


def usage_retention_purge(*, now: datetime | None = None, batch_size: int = 5000,
                          max_batches: int | None = None, tenants: Iterable[Tenant] | None = None) -> dict:
    """Delete ledger rows past their tenant's retention, at most ``batch_size`` rows per
    transaction and ``max_batches`` batches in all (None: until nothing is left), for every
    tenant or only ``tenants`` (their retention read from the objects given).

    Returns ``{"deleted": n, "batches": n, "finished": bool, "tenants": {slug: n}}``:
    ``tenants`` lists the tenants that lost rows; ``finished`` is False when ``max_batches``
    stopped the run with rows possibly left (the next run goes on)."""
    _check_run(batch_size, max_batches)
    now = now or timezone.now()
    default = global_retention_days()

    def cutoffs():
        for tenant in Tenant.objects.order_by("pk") if tenants is None else tenants:
            days = retention_days_for(tenant, default=default)
            if days is not None:
                yield tenant, {"created_at__lt": retention_cutoff(tenant=tenant, days=days, now=now)}

    result = _purge(UsageLog, cutoffs(), batch_size=batch_size, max_batches=max_batches)
    log.info("usage retention: deleted %d ledger row(s) of %d tenant(s) in %d batch(es)%s", result["deleted"],
             len(result["tenants"]), result["batches"],
             "" if result["finished"] else "; stopped at max_batches, rows may remain")
    return result


def end_user_rollup_cutoff(*, tenant: Tenant, days: int, now: datetime) -> date:
    """The oldest local day of EndUserDaily kept for ``tenant`` (the ledger's rule: ``days``
    before the tenant's today, never a day that is not final)."""
    return retention_cutoff(tenant=tenant, days=days, now=now).date()


def end_user_rollup_purge(*, now: datetime | None = None, batch_size: int = 5000,
                          max_batches: int | None = None, tenants: Iterable[Tenant] | None = None) -> dict:
    """Delete the end-user rollup's rows of local days more than END_USER_ROLLUP_RETENTION_DAYS
    before each tenant's today, in batches as ``usage_retention_purge`` (same arguments, same
    result). Raises ImproperlyConfigured when the setting is under END_USER_MIN_DAYS."""
    _check_run(batch_size, max_batches)
    now = now or timezone.now()
    days = end_user_retention_days()
    every = Tenant.objects.order_by("pk") if tenants is None else tenants
    cutoffs = ((t, {"day__lt": end_user_rollup_cutoff(tenant=t, days=days, now=now)}) for t in every)
    result = _purge(EndUserDaily, cutoffs, batch_size=batch_size, max_batches=max_batches)
    log.info("end-user rollup retention: deleted %d row(s) of %d tenant(s) in %d batch(es)%s", result["deleted"],
             len(result["tenants"]), result["batches"],
             "" if result["finished"] else "; stopped at max_batches, rows may remain")
    return result


def _purge(model, cutoffs: Iterable[tuple[Tenant, dict]], *, batch_size: int, max_batches: int | None) -> dict:
    """Per tenant, in id order: delete ``model``'s rows matching the tenant's filter (``cutoffs``
    yields the tenant and its filter) in batches; stop once ``max_batches`` ran."""
    deleted_of: dict[str, int] = {}
    total = batches = 0
    finished = True
    for tenant, below in cutoffs:
        after_id = 0
        while True:
            if max_batches is not None and batches >= max_batches:
                finished = False
                break
            taken, count = _delete_batch(model, tenant_id=tenant.pk, below=below, after_id=after_id,
                                         batch_size=batch_size)
            if not taken:  # nothing left below the cutoff
                break
            batches += 1
            total += count
            if count:
                deleted_of[tenant.slug] = deleted_of.get(tenant.slug, 0) + count
            if len(taken) < batch_size:  # a short batch was the last (rows skipped are another worker's)
                break
            after_id = taken[-1]
        if not finished:
            break
    return {"deleted": total, "batches": batches, "finished": finished, "tenants": deleted_of}


def _delete_batch(model, *, tenant_id: int, below: dict, after_id: int, batch_size: int) -> tuple[list[int], int]:
    """One transaction: lock up to ``batch_size`` of the tenant's rows matching ``below`` with
    ids above ``after_id`` (lowest ids first, skipping rows another worker holds) and delete
    them. Returns (the ids taken, in order; the rows deleted)."""
    with transaction.atomic():
        ids = list(
            model.objects.filter(tenant_id=tenant_id, id__gt=after_id, **below)
            .order_by("id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return [], 0
        table = connection.ops.quote_name(model._meta.db_table)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":  # one array parameter, however many ids
                cursor.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", [ids])
            else:
                cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(ids))})", ids)
            return ids, cursor.rowcount


def health_buckets_prune(*, now: datetime | None = None) -> int:
    """Delete the provider health slots (HealthBucket) that started more than HEALTH_KEEP_DAYS
    days ago: the health page reads the last day only. Returns the rows deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=HEALTH_KEEP_DAYS)
    deleted, _ = HealthBucket.objects.filter(span__in=HEALTH_SLOTS, start__lt=cutoff).delete()
    if deleted:
        log.info("provider health: deleted %d slot row(s) older than %s", deleted, cutoff.isoformat())
    return deleted
