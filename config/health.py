"""Operations endpoints: ``/healthz`` (200 when every backing service answers, 503 naming the
one that does not), ``/readyz`` (503 while draining or without a database; Redis is named but
does not take the instance out) and ``/metrics`` (Prometheus).

Health answers anyone, so a failed check says only which dependency failed (``"error"``);
why (the driver's message, with addresses and names) goes to the log."""

import logging
import secrets

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from core.redis import get_redis
from gateway.app import gateway

log = logging.getLogger(__name__)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not answering"
        log.warning("health check: database is not answering: %s: %s", type(exc).__name__, exc)
        return "error"
    return "ok"


def _check_redis() -> str:
    client = get_redis()
    if client is None:
        return "not configured"
    try:
        client.ping()
    except Exception as exc:
        log.warning("health check: redis is not answering: %s: %s", type(exc).__name__, exc)
        return "error"
    return "ok"


def healthz(request):
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(v in ("ok", "not configured") for v in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


def readyz(request):
    """For load balancers: 200 while this instance takes traffic; 503 once it is draining
    (shutting down) or when the database is down. Redis is named but does not take the
    instance out: every instance shares it, and while it is down the data plane still answers
    for itself (503 store_unavailable in each door's shape, or serves tenants that fail open),
    which a balancer with no instance left would replace with its own error."""
    checks = {"database": _check_database(), "redis": _check_redis(),
              "accepting": "no (draining)" if gateway.draining else "ok"}
    ready = checks["accepting"] == "ok" and checks["database"] in ("ok", "not configured")
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def metrics(request):
    """Prometheus text format for every worker process (multi-process collector). Needs the
    METRICS_TOKEN bearer when one is set, else a client IP in METRICS_ALLOWED_IPS."""
    if settings.METRICS_TOKEN:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(supplied, settings.METRICS_TOKEN):
            return JsonResponse({"error": "Send 'Authorization: Bearer <METRICS_TOKEN>'."}, status=401)
    elif request.META.get("REMOTE_ADDR") not in settings.METRICS_ALLOWED_IPS:
        return JsonResponse({"error": "Metrics are served to METRICS_ALLOWED_IPS only (or set METRICS_TOKEN)."},
                            status=403)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_DeadLettersWaiting())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class _DeadLettersWaiting:
    """``tollgate_usage_dead_letters_waiting``: refused usage rows not yet retried or discarded,
    counted in the database at scrape time (left out while the database does not answer)."""

    def collect(self):
        from billing.dead_letter_services import usage_dead_letters_waiting

        try:
            waiting = usage_dead_letters_waiting()
        except Exception as exc:  # the database is down: the other metrics still answer
            log.warning("metrics: cannot count the usage dead letters: %s: %s", type(exc).__name__, exc)
            return
        yield GaugeMetricFamily("tollgate_usage_dead_letters_waiting",
                                "Usage rows the database refused that wait in the dead-letter table "
                                "(manage.py usage_dead_letters retries or discards them)", value=waiting)
