"""State every worker must share: rate-limit counters, token-per-day counters, deployment
failure counts and cooldowns, and the response cache. Redis when REDIS_URL is set (one round
trip admits a request: limits checked and counted, cooldowns read, in one Lua script); an
in-process twin with the same behaviour on the embedded default, which runs one process."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from django.conf import settings

from providers.gateway.budgets import BUCKET_TTL, RESERVATION_TTL

_ADMIT = """
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
for i = 5, #KEYS do out[#out + 1] = redis.call('EXISTS', KEYS[i]) end
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

# Budgets (see providers/gateway/budgets.py). Per scope: its reservation key, then its day
# buckets ascending to today; per budget: amount, action (0 alert, 1 block, 2 downgrade) and
# how many of the last days it counts. Answers {0} (admitted and reserved), {1, scope, missing
# day indexes...} (rebuild those buckets first), {2, scope, budget, spent, reserved} (blocked)
# or {3, scope, budget, spent, reserved} (downgrade).
_BUDGET = """
local resv = tonumber(ARGV[1])
local scopes = tonumber(ARGV[2])
local a, k = 3, 1
local reserve = {}
for s = 1, scopes do
  local nd, nb = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local reserved = tonumber(redis.call('GET', KEYS[k]) or '0')
  local vals = redis.call('MGET', unpack(KEYS, k + 1, k + nd))
  local missing = {}
  for i = 1, nd do if not vals[i] then missing[#missing + 1] = i end end
  if #missing > 0 then return {1, s, unpack(missing)} end
  for b = 1, nb do
    local amount, action, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
    local spent = 0
    for i = nd - n + 1, nd do spent = spent + tonumber(vals[i]) end
    if spent + reserved + resv > amount then
      if action == 1 then return {2, s, b, spent, reserved} end
      if action == 2 then return {3, s, b, spent, reserved} end
    end
  end
  reserve[#reserve + 1] = KEYS[k]
  k = k + 1 + nd
end
if resv > 0 then
  for _, key in ipairs(reserve) do
    redis.call('INCRBY', key, resv)
    redis.call('EXPIRE', key, ARGV[a])
  end
end
return {0}
"""

