"""Bearer keys on the data plane: a hash lookup, remembered by each worker until its tenant's
configuration changes (a revocation changes it, so the next request sees it) or, as a
backstop, for API_KEY_CACHE_SECONDS; a busy key costs no query per request."""

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from gateway.db import run_db
from gateway.errors import rate_limited, unauthorized
from tenants.keys import MALFORMED, UNKNOWN, key_hash, key_looks_valid, key_refusal
from tenants.models import ApiKey
from tenants.services import api_key_touch


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: int | None  # None: a signed-in member (POST /api/test/llm)
    tenant_id: int
    project_id: int | None  # the key's project (None: a signed-in member); on its ledger rows
    scope: str
    prefix: str
    expires_at: datetime | None
    revoked_at: datetime | None
    requests_per_minute: int | None
    tokens_per_day: int | None
    allowed_models: frozenset[str]
    tokens_per_minute: int | None = None

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"

    @classmethod
    def member(cls, tenant_id: int) -> "KeyInfo":
        """A signed-in member using the console or API (no key: only tenant limits apply)."""
        return cls(key_id=None, tenant_id=tenant_id, project_id=None, scope="admin", prefix="", expires_at=None,
                   revoked_at=None, requests_per_minute=None, tokens_per_day=None, allowed_models=frozenset())


def key_info(key: ApiKey) -> KeyInfo:
    """A key already read from the database (POST /api/test/llm's caller)."""
    return KeyInfo(
        key_id=key.pk, tenant_id=key.tenant_id, project_id=key.project_id, scope=key.scope,
        prefix=key.prefix, expires_at=key.expires_at,
        revoked_at=key.revoked_at, requests_per_minute=key.requests_per_minute, tokens_per_day=key.tokens_per_day,
        allowed_models=frozenset(key.allowed_models or ()), tokens_per_minute=key.tokens_per_minute,
    )


def _load(digest: str) -> KeyInfo | None:
    row = (
        ApiKey.objects.filter(key_hash=digest)
        .values("pk", "tenant_id", "project_id", "scope", "prefix", "expires_at", "revoked_at",
                "requests_per_minute", "tokens_per_day", "allowed_models", "tokens_per_minute")
        .first()
    )
    if row is None:
        return None
    return KeyInfo(
        key_id=row["pk"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        scope=row["scope"],
        prefix=row["prefix"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        requests_per_minute=row["requests_per_minute"],
        tokens_per_day=row["tokens_per_day"],
        allowed_models=frozenset(row["allowed_models"] or ()),
        tokens_per_minute=row["tokens_per_minute"],
    )


class KeyCache:
    """Verified keys, most recently used kept (LRU, API_KEY_CACHE_SIZE), each tagged with the
    configuration version of its tenant it was read under: a key read under an older version
    is read again (tenants/config_version.py), so a revocation is seen on the next request.
    Unknown key hashes are remembered too (a bounded LRU, API_KEY_CACHE_SECONDS), so a client
    repeating a bad key costs no query; an address that keeps failing is refused for the rest of
    the minute (GATEWAY_AUTH_FAILURES_PER_MINUTE) before any query is made (not counted while
    Redis is unreachable: keys are still checked in the database)."""

    def __init__(self):
        self._entries: OrderedDict[str, tuple[float, KeyInfo, tuple[str, str] | None]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task] = set()

    @staticmethod
    def digest(authorization: str | None) -> str:
        """The hash of a well-formed bearer key; 401 when the header is missing or malformed."""
        if not authorization:
            raise unauthorized(
                "Missing API key: send 'Authorization: Bearer <your Tollgate key>' (the openai SDK's api_key)."
            )
        scheme, _, raw = authorization.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise unauthorized("Malformed Authorization header: send 'Authorization: Bearer <key>'.")
        if not key_looks_valid(raw):
            raise unauthorized(MALFORMED)
        return key_hash(raw)

    def cached(self, digest: str) -> tuple[KeyInfo | None, tuple[str, str] | None]:
        """A remembered key and the version it was read under, or (None, None)."""
        entry = self._entries.get(digest)
        if entry is None:
            return None, None
        if entry[0] <= time.monotonic():
            del self._entries[digest]
            return None, None
        self._entries.move_to_end(digest)
        return entry[1], entry[2]

    async def load(self, digest: str, *, address: str, state, version: tuple[str, str] | None) -> KeyInfo:
        """Read a key from the database and remember it under ``version`` (the version of its
        tenant's configuration read before this read began, or None when not known yet)."""
        now = time.monotonic()
        until = self._unknown.get(digest)
        if until is not None and until > now:
            raise unauthorized(UNKNOWN)
        blocked = await state.auth_blocked(address, settings.GATEWAY_AUTH_FAILURES_PER_MINUTE)
        if blocked:
            raise rate_limited(
                f"Too many failed authentications from {address}: more than "
                f"{settings.GATEWAY_AUTH_FAILURES_PER_MINUTE} a minute. Check the API key and retry after "
                f"{blocked:.0f} s.", blocked, code="too_many_auth_failures",
            )
        info = await run_db(_load, digest)
        if info is None:
            self._unknown[digest] = now + settings.API_KEY_CACHE_SECONDS
            self._unknown.move_to_end(digest)
            while len(self._unknown) > settings.API_KEY_NEGATIVE_CACHE_SIZE:
                self._unknown.popitem(last=False)
            raise unauthorized(UNKNOWN)
        self._unknown.pop(digest, None)
        self._entries[digest] = (now + settings.API_KEY_CACHE_SECONDS, info, version)
        self._entries.move_to_end(digest)
        while len(self._entries) > settings.API_KEY_CACHE_SIZE:
            self._entries.popitem(last=False)
        return info

    def check(self, info: KeyInfo) -> KeyInfo:
        """Refuse a revoked or expired key (a suspended tenant is refused with its routing
        table, GatewayApp._tenant); note its use."""
        if info.revoked_at is not None or info.expires_at is not None:
            refusal = key_refusal(masked=info.masked, revoked_at=info.revoked_at, expires_at=info.expires_at,
                                  now=timezone.now())
            if refusal:
                raise unauthorized(refusal)
        self._maybe_touch(info, time.monotonic())
        return info

    def _maybe_touch(self, info: KeyInfo, now: float) -> None:
        """last_used_at, through the one writer every side uses; this worker asks at most once
        per key per API_KEY_TOUCH_SECONDS."""
        last = self._touched.get(info.key_id)
        if last is not None and now - last < settings.API_KEY_TOUCH_SECONDS:
            return
        self._touched[info.key_id] = now
        task = asyncio.get_running_loop().create_task(
            run_db(api_key_touch, key_id=info.key_id, tenant_id=info.tenant_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def clear(self) -> None:
        self._entries.clear()
        self._unknown.clear()
        self._touched.clear()
