"""Budget alerts: the scheduled check that turns threshold crossings into ``BudgetAlert`` rows
(``alerts_check``, run by beat), and their delivery: an email to the tenant's owners and admins,
and a JSON POST to the budget's webhook (Slack-compatible: a ``text`` field plus structured
fields).

Each channel is claimed with a conditional UPDATE before anything is sent, so however many
workers hold the same alert, the email goes out once and each webhook attempt is made once.
``alert_deliver_once`` is one delivery round; ``billing.tasks.alert_deliver`` runs rounds with
backoff until the webhook has answered 2xx or the tries are used up.

**A delivery is never lost with the broker.** Each alert carries ``delivery_due_at``: the latest
time its delivery task should run (QUEUED_GRACE after it was queued, or after a retry's
countdown), None once it is delivered or given up. Queueing that fails (the broker, Redis, is
down) is logged, not raised, and marks the alert due at once. Every budget check
(``alerts_requeue``, beat, every 2 minutes) queues again the alerts overdue by more than
REQUEUE_AFTER, a bounded batch, oldest first, each claimed with a conditional UPDATE so two
checkers queue it once; it stops at the first queueing that fails (the rest wait for the next
check). Rounds are idempotent (the claims above), so a task that was only slow, not lost, and
runs beside the one queued again sends nothing twice."""

import functools
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing.models import (
    AlertKind,
    Budget,
    BudgetAction,
    BudgetAlert,
    BudgetPeriod,
    BudgetScope,
    UsageDaily,
)
from billing.periods import Period, local_today, period_for
from billing.selectors import thresholds_crossed
from billing.targets import target_words
from core import money
from providers.selectors import provider_model_ids_named
from tenants.models import ApiKey, Membership, Role, Tenant

log = logging.getLogger(__name__)

ROLLING_DAYS = 30
WEBHOOK_TIMEOUT = 10.0  # seconds, per network operation
WEBHOOK_MAX_TRIES = 6
ERROR_CHARS = 500
QUEUED_GRACE = timedelta(minutes=10)  # a queued delivery not run by then is taken as lost
REQUEUE_AFTER = timedelta(minutes=1)  # how overdue an alert is before the check queues it again
REQUEUE_BATCH = 200  # alerts queued again per check at most


class WebhookFailed(Exception):
    """The webhook did not answer 2xx (or could not be reached); the message says which."""


# --- what an alert says ----------------------------------------------------------------------


def usd(value: Decimal) -> str:
    """An amount as alert messages and budget amounts show it: in cents, ``$1,234.50``."""
    return money.usd(value, places=2)


