"""Celery tasks: thin. The beat task runs the budget check; each new alert is delivered by its
own task, so a slow or failing webhook holds up no other alert. The journals sweep writes what
data-plane workers that died left in their usage journals."""

import logging
import random

import redis
from celery import shared_task

from billing.alerts import (
    WEBHOOK_MAX_TRIES,
    alert_deliver_once,
    alert_give_up,
    alert_retry_due,
    alerts_check,
    alerts_requeue,
)
from billing.ledger import CONNECTION_ERRORS
from billing.retention import end_user_rollup_purge, health_buckets_prune, usage_retention_purge
from billing.spend import HELD_RELEASE_SCRIPT, SETTLE_SCRIPT
from billing.writer import journals_sweep as writer_journals_sweep
from core.redis import REDIS_RETRY, get_redis

log = logging.getLogger(__name__)

BACKOFF_BASE = 30  # seconds before the 2nd try; doubled each time (30, 60, 120, 240, 480)
BACKOFF_CAP = 1800
# The database or Redis is unreachable: the journals stay, the sweep tries again later.
SWEEP_RETRY_ERRORS = (*CONNECTION_ERRORS, redis.ConnectionError, redis.TimeoutError)


def retry_countdown(retries: int) -> float:
    """Seconds to wait before try ``retries + 2``: exponential, with a little jitter so alerts
    that failed together do not all come back at the same second."""
    delay = min(BACKOFF_BASE * 2**retries, BACKOFF_CAP)
    return delay + random.uniform(0, delay / 10)


@shared_task(name="billing.budgets_check", ignore_result=True, **REDIS_RETRY)
def budgets_check() -> list[int]:
    """Every 2 minutes (beat): create the alerts for thresholds crossed since the last check,
    and queue again the deliveries that are overdue (never queued while the broker was down, or
    lost with it). A broker that is down fails neither: it is logged, and the next check queues
    what is still due. Returns the new alerts."""
    created = alerts_check()
    alerts_requeue()
    return created


@shared_task(bind=True, name="billing.alert_deliver", ignore_result=True, max_retries=WEBHOOK_MAX_TRIES - 1)
def alert_deliver(self, alert_id: int) -> bool:
    """Email (once), then the webhook; a failed round is retried with backoff, up to
    WEBHOOK_MAX_TRIES tries in all. Returns whether everything was delivered."""
    if alert_deliver_once(alert_id):
        return True
    if self.request.retries >= self.max_retries:
        alert_give_up(alert_id, tries=self.request.retries + 1)
        return False
    countdown = retry_countdown(self.request.retries)
    alert_retry_due(alert_id, countdown=countdown)
    raise self.retry(countdown=countdown)


RETENTION_MAX_BATCHES = 200  # per table, at most 1M rows a run at 5,000 per batch; the next run goes on


@shared_task(name="billing.usage_retention", ignore_result=True)
def usage_retention() -> dict:
    """Hourly (beat): delete ledger rows past their tenant's retention and end-user rollup rows
    past END_USER_ROLLUP_RETENTION_DAYS, each in bounded batches (the other rollups are kept),
    and the provider health slots older than two days."""
    result = usage_retention_purge(max_batches=RETENTION_MAX_BATCHES)
    result["end_user_rollup"] = end_user_rollup_purge(max_batches=RETENTION_MAX_BATCHES)
    result["health_slots_deleted"] = health_buckets_prune()
    return result


# A dead worker's journal younger than this is left to the worker that replaces it.
JOURNAL_SWEEP_MIN_AGE = 60


@shared_task(name="billing.journals_sweep", ignore_result=True, autoretry_for=SWEEP_RETRY_ERRORS,
             retry_backoff=True, retry_backoff_max=600, max_retries=8)
def journals_sweep() -> int:
    """Every minute (beat): write the usage journals of data-plane workers that died on this
    machine (their lock is free) and were last written over a minute ago, settle their
    budgets and release the reservations the dead workers still held (the writer's own code,
    billing.writer). Returns the number of records written."""
    redis = get_redis()
    settle = release = None
    if redis is not None:  # no Redis: the embedded data plane's budgets lived in its own process
        script = redis.register_script(SETTLE_SCRIPT)
        release_script = redis.register_script(HELD_RELEASE_SCRIPT)

        def settle(keys, args):
            script(keys=keys, args=args)

        def release(held):
            release_script(keys=[], args=[held])

    return writer_journals_sweep(min_age=JOURNAL_SWEEP_MIN_AGE, settle=settle, release=release)
