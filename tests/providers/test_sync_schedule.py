"""The every-minute beat task and the one-sync-at-a-time rule."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.errors import Conflict
from providers.models import Provider
from providers.services import provider_create, provider_sync_claim
from providers.sync import provider_sync
from providers.tasks import providers_sync_due
from tests.fakes import FakeOpenAI

pytestmark = pytest.mark.django_db


def test_beat_runs_the_due_sync_every_minute():
    task = PeriodicTask.objects.get(task="providers.sync_due")
    assert task.enabled and (task.interval.every, task.interval.period) == (1, "minutes")


def test_due_task_syncs_due_providers_and_a_failure_stops_no_one(world, celery_eager):
    with FakeOpenAI(models=["good-1", "good-2"]) as good, FakeOpenAI(models=["x"]) as broken:
        broken.set_fault("status", status=500)
        a = provider_create(owner=world.tenant, data={"name": "a", "base_url": good.base_url})
        b = provider_create(owner=world.tenant, data={"name": "b", "base_url": broken.base_url})
        c = provider_create(owner=world.other, data={"name": "c", "base_url": good.base_url})
        fresh = provider_create(owner=world.tenant, data={"name": "fresh", "base_url": good.base_url})
        Provider.objects.filter(pk=fresh.pk).update(last_sync_at=timezone.now(), sync_status="ok")
        manual = provider_create(owner=world.tenant, data={"name": "manual", "base_url": good.base_url,
                                                           "auto_sync": False})

        queued = providers_sync_due.delay().get()

    assert sorted(queued) == sorted([a.pk, b.pk, c.pk])
    state = {p.name: p for p in Provider.objects.all()}
    assert state["a"].sync_status == "ok" and state["a"].models.count() == 2
    assert state["c"].sync_status == "ok"
    assert state["b"].sync_status == "error" and "answered 500" in state["b"].last_sync_error
    assert state["fresh"].models.count() == 0 and state["manual"].sync_status == "never"
    assert manual.pk not in queued


def test_interval_decides_when_a_provider_is_due_again(world):
    from providers.selectors import providers_due_for_sync

    p = provider_create(owner=world.tenant, data={"name": "p", "base_url": "http://127.0.0.1:9/v1",
                                                  "sync_interval_minutes": 60})
    now = timezone.now()
    stale = timedelta(minutes=10)
    Provider.objects.filter(pk=p.pk).update(last_sync_at=now - timedelta(minutes=59))
    assert providers_due_for_sync(now=now, stale_after=stale) == []
    Provider.objects.filter(pk=p.pk).update(last_sync_at=now - timedelta(minutes=61))
    assert providers_due_for_sync(now=now, stale_after=stale) == [p.pk]


def test_one_sync_per_provider_at_a_time(world):
    with FakeOpenAI(models=["m"]) as fake:
        p = provider_create(owner=world.tenant, data={"name": "p", "base_url": fake.base_url})
        assert provider_sync_claim(provider=p) is True
        assert provider_sync_claim(provider=p) is False
        with pytest.raises(Conflict, match="already running"):
            provider_sync(provider=p)
        # A sync that has been "running" for too long is presumed dead and taken over.
        Provider.objects.filter(pk=p.pk).update(sync_started_at=timezone.now() - timedelta(hours=1))
        assert provider_sync(provider=p).added == 1
        assert Provider.objects.get(pk=p.pk).sync_status == "ok"