# Settle finished requests: release reservations (never below zero) and add real costs to
# day buckets that exist (a missing bucket is rebuilt from the rollups, which hold the cost).
_SETTLE = """
local releases = tonumber(ARGV[1])
for i = 1, releases do
  if redis.call('DECRBY', KEYS[i], ARGV[i + 1]) < 0 then
    redis.call('SET', KEYS[i], '0', 'EX', ARGV[#ARGV])
  end
end
for i = releases + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[i + 1]) end
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


def cooldown_key(tenant_id: int, provider_model_id: int) -> str:
    return f"tg:cd:t{tenant_id}:pm{provider_model_id}"


def _fails_key(tenant_id: int, provider_model_id: int) -> str:
    return f"tg:cf:t{tenant_id}:pm{provider_model_id}"


def _retry_after(refused: int, now: float) -> float:
    if refused in (TENANT_RPM, KEY_RPM):
        return seconds_to_next_minute(now)
    return seconds_to_utc_midnight(now)


class RedisState:
    def __init__(self, url: str):
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._admit = self.redis.register_script(_ADMIT)
        self._fail = self.redis.register_script(_FAIL)
        self._budget = self.redis.register_script(_BUDGET)
        self._settle = self.redis.register_script(_SETTLE)

    async def admit(
        self, *, tenant_id: int, key_id: int, limits: tuple[int, int, int, int], provider_model_ids: list[int]
    ) -> Admission:
        now = time.time()
        keys = _keys(tenant_id, key_id, now) + [cooldown_key(tenant_id, pm) for pm in provider_model_ids]
        result = await self._admit(keys=keys, args=list(limits))
        refused, used = int(result[0]), int(result[1])
        cooling = tuple(bool(int(flag)) for flag in result[2:])
        return Admission(refused, used, cooling, _retry_after(refused, now) if refused else 0.0)

    async def record_failure(self, *, tenant_id: int, provider_model_id: int, allowed_fails: int,
                             cooldown_seconds: int) -> bool:
        """Count a failure; True when this one started a cooldown."""
        started = await self._fail(
            keys=[_fails_key(tenant_id, provider_model_id), cooldown_key(tenant_id, provider_model_id)],
            args=[allowed_fails, settings.GATEWAY_FAIL_WINDOW_SECONDS, max(cooldown_seconds, 1)],
        )
        return bool(int(started))

    async def add_tokens(self, counts: dict[tuple[int, int], int]) -> None:
        """Add used tokens per (tenant, key) to today's counters, in one pipeline."""
        if not counts:
            return
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (tenant_id, key_id), tokens in counts.items():
                _, _, tenant_day, key_day = _keys(tenant_id, key_id, now)
                for name in (tenant_day, key_day):
                    pipe.incrby(name, tokens)
                    pipe.expire(name, 2 * 86400)
            await pipe.execute()

    async def budget_admit(self, keys: list[str], args: list[int]) -> list[int]:
        return [int(v) for v in await self._budget(keys=keys, args=[*args, RESERVATION_TTL])]

    async def budget_seed(self, values: dict[str, int]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, value in values.items():
                pipe.set(key, value, nx=True, ex=BUCKET_TTL)
            await pipe.execute()

    async def budget_settle(self, releases: dict[str, int], adds: dict[str, int]) -> None:
        if not releases and not adds:
            return
        keys = [*releases, *adds]
        args = [len(releases), *releases.values(), *adds.values(), RESERVATION_TTL]
        await self._settle(keys=keys, args=args)

    async def cache_get(self, key: str) -> bytes | None:
        return await self.redis.get(key)

    async def cache_set(self, key: str, value: bytes, ttl: int) -> None:
        await self.redis.set(key, value, ex=max(ttl, 1))

    async def close(self) -> None:
        await self.redis.aclose()


class LocalState:
    """The same contract in one process (embedded default, no Redis)."""

    def __init__(self):
        self.counters: dict[str, int] = {}
        self.expiry: dict[str, float] = {}
        self.cache: dict[str, tuple[float, bytes]] = {}

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

    async def admit(self, *, tenant_id, key_id, limits, provider_model_ids) -> Admission:
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
        cooling = tuple(self._get(cooldown_key(tenant_id, pm), now) > 0 for pm in provider_model_ids)
        return Admission(0, 0, cooling)

    async def record_failure(self, *, tenant_id, provider_model_id, allowed_fails, cooldown_seconds) -> bool:
        now = time.time()
        fails = _fails_key(tenant_id, provider_model_id)
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

    async def budget_admit(self, keys: list[str], args: list[int]) -> list[int]:
        now = time.time()
        resv, scopes = args[0], args[1]
        a, k = 2, 0
        reserve = []
        for s in range(1, scopes + 1):
            nd, nb = args[a], args[a + 1]
            a += 2
            reserved = self._get(keys[k], now)
            day_keys = keys[k + 1:k + 1 + nd]
            missing = [i + 1 for i, key in enumerate(day_keys) if key not in self.counters or self.expiry.get(key, now + 1) <= now]
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
            k += 1 + nd
        if resv > 0:
            for key in reserve:
                self.counters[key] = self._get(key, now) + resv
                self.expiry[key] = now + RESERVATION_TTL
        return [0]

    async def budget_seed(self, values: dict[str, int]) -> None:
        now = time.time()
        for key, value in values.items():
            if self._get(key, now) == 0 and key not in self.counters:
                self.counters[key] = value
                self.expiry[key] = now + BUCKET_TTL

    async def budget_settle(self, releases: dict[str, int], adds: dict[str, int]) -> None:
        now = time.time()
        for key, value in releases.items():
            self.counters[key] = max(0, self._get(key, now) - value)
        for key, value in adds.items():
            if key in self.counters:
                self.counters[key] = self._get(key, now) + value

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
