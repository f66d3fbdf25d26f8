"""Bearer keys on the data plane: a hash lookup, remembered by each worker for
API_KEY_CACHE_SECONDS, so a revoked key stops working on every worker within that time while
a busy key costs one database query per worker every few seconds, not one per request."""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from providers.gateway.db import run_db
from providers.gateway.errors import GatewayError, unauthorized
from tenants.keys import key_hash, key_looks_valid
from tenants.models import ApiKey


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: int
    tenant_id: int
    tenant_active: bool
    scope: str
    prefix: str
    expires_at: float | None  # unix time
    revoked_at: datetime | None
    requests_per_minute: int | None
    tokens_per_day: int | None
    allowed_models: frozenset[str]

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"


def _load(digest: str) -> KeyInfo | None:
    row = (
        ApiKey.objects.filter(key_hash=digest)
        .values("pk", "tenant_id", "tenant__is_active", "scope", "prefix", "expires_at", "revoked_at",
                "requests_per_minute", "tokens_per_day", "allowed_models")
        .first()
    )
    if row is None:
        return None
    return KeyInfo(
        key_id=row["pk"],
        tenant_id=row["tenant_id"],
        tenant_active=row["tenant__is_active"],
        scope=row["scope"],
        prefix=row["prefix"],
        expires_at=row["expires_at"].timestamp() if row["expires_at"] else None,
        revoked_at=row["revoked_at"],
        requests_per_minute=row["requests_per_minute"],
        tokens_per_day=row["tokens_per_day"],
        allowed_models=frozenset(row["allowed_models"] or ()),
    )


def _touch(key_id: int) -> None:
    now = timezone.now()
    ApiKey.objects.filter(pk=key_id).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now)).update(
        last_used_at=now
    )


class KeyCache:
    def __init__(self):
        self._entries: dict[str, tuple[float, KeyInfo | None]] = {}
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task] = set()

    async def authenticate(self, authorization: str | None) -> KeyInfo:
        if not authorization:
            raise unauthorized(
                "Missing API key: send 'Authorization: Bearer <your Tollgate key>' (the openai SDK's api_key)."
            )
        scheme, _, raw = authorization.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise unauthorized("Malformed Authorization header: send 'Authorization: Bearer <key>'.")
        if not key_looks_valid(raw):
            raise unauthorized(
                "Invalid API key: Tollgate keys start with 'tg_' followed by 40 letters and digits."
            )
        digest = key_hash(raw)
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= now:
            info = await run_db(_load, digest)
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[digest] = (now + settings.API_KEY_CACHE_SECONDS, info)
        else:
            info = entry[1]
        if info is None:
            raise unauthorized("Invalid API key: no such key. Create one in the console or with the API.")
        if info.revoked_at is not None:
            raise unauthorized(f"API key {info.masked} was revoked; use another key.")
        if info.expires_at is not None and info.expires_at <= time.time():
            raise unauthorized(f"API key {info.masked} has expired; create a new key.")
        if not info.tenant_active:
            raise GatewayError(403, "This tenant is suspended; contact support.", type="permission_error",
                               code="tenant_suspended", usage_status="rejected")
        self._maybe_touch(info.key_id, now)
        return info

    def _maybe_touch(self, key_id: int, now: float) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < settings.API_KEY_TOUCH_SECONDS:
            return
        self._touched[key_id] = now
        task = asyncio.get_running_loop().create_task(run_db(_touch, key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def clear(self) -> None:
        self._entries.clear()
        self._touched.clear()
