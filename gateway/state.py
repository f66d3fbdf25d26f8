"""State every worker must share: rate-limit counters, token-per-day counters, deployment
failure counts and cooldowns, and the response cache. Redis when REDIS_URL is set (one round
trip admits a request: limits checked and counted, cooldowns read, in one Lua script); an
in-process twin with the same behaviour on the embedded default, which runs one process.

When Redis cannot be reached or does not answer within REDIS_TIMEOUT_SECONDS, what admission
needs (limits, budgets, configuration versions) raises ``StoreUnavailable``, the 503 every door
answers in its own shape (and the app may serve a tenant that fails open instead); what only
helps (the response cache, failure counting, the brute-force counter) is skipped. After a
failure the state does not ask Redis again for OUTAGE_PROBE_SECONDS, so an outage costs each
request no wait, and it logs once when Redis goes away and once when it is back."""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from django.conf import settings

from billing.spend import (
    BUCKET_TTL,
    RESERVATION_TTL,
    RESERVE_SCRIPT,
    SETTLE_SCRIPT,
)
from core import redis as core_redis
from gateway.errors import GatewayError
from providers.cooldowns import cooldown_fails_key, cooldown_key
from tenants import config_version
from tenants.config_version import PLATFORM, version_key

log = logging.getLogger("tollgate.gateway")

# A refused, reset or slow Redis (the asyncio client may also let a bare TimeoutError through).
REDIS_DOWN = (*core_redis.REDIS_DOWN, TimeoutError)
OUTAGE_PROBE_SECONDS = 1.0  # after a failure, Redis is asked again after this long
OUTAGE_RETRY_AFTER = 5.0  # the retry-after of a request refused during an outage


class StoreUnavailable(GatewayError):
    """Redis, the rate-limit and budget store, cannot be reached: the request cannot be admitted
    (503, recorded as rejected ``store_unavailable``)."""

    def __init__(self):
        super().__init__(
            503, "The rate-limit and budget store is unreachable, so this request cannot be admitted; retry in "
            f"{OUTAGE_RETRY_AFTER:.0f} s. (Operators: /healthz names the failed dependency.)",
            type="server_error", code="store_unavailable", retry_after=OUTAGE_RETRY_AFTER, usage_status="rejected",
        )

# KEYS: the four limit counters, the tenant's and the platform's configuration version
# (tenants/config_version.py), then one cooldown flag per deployment. ARGV: the four limits and
# the two version tokens the worker's cached routing table was loaded under. Answers
# {-1, 0, tenant token, platform token} when the cache is stale (nothing counted: the worker
# reloads and asks again), else {refused limit or 0, used, cooling flags...}.
_ADMIT = """
local vt = redis.call('GET', KEYS[5]) or ''
local va = redis.call('GET', KEYS[6]) or ''
if vt ~= ARGV[5] or va ~= ARGV[6] then return {-1, 0, vt, va} end
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
for _, i in ipairs({3, 4, 1, 2}) do
  if limits[i] > 0 then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used >= limits[i] then return {i, used} end
  end
end
for i = 1, 2 do
  if limits[i] > 0 then
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], 120) end
  end
end
local out = {0, 0}
for i = 7, #KEYS do out[#out + 1] = redis.call('EXISTS', KEYS[i]) end
return out
"""

