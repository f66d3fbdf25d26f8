"""Delivering budget alerts: an email to the tenant's owners and admins, and a JSON POST to the
budget's webhook (Slack-compatible: a ``text`` field plus structured fields).

Each channel is claimed with a conditional UPDATE before anything is sent, so however many
workers hold the same alert, the email goes out once and each webhook attempt is made once.
``alert_deliver_once`` is one delivery round; ``billing.tasks.alert_deliver`` runs rounds with
backoff until the webhook has answered 2xx or the tries are used up."""

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone

from billing.models import AlertKind, BudgetAction, BudgetAlert, BudgetPeriod, BudgetScope
from core import money
from tenants.models import Membership, Role

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 10.0  # seconds, per network operation
WEBHOOK_MAX_TRIES = 6
ERROR_CHARS = 500


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
    scope = ("the whole tenant" if budget.scope == BudgetScope.TENANT
             else f"API key '{budget.api_key.name}' ({budget.api_key.masked})" if budget.api_key else "one API key")
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
               "api_key_id": budget.api_key_id, "period": budget.period, "period_end": end.isoformat(),
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
    return BudgetAlert.objects.select_related("tenant", "budget__api_key").filter(pk=alert_id).first()


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
    True when the alert is fully delivered or cannot be; False when a retry should follow."""
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
    return done


def alert_give_up(alert_id: int, tries: int) -> None:
    alert = BudgetAlert.objects.filter(pk=alert_id).values("last_error").first()
    if alert is not None:
        _record_error(alert_id, f"gave up after {tries} tries; last: {alert['last_error']}")
    log.error("alert %s: delivery given up after %d tries", alert_id, tries)
