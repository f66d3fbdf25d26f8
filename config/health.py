"""``GET /healthz``: 200 when every backing service answers, 503 with the failing one named."""

from django.db import connection
from django.http import JsonResponse

from config.redis import get_redis


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not answering"
        return f"error: {type(exc).__name__}: {exc}".strip()[:300]
    return "ok"


def _check_redis() -> str:
    client = get_redis()
    if client is None:
        return "not configured"
    try:
        client.ping()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}".strip()[:300]
    return "ok"


def healthz(request):
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(v in ("ok", "not configured") for v in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
