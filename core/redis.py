"""One Redis client per process, for the state that every worker must share (counters,
cooldowns, reservations). ``None`` on the embedded default, where there is no Redis. Every
command waits at most REDIS_TIMEOUT_SECONDS; callers treat ``REDIS_DOWN`` (a refused or slow
Redis) as "Redis is unreachable" and degrade rather than fail."""

from functools import lru_cache

import redis
from django.conf import settings
from kombu.exceptions import OperationalError

# What a client raises when Redis cannot be reached or does not answer in time; QUEUE_DOWN adds
# what Celery raises when its broker (Redis by default) cannot be reached.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
QUEUE_DOWN = (*REDIS_DOWN, OperationalError)
# Options of a Celery task that needs Redis: retried with backoff (30 s, 60 s, … up to 10
# minutes, jittered) while it cannot be reached, rather than lost to a traceback.
REDIS_RETRY = {"autoretry_for": QUEUE_DOWN, "retry_backoff": 30, "retry_backoff_max": 600, "retry_jitter": True,
               "max_retries": 8}


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS,
        socket_timeout=settings.REDIS_TIMEOUT_SECONDS, health_check_interval=30,
    )
