"""Which version of a tenant's routing configuration is current, so every data-plane worker
sees a change on its very next request.

Each worker keeps a tenant's routing table and its verified keys in memory. Every change that
can alter how /v1 answers (tenant settings and suspension, keys, providers, models, prices,
aliases, budgets) replaces the tenant's version token in Redis once its transaction commits —
or the platform's token, for platform providers and their models, which every tenant uses. The
admission script reads both tokens in the round trip it makes anyway and compares them with the
ones the worker's cached table was loaded under; a difference makes the worker reload (see
gateway/app.py). Tokens are random, not counters, so a Redis that lost them (a
restart) can never hand back a value an old cache already holds.

Changes reach here two ways: ``post_save`` / ``post_delete`` receivers on the models (each app
connects its own in its ``AppConfig.ready``), and explicit calls after bulk writes
(``update()``, ``bulk_create``), which send no signals.

On the embedded default (no Redis) the tokens live in this process, which also runs the data
plane; changes made by other processes (a management command, the Celery worker) are seen when
the cache's backstop (GATEWAY_CONFIG_SECONDS) runs out."""

import logging
import secrets

from django.db import transaction

from core.redis import REDIS_DOWN, get_redis

log = logging.getLogger(__name__)

PLATFORM = "tg:cfgv:all"
LOCAL: dict[str, str] = {}  # the embedded default's tokens (one process)


def version_key(tenant_id: int) -> str:
    return f"tg:cfgv:t{tenant_id}"


def config_changed(*, tenant_id: int | None) -> None:
    """Mark the routing configuration of ``tenant_id`` (``None``: every tenant) as changed
    once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: _bump(tenant_id), robust=True)


def _bump(tenant_id: int | None) -> None:
    key = PLATFORM if tenant_id is None else version_key(tenant_id)
    token = secrets.token_hex(8)
    client = get_redis()
    if client is None:
        LOCAL[key] = token
        return
    try:
        client.set(key, token)
    except REDIS_DOWN as exc:  # the change is committed; workers fall back to the cache's backstop
        log.warning("could not publish a configuration change of %s (Redis is unreachable: %s); workers see it "
                    "within GATEWAY_CONFIG_SECONDS", key, exc)
    except Exception:
        log.exception("could not publish a configuration change of %s; workers see it within "
                      "GATEWAY_CONFIG_SECONDS", key)


def changed_on_save(sender, instance, **kwargs) -> None:
    """A ``post_save`` / ``post_delete`` receiver for models with a ``tenant_id``."""
    config_changed(tenant_id=instance.tenant_id)
