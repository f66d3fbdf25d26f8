"""Celery tasks: thin. The beat task runs the budget check; each new alert is delivered by its
own task, so a slow or failing webhook holds up no other alert."""

import logging
import random

from celery import shared_task

from billing.alerts import WEBHOOK_MAX_TRIES, alert_deliver_once, alert_give_up, alerts_check
from billing.retention import health_buckets_prune, usage_retention_purge
from core.redis import REDIS_RETRY

log = logging.getLogger(__name__)

BACKOFF_BASE = 30  # seconds before the 2nd try; doubled each time (30, 60, 120, 240, 480)
BACKOFF_CAP = 1800


def retry_countdown(retries: int) -> float:
    """Seconds to wait before try ``retries + 2``: exponential, with a little jitter so alerts
    that failed together do not all come back at the same second."""
    delay = min(BACKOFF_BASE * 2**retries, BACKOFF_CAP)
    return delay + random.uniform(0, delay / 10)


@shared_task(name="billing.budgets_check", ignore_result=True, **REDIS_RETRY)
def budgets_check() -> list[int]:
    """Every 2 minutes (beat): create the alerts for thresholds crossed since the last check
    (retried with backoff while Redis, which their deliveries are queued on, cannot be reached)."""
    return alerts_check()


@shared_task(bind=True, name="billing.alert_deliver", ignore_result=True, max_retries=WEBHOOK_MAX_TRIES - 1)
def alert_deliver(self, alert_id: int) -> bool:
    """Email (once), then the webhook; a failed round is retried with backoff, up to
    WEBHOOK_MAX_TRIES tries in all. Returns whether everything was delivered."""
    if alert_deliver_once(alert_id):
        return True
    if self.request.retries >= self.max_retries:
        alert_give_up(alert_id, tries=self.request.retries + 1)
        return False
    raise self.retry(countdown=retry_countdown(self.request.retries))


RETENTION_MAX_BATCHES = 200  # at most 1M rows a run at 5,000 per batch; the next run goes on


@shared_task(name="billing.usage_retention", ignore_result=True)
def usage_retention() -> dict:
    """Hourly (beat): delete ledger rows past their tenant's retention, in bounded batches
    (rollups are kept), and the provider health slots older than two days."""
    result = usage_retention_purge(max_batches=RETENTION_MAX_BATCHES)
    result["health_slots_deleted"] = health_buckets_prune()
    return result