_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# Which limit refused a request (index of the refusing counter in the admission script).
TENANT_RPM, KEY_RPM, TENANT_TPD, KEY_TPD = 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class Admission:
    refused: int  # 0 = admitted, else TENANT_RPM / KEY_RPM / TENANT_TPD / KEY_TPD
    used: int
    cooling: tuple[bool, ...]  # per deployment, in the order asked
    retry_after: float = 0.0
    stale: tuple[str, str] | None = None  # the current versions, when the caller's were not


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _minute(now: float) -> int:
    return int(now // 60)


_day_cache: tuple[int, str] = (-1, "")


def _day(now: float) -> str:
    global _day_cache
    minute = int(now // 60)
    if _day_cache[0] != minute:  # formatted once a minute, not once a request
        _day_cache = (minute, datetime.fromtimestamp(now, UTC).strftime("%Y%m%d"))
    return _day_cache[1]


def seconds_to_next_minute(now: float) -> float:
    return 60 - (now % 60)


def seconds_to_utc_midnight(now: float) -> float:
    current = datetime.fromtimestamp(now, UTC)
    midnight = (current + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - current).total_seconds()


def _keys(tenant_id: int, key_id: int, now: float) -> list[str]:
    minute, day = _minute(now), _day(now)
    return [
        f"tg:rl:t{tenant_id}:m{minute}",
        f"tg:rl:t{tenant_id}:k{key_id}:m{minute}",
        f"tg:tpd:t{tenant_id}:d{day}",
        f"tg:tpd:t{tenant_id}:k{key_id}:d{day}",
    ]


def _auth_key(address: str, now: float) -> str:
    return f"tg:af:{address}:m{_minute(now)}"


def _retry_after(refused: int, now: float) -> float:
    if refused in (TENANT_RPM, KEY_RPM):
        return seconds_to_next_minute(now)
    return seconds_to_utc_midnight(now)


class RedisState:
    def __init__(self, url: str):
        timeout = settings.REDIS_TIMEOUT_SECONDS
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        self._admit = self.redis.register_script(_ADMIT)
        self._fail = self.redis.register_script(_FAIL)
        self._budget = self.redis.register_script(RESERVE_SCRIPT)
        self._settle = self.redis.register_script(SETTLE_SCRIPT)
        self._down_since: float | None = None  # monotonic time of the first failure of this outage
        self._ask_after = 0.0  # no Redis call before this monotonic time (an outage was just seen)

    @property
    def down(self) -> bool:
        """True while the last call found Redis unreachable."""
        return self._down_since is not None

    async def _call(self, work):
        """``await work()`` — a coroutine function of Redis calls — or StoreUnavailable when
        Redis is unreachable, slow, or was so less than OUTAGE_PROBE_SECONDS ago."""
        now = time.monotonic()
        if now < self._ask_after:
            raise StoreUnavailable()
        try:
            result = await work()
        except REDIS_DOWN as exc:
            self._ask_after = time.monotonic() + OUTAGE_PROBE_SECONDS
            if self._down_since is None:
                self._down_since = now
                log.error("Redis is unreachable (%s: %s): /v1 admission follows GATEWAY_REDIS_OUTAGE and the "
                          "tenants' settings until it is back", type(exc).__name__, exc)
            raise StoreUnavailable() from exc
        if self._down_since is not None:
            log.warning("Redis is reachable again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        return result

    async def _optional(self, work, default):
        """What only helps (cache, counters): its default while Redis is unreachable."""
        try:
            return await self._call(work)
        except StoreUnavailable:
            return default

    async def admit(
        self, *, tenant_id: int, key_id: int, limits: tuple[int, int, int, int], provider_model_ids: list[int],
        versions: tuple[str, str],
    ) -> Admission:
        """Check and count the limits and read the deployments' cooldowns, unless the routing
        table the caller holds is older than the tenant's or the platform's configuration
        (then nothing is counted and ``stale`` carries the current versions)."""
        now = time.time()
        keys = [*_keys(tenant_id, key_id, now), version_key(tenant_id), PLATFORM,
                *(cooldown_key(tenant_id, pm) for pm in provider_model_ids)]
        result = await self._call(lambda: self._admit(keys=keys, args=[*limits, *versions]))
        refused, used = int(result[0]), int(result[1])
        if refused < 0:
            return Admission(0, 0, (), stale=(_text(result[2]), _text(result[3])))
        cooling = tuple(bool(int(flag)) for flag in result[2:])
        return Admission(refused, used, cooling, _retry_after(refused, now) if refused else 0.0)

    async def versions(self, tenant_id: int) -> tuple[str, str]:
        """The current configuration versions of a tenant and of the platform."""
        tenant, platform = await self._call(lambda: self.redis.mget(version_key(tenant_id), PLATFORM))
        return _text(tenant), _text(platform)

    async def cooling(self, tenant_id: int, provider_model_ids: list[int]) -> tuple[bool, ...]:
        async def work():
            async with self.redis.pipeline(transaction=False) as pipe:
                for pm in provider_model_ids:
                    pipe.exists(cooldown_key(tenant_id, pm))
                return tuple(bool(flag) for flag in await pipe.execute())

        return await self._call(work)

    async def auth_blocked(self, address: str, limit: int) -> float:
        """Seconds until ``address`` may try keys again (0: it may now, or Redis is unreachable:
        the key check itself is the database's)."""
        now = time.time()
        failures = await self._optional(lambda: self.redis.get(_auth_key(address, now)), None)
        return seconds_to_next_minute(now) if failures is not None and int(failures) >= limit else 0.0

    async def auth_failed(self, address: str) -> None:
        name = _auth_key(address, time.time())

        async def work():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(name)
                pipe.expire(name, 120)
                await pipe.execute()

        await self._optional(work, None)

    async def record_failure(self, *, tenant_id: int, provider_model_id: int, allowed_fails: int,
                             cooldown_seconds: int) -> bool:
        """Count a failure; True when this one started a cooldown."""
        started = await self._optional(lambda: self._fail(
            keys=[cooldown_fails_key(tenant_id, provider_model_id), cooldown_key(tenant_id, provider_model_id)],
            args=[allowed_fails, settings.GATEWAY_FAIL_WINDOW_SECONDS, max(cooldown_seconds, 1)],
        ), 0)
        return bool(int(started))

    async def add_tokens(self, counts: dict[tuple[int, int], int]) -> None:
        """Add used tokens per (tenant, key) to today's counters, in one pipeline."""
        if not counts:
            return
        now = time.time()

        async def work():
            async with self.redis.pipeline(transaction=False) as pipe:
                for (tenant_id, key_id), tokens in counts.items():
                    _, _, tenant_day, key_day = _keys(tenant_id, key_id, now)
                    for name in (tenant_day, key_day):
                        pipe.incrby(name, tokens)
                        pipe.expire(name, 2 * 86400)
                await pipe.execute()

        await self._call(work)

    async def budget_admit(self, keys: list[str], args: list[int], request_id: str) -> list[int]:
        result = await self._call(lambda: self._budget(keys=keys, args=[*args, request_id, RESERVATION_TTL]))
        return [int(v) for v in result]

    async def budget_seed(self, values: dict[str, int]) -> None:
        async def work():
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(key, value, nx=True, ex=BUCKET_TTL)
                await pipe.execute()

        await self._call(work)

    async def budget_settle(self, keys: list[str], args: list[int | str]) -> None:
        """Release reservations and add costs to buckets: SETTLE_SCRIPT, with the KEYS and
        ARGV of billing.spend.settle_arguments (the usage writer settles)."""
        await self._call(lambda: self._settle(keys=keys, args=args))

    async def cache_get(self, key: str) -> bytes | None:
        """A cached answer; None (a miss) while Redis is unreachable."""
        return await self._optional(lambda: self.redis.get(key), None)

    async def cache_set(self, key: str, value: bytes, ttl: int) -> None:
        await self._optional(lambda: self.redis.set(key, value, ex=max(ttl, 1)), None)

    async def close(self) -> None:
        try:
            await self.redis.aclose()
        except REDIS_DOWN:
            pass


class LocalState:
    """The same contract in one process (embedded default, no Redis)."""

    def __init__(self):
        self.counters: dict[str, int] = {}
        self.expiry: dict[str, float] = {}
        self.cache: dict[str, tuple[float, bytes]] = {}
        self.reservations: dict[str, dict[str, tuple[int, float]]] = {}  # scope -> id -> (amount, expiry)

    def _get(self, name: str, now: float) -> int:
        if self.expiry.get(name, now + 1) <= now:
            self.counters.pop(name, None)
            self.expiry.pop(name, None)
        return self.counters.get(name, 0)

    def _incr(self, name: str, by: int, ttl: float, now: float) -> int:
        value = self._get(name, now) + by
        self.counters[name] = value
        self.expiry.setdefault(name, now + ttl)
        return value

    async def admit(self, *, tenant_id, key_id, limits, provider_model_ids, versions) -> Admission:
        current = await self.versions(tenant_id)
        if tuple(versions) != current:
            return Admission(0, 0, (), stale=current)
        now = time.time()
        names = _keys(tenant_id, key_id, now)
        for index in (2, 3, 0, 1):
            if limits[index] > 0:
                used = self._get(names[index], now)
                if used >= limits[index]:
                    return Admission(index + 1, used, (), _retry_after(index + 1, now))
        for index in (0, 1):
            if limits[index] > 0:
                self._incr(names[index], 1, 120, now)
        return Admission(0, 0, await self.cooling(tenant_id, provider_model_ids))

    async def versions(self, tenant_id: int) -> tuple[str, str]:
        return (config_version.LOCAL.get(version_key(tenant_id), ""), config_version.LOCAL.get(PLATFORM, ""))

    async def cooling(self, tenant_id: int, provider_model_ids: list[int]) -> tuple[bool, ...]:
        now = time.time()
        return tuple(self._get(cooldown_key(tenant_id, pm), now) > 0 for pm in provider_model_ids)

    async def auth_blocked(self, address: str, limit: int) -> float:
        now = time.time()
        return seconds_to_next_minute(now) if self._get(_auth_key(address, now), now) >= limit else 0.0

    async def auth_failed(self, address: str) -> None:
        now = time.time()
        self._incr(_auth_key(address, now), 1, 120, now)

    async def record_failure(self, *, tenant_id, provider_model_id, allowed_fails, cooldown_seconds) -> bool:
        now = time.time()
        fails = cooldown_fails_key(tenant_id, provider_model_id)
        if self._incr(fails, 1, settings.GATEWAY_FAIL_WINDOW_SECONDS, now) > allowed_fails:
            cool = cooldown_key(tenant_id, provider_model_id)
            self.counters[cool] = 1
            self.expiry[cool] = now + max(cooldown_seconds, 1)
            self.counters.pop(fails, None)
            self.expiry.pop(fails, None)
            return True
        return False

    async def add_tokens(self, counts) -> None:
        now = time.time()
        for (tenant_id, key_id), tokens in counts.items():
            _, _, tenant_day, key_day = _keys(tenant_id, key_id, now)
            self._incr(tenant_day, tokens, 2 * 86400, now)
            self._incr(key_day, tokens, 2 * 86400, now)

    def _reserved(self, scope: str, now: float) -> int:
        held = self.reservations.get(scope, {})
        for request_id in [r for r, (_, until) in held.items() if until <= now]:
            del held[request_id]
        return sum(amount for amount, _ in held.values())

    async def budget_admit(self, keys: list[str], args: list[int], request_id: str) -> list[int]:
        now = time.time()
        resv, scopes = args[0], args[1]
        a, k = 2, 0
        reserve = []
        for s in range(1, scopes + 1):
            nd, nb = args[a], args[a + 1]
            a += 2
            reserved = self._reserved(keys[k], now)
            day_keys = keys[k + 3:k + 3 + nd]
            missing = [i + 1 for i, key in enumerate(day_keys)
                       if key not in self.counters or self.expiry.get(key, now + 1) <= now]
            if missing:
                return [1, s, *missing]
            vals = [self._get(key, now) for key in day_keys]
            for b in range(1, nb + 1):
                amount, action, n = args[a], args[a + 1], args[a + 2]
                a += 3
                spent = sum(vals[nd - n:])
                if spent + reserved + resv > amount and action in (1, 2):
                    return [action + 1, s, b, spent, reserved]
            reserve.append(keys[k])
            k += 3 + nd
        if resv > 0:
            for key in reserve:
                self.reservations.setdefault(key, {})[request_id] = (resv, now + RESERVATION_TTL)
        return [0]

    async def budget_seed(self, values: dict[str, int]) -> None:
        now = time.time()
        for key, value in values.items():
            if self._get(key, now) == 0 and key not in self.counters:
                self.counters[key] = value
                self.expiry[key] = now + BUCKET_TTL

    async def budget_settle(self, keys: list[str], args: list[int | str]) -> None:
        """SETTLE_SCRIPT, the same steps (billing.spend): the releases, the bucket costs, then
        each replayed request's release and cost, only if its reservation is still held."""
        now = time.time()

        def release(scope: str, request_id) -> bool:
            return self.reservations.get(scope, {}).pop(request_id, None) is not None

        def add(key: str, cost: int) -> None:
            if key in self.counters:
                self.counters[key] = self._get(key, now) + cost

        releases, buckets = args[0], args[1]
        for i in range(releases):
            release(keys[3 * i], args[i + 2])
        k, a = 3 * releases, releases + 2
        for key, cost in zip(keys[k:k + buckets], args[a:a + buckets], strict=True):
            add(key, cost)
        k, a = k + buckets, a + buckets
        while a < len(args):
            request_id, scopes, nb, cost = args[a:a + 4]
            a += 4
            held = [release(keys[k + 3 * s], request_id) for s in range(scopes)]
            k += 3 * scopes
            if any(held):
                for key in keys[k:k + nb]:
                    add(key, cost)
            k += nb

    async def cache_get(self, key: str) -> bytes | None:
        entry = self.cache.get(key)
        if entry is None or entry[0] <= time.time():
            return None
        return entry[1]

    async def cache_set(self, key: str, value: bytes, ttl: int) -> None:
        if len(self.cache) > 10_000:
            self.cache.clear()
        self.cache[key] = (time.time() + ttl, value)

    async def close(self) -> None:
        return None


def shared_state() -> RedisState | LocalState:
    return RedisState(settings.REDIS_URL) if settings.REDIS_URL else LocalState()
