"""The Django side while Redis is unreachable (issue #17): configuration changes are saved (the
version bump is logged, not raised), key use is still noted, the support dashboard and /api
answer, queueing syncs says 503, and Celery tasks that need Redis retry with backoff."""

import logging
from contextlib import contextmanager

import pytest
from celery import signals
from kombu.exceptions import OperationalError

from config.celery import app
from core.redis import get_redis
from providers.services import provider_create
from providers.tasks import providers_sync_due
from tenants.access import SYSTEM
from tenants.models import ApiKey, Tenant
from tenants.services import tenant_update
from tests.utils.procs import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_down(settings):
    """Redis (client, cache and broker) pointed at a port nothing listens on."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                                   "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
    get_redis.cache_clear()
    with broker_at(url):
        yield url
    get_redis.cache_clear()


@contextmanager
def broker_at(url: str):
    saved = app.conf.broker_url, app.conf.task_publish_retry, app.conf.broker_transport_options
    app.conf.broker_url, app.conf.task_publish_retry = url, False
    app.conf.broker_transport_options = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1,
                                         "interval_max": 0.1}  # give up on the broker at once
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.task_publish_retry, app.conf.broker_transport_options = saved
        app._pool = None
        app.amqp._producer_pool = None


def test_a_configuration_change_is_saved_and_the_failed_announcement_logged(world, redis_down, caplog):
    with caplog.at_level(logging.WARNING, logger="tenants.config_version"):
        tenant_update(tenant=world.tenant, changes={"requests_per_minute": 7}, actor=SYSTEM)
    assert Tenant.objects.get(pk=world.tenant.pk).requests_per_minute == 7
    assert any("could not publish a configuration change" in r.getMessage() and "GATEWAY_CONFIG_SECONDS"
               in r.getMessage() for r in caplog.records)


def test_api_and_support_pages_answer_and_key_use_is_noted(world, redis_down, client_for):
    response = client_for(key=world.admin_key).get(f"/api/tenants/{world.tenant.pk}")
    assert response.status_code == 200 and response.json()["slug"] == "acme"
    key = ApiKey.objects.get(tenant=world.tenant, scope="admin")
    assert key.last_used_at is not None  # no cache to elect a writer: written anyway
    assert client_for(user=world.support).get("/support/providers/").status_code == 200
    assert client_for(user=world.owner).get("/app/acme/settings/").status_code == 200


def test_queueing_syncs_without_a_broker_is_503_saying_so(world, redis_down, client_for):
    provider_create(owner=world.tenant, data={"name": "up", "base_url": "http://127.0.0.1:9/v1",
                                              "provider_type": "openai"})
    response = client_for(key=world.admin_key).post("/api/providers/sync-all")
    assert response.status_code == 503
    assert "task queue (Redis) is unreachable" in response.json()["error"]["message"]


def test_a_task_that_needs_redis_retries_with_backoff_then_gives_up(world, redis_down):
    provider_create(owner=world.tenant, data={"name": "up", "base_url": "http://127.0.0.1:9/v1",
                                              "provider_type": "openai"})
    retries = []

    def retried(sender=None, reason=None, **kwargs):
        retries.append(reason)

    signals.task_retry.connect(retried)
    try:
        result = providers_sync_due.apply()
    finally:
        signals.task_retry.disconnect(retried)
    assert len(retries) == providers_sync_due.max_retries == 8
    assert all("Connection refused" in str(reason) for reason in retries), retries
    assert result.state == "FAILURE" and isinstance(result.result, OperationalError)
    assert providers_sync_due.retry_backoff == 30 and providers_sync_due.retry_backoff_max == 600
