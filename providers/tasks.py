"""Celery tasks: thin. They take ids, load, and call the sync services."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from core.errors import Conflict, TollgateError
from core.redis import REDIS_RETRY
from providers import selectors
from providers.models import Provider
from providers.sync import provider_sync

log = logging.getLogger(__name__)


@shared_task(name="providers.sync_due", ignore_result=True, **REDIS_RETRY)
def providers_sync_due() -> list[int]:
    """Every minute (beat): queue one sync per provider whose interval has passed (retried
    with backoff while the queue cannot be reached)."""
    due = selectors.providers_due_for_sync(
        now=timezone.now(), stale_after=timedelta(seconds=settings.PROVIDER_SYNC_STALE_SECONDS)
    )
    for provider_id in due:
        provider_sync_task.delay(provider_id)
    return due


@shared_task(name="providers.sync", ignore_result=True)
def provider_sync_task(provider_id: int) -> dict | None:
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        return None  # deleted since it was queued
    try:
        result = provider_sync(provider=provider)
    except Conflict:
        log.info("provider %s: a sync is already running; skipped", provider_id)
        return None
    except TollgateError as exc:  # recorded on the provider as sync_status=error
        log.warning("provider %s sync failed: %s", provider_id, exc.message)
        return None
    return result.as_dict()