def _period_end(period: str, start: date) -> date:
    """Last day counted by the period that starts on ``start``."""
    if period == BudgetPeriod.DAY:
        return start
    if period == BudgetPeriod.WEEK:
        return start + timedelta(days=6)
    if period == BudgetPeriod.MONTH:
        return (start.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return start + timedelta(days=29)  # rolling 30 days


PERIOD_WORDS = {
    BudgetPeriod.DAY: "day", BudgetPeriod.WEEK: "week (Monday to Sunday)",
    BudgetPeriod.MONTH: "calendar month", BudgetPeriod.ROLLING_30D: "rolling 30 days",
}


def action_words(budget) -> str:
    if budget.action == BudgetAction.BLOCK:
        return "requests are refused (HTTP 429) until the period resets"
    if budget.action == BudgetAction.DOWNGRADE:
        return f"requests are routed to the cheaper alias '{budget.downgrade_alias}' until the period resets"
    return "requests keep being served (alert only)"


@dataclass(frozen=True)
class AlertMessage:
    subject: str
    body: str
    text: str  # one line, for Slack and logs
    payload: dict[str, Any]


def alert_message(alert: BudgetAlert) -> AlertMessage:
    tenant, budget = alert.tenant, alert.budget
    percent = (alert.spent * 100 / alert.limit).quantize(Decimal("0.1")) if alert.limit else Decimal(0)
    base = {
        "alert_id": alert.pk, "kind": alert.kind, "tenant": tenant.slug, "tenant_name": tenant.name,
        "threshold": alert.threshold, "spent": str(alert.spent), "limit": str(alert.limit), "currency": "USD",
        "percent_used": str(percent), "period_start": alert.period_start.isoformat(),
        "created_at": alert.created_at.isoformat(),
    }
    if alert.kind == AlertKind.DAILY_COST or budget is None:
        text = (f"Tollgate: {tenant.name} spent {usd(alert.spent)} on {alert.period_start:%Y-%m-%d}, "
                f"over the daily cost alert of {usd(alert.limit)}.")
        subject = f"[Tollgate] {tenant.name}: daily cost {usd(alert.spent)} is over {usd(alert.limit)}"
        body = "\n".join([
            f"Tenant: {tenant.name} ({tenant.slug})",
            f"Day: {alert.period_start:%Y-%m-%d} ({tenant.timezone})",
            f"Spent so far today: {usd(alert.spent)}",
            f"Daily cost alert threshold: {usd(alert.limit)} (COST_ALERT_THRESHOLD)",
            "",
            "This is an alert only: requests keep being served. Set a budget with action 'block' or "
            "'downgrade' to cap spend.",
        ])
        payload = {**base, "budget": None, "budget_id": None, "period": "day",
                   "period_end": alert.period_start.isoformat(), "action": "alert", "text": text}
        return AlertMessage(subject, body + "\n", text, payload)

    end = _period_end(budget.period, alert.period_start)
    scope = target_words(budget)
    at_full = action_words(budget)
    text = (f"Tollgate: {tenant.name} budget '{budget.name}' reached {alert.threshold}% "
            f"({usd(alert.spent)} of {usd(alert.limit)}, {PERIOD_WORDS.get(budget.period, budget.period)} "
            f"from {alert.period_start:%Y-%m-%d}). At 100%: {at_full}.")
    subject = (f"[Tollgate] {tenant.name}: budget '{budget.name}' at {alert.threshold}% "
               f"({usd(alert.spent)} of {usd(alert.limit)})")
    body = "\n".join([
        f"Tenant: {tenant.name} ({tenant.slug})",
        f"Budget: {budget.name} (covers {scope})",
        f"Threshold reached: {alert.threshold}% (now {percent}%)",
        f"Spent: {usd(alert.spent)} of {usd(alert.limit)}",
        f"Period: {PERIOD_WORDS.get(budget.period, budget.period)}, {alert.period_start:%Y-%m-%d} to "
        f"{end:%Y-%m-%d} ({tenant.timezone})",
        f"At 100%: {at_full}.",
        "",
        "Change the budget in the Tollgate console or with PUT /api/budgets/"
        f"{budget.pk}; its live numbers are at GET /api/budgets/{budget.pk}/status.",
    ])
    payload = {**base, "budget": budget.name, "budget_id": budget.pk, "scope": budget.scope,
               "project": budget.project.slug if budget.project_id else None, "api_key_id": budget.api_key_id,
               "model": budget.model or None, "period": budget.period, "period_end": end.isoformat(),
               "action": budget.action, "downgrade_alias": budget.downgrade_alias or None, "text": text}
    return AlertMessage(subject, body + "\n", text, payload)


def alert_recipients(tenant) -> list[str]:
    """Owners and admins of the tenant who have an email address."""
    emails = (
        Membership.objects.filter(tenant=tenant, role__in=[Role.OWNER, Role.ADMIN], user__is_active=True)
        .exclude(user__email="").values_list("user__email", flat=True)
    )
    return sorted({e.strip().lower() for e in emails if e and e.strip()})


def _alert_load(alert_id: int) -> BudgetAlert | None:
    return (BudgetAlert.objects.select_related("tenant", "budget__api_key", "budget__project")
            .filter(pk=alert_id).first())


def _record_error(alert_id: int, text: str) -> None:
    BudgetAlert.objects.filter(pk=alert_id).update(last_error=text[:ERROR_CHARS])


# --- email -----------------------------------------------------------------------------------


def alert_deliver_email(alert: BudgetAlert) -> bool:
    """Send the alert email unless it was sent already. The claim (``email_sent_at`` from null
    to now) comes first, so two workers cannot both send; a failed send gives the claim back
    and raises. Returns whether this call sent it."""
    recipients = alert_recipients(alert.tenant)
    if not recipients:
        log.warning("alert %s: tenant %s has no owner or admin with an email address", alert.pk, alert.tenant_id)
        return False
    claimed_at = timezone.now()
    if not BudgetAlert.objects.filter(pk=alert.pk, email_sent_at__isnull=True).update(email_sent_at=claimed_at):
        return False
    message = alert_message(alert)
    try:
        send_mail(message.subject, message.body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:
        BudgetAlert.objects.filter(pk=alert.pk, email_sent_at=claimed_at).update(
            email_sent_at=None, last_error=f"email: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
        )
        raise
    alert.email_sent_at = claimed_at
    return True


# --- webhook ---------------------------------------------------------------------------------


def alert_deliver_webhook(alert: BudgetAlert) -> None:
    """POST the alert as JSON to its budget's webhook; raises WebhookFailed unless it answers
    2xx. The URL is vetted at connect time like provider URLs (no metadata or link-local
    addresses; private ones only where ALLOW_PRIVATE_PROVIDER_URLS is on); redirects are not
    followed. Errors never quote the URL, which is a secret for Slack."""
    from core.net import NetError, guarded_client

    url = alert.budget.webhook_url
    payload = alert_message(alert).payload
    try:
        with guarded_client(timeout=WEBHOOK_TIMEOUT, headers={"User-Agent": "Tollgate-alerts"}) as client:
            with client.stream("POST", url, json=payload) as response:
                status = response.status_code
    except NetError as exc:
        raise WebhookFailed(f"refused: {exc.message}") from None
    except httpx.TimeoutException as exc:
        raise WebhookFailed(f"no answer within {WEBHOOK_TIMEOUT:g} s ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"could not reach the webhook ({type(exc).__name__}: {exc})") from None
    if not 200 <= status < 300:
        raise WebhookFailed(f"the webhook answered HTTP {status}")


def alert_webhook_attempt(alert_id: int) -> bool:
    """One webhook attempt. True when nothing is left to do (sent now or before, no webhook, or
    another worker holds this attempt); False when it failed and a retry should follow."""
    alert = _alert_load(alert_id)
    if alert is None or alert.webhook_sent_at is not None:
        return True
    if alert.budget is None or not alert.budget.webhook_url:
        return True
    attempt = alert.webhook_attempts + 1
    claimed = BudgetAlert.objects.filter(
        pk=alert.pk, webhook_sent_at__isnull=True, webhook_attempts=alert.webhook_attempts
    ).update(webhook_attempts=F("webhook_attempts") + 1)
    if not claimed:
        return True  # another worker is making this attempt and owns its retries
    try:
        alert_deliver_webhook(alert)
    except WebhookFailed as exc:
        log.warning("alert %s: webhook attempt %d failed: %s", alert_id, attempt, exc)
        _record_error(alert_id, f"webhook attempt {attempt}: {exc}")
        return False
    BudgetAlert.objects.filter(pk=alert.pk, webhook_sent_at__isnull=True).update(webhook_sent_at=timezone.now())
    return True


def alert_deliver_once(alert_id: int) -> bool:
    """One delivery round: the email (if not sent yet), then one webhook attempt (if due).
    True when the alert is fully delivered or cannot be (nothing is due any more); False when a
    retry should follow (``alert_retry_due`` says when)."""
    alert = _alert_load(alert_id)
    if alert is None:
        return True  # deleted with its budget since it was queued
    done = True
    if alert.email_sent_at is None:
        try:
            alert_deliver_email(alert)
        except Exception as exc:  # the SMTP server's problem: try again with the webhook's retries
            log.warning("alert %s: email failed: %s", alert_id, exc)
            done = False
    if not alert_webhook_attempt(alert_id):
        done = False
    if done:
        BudgetAlert.objects.filter(pk=alert_id).update(delivery_due_at=None)
    return done


def alert_retry_due(alert_id: int, *, countdown: float) -> None:
    """A failed round's retry runs in ``countdown`` seconds: due by then plus QUEUED_GRACE (else
    the budget check queues it again: the retry never reached the broker)."""
    due = timezone.now() + timedelta(seconds=countdown) + QUEUED_GRACE
    BudgetAlert.objects.filter(pk=alert_id, delivery_due_at__isnull=False).update(delivery_due_at=due)


def alert_give_up(alert_id: int, tries: int) -> None:
    alert = BudgetAlert.objects.filter(pk=alert_id).values("last_error").first()
    if alert is not None:
        BudgetAlert.objects.filter(pk=alert_id).update(
            delivery_due_at=None, last_error=f"gave up after {tries} tries; last: {alert['last_error']}"[:ERROR_CHARS])
    log.error("alert %s: delivery given up after %d tries", alert_id, tries)


# --- the scheduled check: crossings become alerts --------------------------------------------


def cost_alert_threshold() -> Decimal | None:
    """settings.COST_ALERT_THRESHOLD (USD per tenant per local day); None or 0 = off."""
    value = getattr(settings, "COST_ALERT_THRESHOLD", None)
    if value in (None, ""):
        return None
    value = value if isinstance(value, Decimal) else Decimal(str(value))
    return value if value > 0 else None


@dataclass(frozen=True)
class _Candidate:
    tenant_id: int
    budget_id: int | None
    kind: str
    period_start: date
    threshold: int
    spent: Decimal
    limit: Decimal


def _spend_in_window(start: date, end: date, tenant_ids: set[int], *,
                     by_model: bool) -> dict[tuple[int, int, int], Decimal]:
    """Known cost per (tenant, key id, provider model id; 0 = none) for local days in [start,
    end): one query. Without ``by_model`` the model is always 0 (one row per key)."""
    rows = UsageDaily.objects.filter(day__gte=start, day__lt=end)
    if len(tenant_ids) <= 500:  # a short IN list narrows the scan; a long one costs more than it saves
        rows = rows.filter(tenant_id__in=tenant_ids)
    columns = ("tenant_id", "api_key_id", "provider_model_id") if by_model else ("tenant_id", "api_key_id")
    return {
        (r["tenant_id"], r["api_key_id"], r.get("provider_model_id", 0)): r["total"] or Decimal(0)
        for r in rows.values(*columns).annotate(total=Sum("cost")).order_by()
    }


def _budget_spent(b, rows: list[tuple[int, int, Decimal]], key_projects: dict[int, int],
                  model_ids: dict[tuple[int, str, int | None], frozenset[int]]) -> Decimal:
    """A budget's spend from its tenant's (key, model, cost) rows of its window: its key's or its
    project's keys', only on the models its filter names."""
    models = model_ids.get((b.tenant_id, b.model, b.project_id)) if b.model else None
    total = Decimal(0)
    for key_id, model_id, cost in rows:
        if models is not None and model_id not in models:
            continue
        if b.scope == BudgetScope.KEY and key_id != b.api_key_id:
            continue
        if b.scope == BudgetScope.PROJECT and key_projects.get(key_id) != b.project_id:
            continue
        total += cost
    return total


def _budget_candidates(now: datetime) -> list[_Candidate]:
    """End-user budgets are left out: each end user has their own spend, and alerts are sent
    per budget, not per end user (README, "Limits and budgets in every scope")."""
    budgets = list(
        Budget.objects.filter(enabled=True, tenant__is_active=True).exclude(scope=BudgetScope.END_USER)
        .values_list("id", "tenant_id", "scope", "api_key_id", "project_id", "model", "amount", "period",
                     "thresholds", "tenant__timezone", named=True)
        .order_by()
    )
    periods: dict[tuple[str, str], Period] = {}
    by_window: dict[tuple[date, date], list[tuple[Any, Period]]] = defaultdict(list)
    for b in budgets:
        spec = (b.period, b.tenant__timezone)
        if spec not in periods:
            periods[spec] = period_for(spec[0], spec[1], now)
        period = periods[spec]
        by_window[(period.start, period.end)].append((b, period))

    # Keys never move between projects: a project's spend is its keys'.
    project_tenants = {b.tenant_id for b in budgets if b.scope == BudgetScope.PROJECT}
    key_projects = dict(ApiKey.objects.filter(tenant_id__in=project_tenants).values_list("pk", "project_id")
                        ) if project_tenants else {}
    filtered = {(b.tenant_id, b.model, b.project_id) for b in budgets if b.model}
    tenants = Tenant.objects.in_bulk({tenant_id for tenant_id, _, _ in filtered}) if filtered else {}
    model_ids = {(tenant_id, model, project_id): provider_model_ids_named(tenant=tenants[tenant_id], name=model,
                                                                          project_id=project_id)
                 for tenant_id, model, project_id in filtered}

    candidates = []
    for (start, end), entries in by_window.items():
        spend = _spend_in_window(start, end, {b.tenant_id for b, _ in entries},
                                 by_model=any(b.model for b, _ in entries))
        per_tenant: dict[int, Decimal] = defaultdict(Decimal)
        rows: dict[int, list[tuple[int, int, Decimal]]] = defaultdict(list)
        for (tenant_id, key, model), total in spend.items():
            per_tenant[tenant_id] += total
            rows[tenant_id].append((key, model, total))
        for b, period in entries:
            if b.scope == BudgetScope.TENANT and not b.model:
                spent = per_tenant.get(b.tenant_id, Decimal(0))
            else:
                spent = _budget_spent(b, rows.get(b.tenant_id, []), key_projects, model_ids)
            thresholds = b.thresholds if isinstance(b.thresholds, list) else []
            for threshold in thresholds_crossed(thresholds=thresholds, spent=spent, amount=b.amount):
                candidates.append(_Candidate(b.tenant_id, b.id, AlertKind.BUDGET, period.start, threshold,
                                             spent, b.amount))
    return _without_existing(candidates, rolling={b.id for b in budgets if b.period == BudgetPeriod.ROLLING_30D})


def _without_existing(candidates: list[_Candidate], *, rolling: set[int]) -> list[_Candidate]:
    """Drop crossings that already have their alert. A rolling window starts anew every day, so
    a rolling budget alerts once per threshold per 30 days, not once per day it stays over."""
    if not candidates:
        return []
    earliest = min(c.period_start for c in candidates) - timedelta(days=ROLLING_DAYS - 1)
    existing = BudgetAlert.objects.filter(kind=AlertKind.BUDGET, period_start__gte=earliest)
    budget_ids = {c.budget_id for c in candidates}
    if len(budget_ids) <= 500:
        existing = existing.filter(budget_id__in=budget_ids)
    seen: dict[tuple[int, int], list[date]] = defaultdict(list)
    for budget_id, period_start, threshold in existing.values_list("budget_id", "period_start", "threshold"):
        seen[(budget_id, threshold)].append(period_start)
    kept = []
    for c in candidates:
        starts = seen.get((c.budget_id, c.threshold), [])
        if c.budget_id in rolling:
            if any(s >= c.period_start - timedelta(days=ROLLING_DAYS - 1) for s in starts):
                continue
        elif c.period_start in starts:
            continue
        kept.append(c)
    return kept


def _daily_cost_candidates(now: datetime, threshold: Decimal) -> list[_Candidate]:
    """Tenants whose known cost today (their local day) reached COST_ALERT_THRESHOLD: one
    query per local date in use (at most three at any instant)."""
    zones = Tenant.objects.filter(is_active=True).values_list("timezone", flat=True).distinct().order_by()
    by_day: dict[date, list[str]] = defaultdict(list)
    for zone in zones:
        by_day[local_today(zone, now)].append(zone)
    candidates = []
    for day, names in by_day.items():
        rows = (
            UsageDaily.objects.filter(day=day, tenant__timezone__in=names, tenant__is_active=True)
            .values("tenant_id").annotate(total=Sum("cost")).filter(total__gte=threshold).order_by()
        )
        for row in rows:
            candidates.append(_Candidate(row["tenant_id"], None, AlertKind.DAILY_COST, day, 100,
                                         row["total"], threshold))
    if not candidates:
        return []
    existing = set(
        BudgetAlert.objects.filter(kind=AlertKind.DAILY_COST, budget__isnull=True,
                                   period_start__in={c.period_start for c in candidates})
        .values_list("tenant_id", "period_start")
    )
    return [c for c in candidates if (c.tenant_id, c.period_start) not in existing]


_ALERT_COLUMNS = ("tenant_id", "budget_id", "kind", "period_start", "threshold", "spent", "limit",
                  "created_at", "webhook_attempts", "last_error", "delivery_due_at")


def _alerts_insert(candidates: list[_Candidate], now: datetime) -> list[int]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the unique constraints decide, and only
    the rows this call inserted come back, so a crossing seen by two workers at once is created
    (and delivered) once. PostgreSQL and SQLite (3.35+) both speak this."""
    if not candidates:
        return []
    meta = BudgetAlert._meta
    fields = [meta.get_field(name.removesuffix("_id")) for name in _ALERT_COLUMNS]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = max(1, (connection.features.max_query_params or 10_000) // len(fields))
    ids: list[int] = []
    with connection.cursor() as cursor:
        for i in range(0, len(candidates), per_statement):
            chunk = candidates[i:i + per_statement]
            params: list[Any] = []
            for c in chunk:
                values = (c.tenant_id, c.budget_id, c.kind, c.period_start, c.threshold, c.spent, c.limit,
                          now, 0, "", now + QUEUED_GRACE)
                params.extend(f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True))
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row_sql] * len(chunk))} "
                f"ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}",
                params,
            )
            ids.extend(row[0] for row in cursor.fetchall())
    return ids


def _queue_delivery(alert_id: int, *, due_if_failed: datetime | None = None) -> bool:
    """Queue the alert's delivery task. A broker that cannot take it is logged, not raised: the
    alert is left due at ``due_if_failed`` (now by default) for the next budget check."""
    from billing.tasks import alert_deliver

    try:
        alert_deliver.delay(alert_id)
    except Exception as exc:  # the broker (Redis) is down or refused: the budget check queues it again
        log.warning("alert %s: could not queue its delivery (%s: %s); the budget check queues it again once "
                    "the broker answers", alert_id, type(exc).__name__, exc)
        try:
            BudgetAlert.objects.filter(pk=alert_id, delivery_due_at__isnull=False).update(
                delivery_due_at=due_if_failed or timezone.now())
        except Exception as again:  # the database too: it is due QUEUED_GRACE after it was queued
            log.warning("alert %s: could not mark it due: %s: %s", alert_id, type(again).__name__, again)
        return False
    return True


def _queue_deliveries(alert_ids: list[int]) -> None:
    """Queue each new alert's delivery; once the broker fails one, the rest are marked due at
    once without trying (each try can take a second), for the next budget check."""
    for i, alert_id in enumerate(alert_ids):
        if not _queue_delivery(alert_id):
            rest = alert_ids[i + 1:]
            if rest:
                try:
                    BudgetAlert.objects.filter(pk__in=rest, delivery_due_at__isnull=False).update(
                        delivery_due_at=timezone.now())
                except Exception as exc:  # the database too: they are due QUEUED_GRACE after now
                    log.warning("alerts %s: could not mark them due: %s: %s", rest, type(exc).__name__, exc)
            return


def alerts_requeue(*, now: datetime | None = None, batch: int = REQUEUE_BATCH) -> list[int]:
    """Queue again the deliveries overdue by more than REQUEUE_AFTER (never queued, or their task
    lost with the broker), at most ``batch``, oldest first; stop at the first that cannot be
    queued. Returns the ids queued."""
    now = now or timezone.now()
    overdue = list(BudgetAlert.objects.filter(delivery_due_at__lt=now - REQUEUE_AFTER)
                   .order_by("delivery_due_at", "pk").values_list("pk", "delivery_due_at")[:batch])
    queued = []
    for alert_id, due in overdue:
        # The claim: of two checkers, one moves the due time and queues it.
        if not BudgetAlert.objects.filter(pk=alert_id, delivery_due_at=due).update(delivery_due_at=now + QUEUED_GRACE):
            continue
        if not _queue_delivery(alert_id, due_if_failed=due):
            break  # the broker is down: the rest wait for the next check
        queued.append(alert_id)
    if overdue:
        log.info("budget check: queued %d of %d overdue alert deliveries again", len(queued), len(overdue))
    return queued


def alerts_check(*, now: datetime | None = None) -> list[int]:
    """Create a BudgetAlert for every threshold crossed in the current period of every enabled
    budget (and for every tenant over COST_ALERT_THRESHOLD today) that has none yet, and queue
    its delivery after commit. Returns the ids of the alerts this call created.

    Spend comes from the daily rollups with one aggregate query per distinct window (period ×
    local date; a handful, whatever the number of budgets), never one query per budget; project
    budgets add one query for their tenants' keys, model filters a few per distinct model name."""
    now = now or timezone.now()
    with transaction.atomic():
        candidates = _budget_candidates(now)
        threshold = cost_alert_threshold()
        if threshold is not None:
            candidates += _daily_cost_candidates(now, threshold)
        # One order for every worker, so two inserting the same rows wait on each other
        # instead of deadlocking.
        candidates.sort(key=lambda c: (c.kind, c.tenant_id, c.budget_id or 0, c.period_start, c.threshold))
        ids = _alerts_insert(candidates, now)
        if ids:
            transaction.on_commit(functools.partial(_queue_deliveries, ids))
    if ids:
        log.info("budget check: %d new alert(s)", len(ids))
    return ids
