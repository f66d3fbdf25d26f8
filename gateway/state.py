"""State every worker must share: rate-limit counters, token-per-day counters, deployment
failure counts and cooldowns, budget reservations (with each worker's list of those it holds,
released when a dead worker's journal is taken over: billing.spend), and the response cache.
Redis when REDIS_URL is set (one round trip admits a request: limits checked and counted,
cooldowns read, in one Lua script); an in-process twin with the same behaviour on the embedded
default, which runs one process.

When Redis cannot be reached or does not answer within REDIS_TIMEOUT_SECONDS, what admission
needs (limits, budgets, configuration versions) raises ``StoreUnavailable``, the 503 every door
answers in its own shape (and the app may serve a tenant that fails open instead); what only
helps (the response cache, failure counting, the brute-force counter) is skipped. After a
failure the state does not ask Redis again for OUTAGE_PROBE_SECONDS, so an outage costs each
request no wait, and it logs once when Redis goes away and once when it is back."""

import logging
import math
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import redis.asyncio as aioredis
from django.conf import settings

from billing.spend import (
    BUCKET_TTL,
    BUDGET_LUA,
    HELD_RELEASE_SCRIPT,
    HELD_TTL,
    RESERVATION_TTL,
    SEED_SCRIPT,
    SETTLE_SCRIPT,
    snapshot_saw,
)
from core import redis as core_redis
from gateway.deployments import IN_FLIGHT_SECONDS, Candidate, Ended, Measure, rank
from gateway.errors import GatewayError
from providers import traffic
from providers.cooldowns import RATE_FLAG, cooldown_fails_key, cooldown_key
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

# The one admission round trip (BUDGET_LUA, billing's, is prepended). KEYS: the tenant's and the
# platform's configuration version (tenants/config_version.py). ARGV: the two version tokens the
# worker's cached routing table was loaded under ('*': not checked), now (epoch seconds), the
# request id, the worker's held hash (billing.spend.held_key: the request and the totals it
# reserved in are listed there, for a takeover if the worker dies; '': not listed); the limit
# counters as one string "key,limit,add,lifetime,frees,kept;…" (what admission adds: 1 for
# requests per minute, the request's worst-case tokens for tokens per minute, 0 for tokens per
# day, which settlement counts; the counter's lifetime, whole seconds until it frees up, and 1
# when Redis must hold it — a tokens-per-day counter, rebuilt from the rollups when missing —
# else 0), in precedence order (tenant, project, key, end user); the budget section
# (billing.spend.budget_arguments); then the deployments: when this request stops counting in
# flight, the ordering code and 1 for a stream (gateway/deployments.py), how long a minute counter
# and an in-flight set are kept, the key templates of a deployment's cooldown flag, this minute's
# request and token counters, in-flight set and latency hash (providers/cooldowns.py,
# providers/traffic.py; '%s' stands for the provider model), and the deployments in the worker's
# preorder as one string "pm:group:rpm:tpm,…" (limits 0: none). Passing templates and strings
# rather than keys per deployment keeps what the worker encodes per request small (Tollgate's
# Redis is one instance, not a cluster: its scripts already touch several tenants' keys).
# Every check is made before anything is counted, and a refusal counts nothing. Answers
# {-1, 0, tenant token, platform token} when the cache is stale (the worker reloads and asks
# again); {5, counter…} when tokens-per-day counters are missing (rebuilt from the rollups first,
# all of them at once); {4, scope, missing days…} when budget buckets must be; of the limits and
# block budgets that refuse, the one that frees up last (ties: the first, the broadest scope):
# {1, counter, used} or {2, scope, budget, spent, reserved}; {3, scope, budget, spent, reserved}
# when a downgrade budget is spent (the worker asks again for the cheaper alias); else, counted
# and reserved, {0, 0, then (deployment index, state, seconds to wait) in the order to try}, the
# first usable one counted (this minute's requests, in flight). deployments.rank is the same in
# Python.
_ADMIT = BUDGET_LUA + """
if ARGV[1] ~= '*' then
  local vt = redis.call('GET', KEYS[1]) or ''
  local va = redis.call('GET', KEYS[2]) or ''
  if vt ~= ARGV[1] or va ~= ARGV[2] then return {-1, 0, vt, va} end
end
local now, rid, held = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local now_ms = math.floor(now * 1000)
local refusal, frees, count, lost = nil, -1, {}, {}
local i = 0
for key, limit, add, ttl, free, kept in string.gmatch(ARGV[6], '([^,;]+),(%d+),(%d+),(%d+),(%d+),(%d)') do
  i = i + 1
  limit, add, free = tonumber(limit), tonumber(add), tonumber(free)
  local used = redis.call('GET', key)
  if not used and kept == '1' then lost[#lost + 1] = i end
  used = tonumber(used or '0')
  if used + math.max(add, 1) > limit then
    if free > frees then refusal, frees = {1, i, used}, free end
  elseif add > 0 then count[#count + 1] = {key, add, ttl} end
end
if #lost > 0 then return {5, unpack(lost)} end
local a = 7
local budget_refusal, budget_frees, downgrade, reservation
a, budget_refusal, budget_frees, downgrade, reservation = budgets_check(a, now_ms)
if budget_refusal and budget_refusal[1] == 4 then return budget_refusal end
if budget_refusal and budget_frees > frees then refusal = budget_refusal end
if refusal then return refusal end
if downgrade then return downgrade end
for _, c in ipairs(count) do
  if redis.call('INCRBY', c[1], c[2]) == c[2] then redis.call('EXPIRE', c[1], c[3]) end
end
budgets_reserve(reservation, rid, now_ms, held)
local until_, code, stream = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2] == '1'
local traffic_keep, flight_keep = ARGV[a + 3], ARGV[a + 4]
local cool_t, requests_t, tokens_t, flight_t, latency_t = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8],
  ARGV[a + 9]
local rows, i = {}, 0
for pm, group, rpm, tpm in string.gmatch(ARGV[a + 10], '(%d+):(-?%d+):(%d+):(%d+)') do
  i = i + 1
  rpm, tpm = tonumber(rpm), tonumber(tpm)
  local requests_key = string.format(requests_t, pm)
  local requests, tokens = 0, 0
  if rpm > 0 or code == 3 then requests = tonumber(redis.call('GET', requests_key) or '0') end
  if tpm > 0 or code == 3 then tokens = tonumber(redis.call('GET', string.format(tokens_t, pm)) or '0') end
  local state, wait = 0, 0
  local flag = redis.call('GET', string.format(cool_t, pm))
  if flag and string.sub(flag, 1, 1) == '""" + RATE_FLAG + """' then
    state, wait = 4, math.max(1, math.ceil(tonumber(string.sub(flag, 2)) - now))
  elseif flag then state = 1
  elseif rpm > 0 and requests >= rpm then state = 2
  elseif tpm > 0 and tokens >= tpm then state = 3 end
  local metric = 0
  if code == 1 then
    local flight = string.format(flight_t, pm)
    redis.call('ZREMRANGEBYSCORE', flight, '-inf', now)
    metric = redis.call('ZCARD', flight)
  elseif code == 2 then
    local lat = redis.call('HMGET', string.format(latency_t, pm), 'lat', 'ttft')
    local first, second = lat[1], lat[2]
    if stream then first, second = lat[2], lat[1] end
    metric = tonumber(first or second or '0')
  elseif code == 3 then
    if rpm > 0 then metric = requests / rpm end
    if tpm > 0 and tokens / tpm > metric then metric = tokens / tpm end
  end
  rows[i] = {tonumber(group), metric, i, state, wait, pm, requests_key}
end
table.sort(rows, function(x, y)
  if x[1] ~= y[1] then return x[1] < y[1] end
  if x[2] ~= y[2] then return x[2] < y[2] end
  return x[3] < y[3]
end)
local out, counted = {0, 0}, false
for _, r in ipairs(rows) do
  if r[4] == 0 and not counted then
    counted = true
    if redis.call('INCR', r[7]) == 1 then redis.call('EXPIRE', r[7], traffic_keep) end
    local flight = string.format(flight_t, r[6])
    redis.call('ZADD', flight, until_, rid)
    redis.call('EXPIRE', flight, flight_keep)
  end
  out[#out + 1] = r[3] - 1
  out[#out + 1] = r[4]
  out[#out + 1] = r[5]
end
return out
"""

# A fallback to a deployment the admission did not count: counted now.
_TAKE = """
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# Ended requests (deployments.Tally), in one call: ARGV = how long a minute counter and a latency
# hash are kept, the latency sample's weight in the moving average, the key templates of the
# in-flight set, this minute's token counter and the latency hash ('%s' for the tenant, then the
# provider model), then the requests as one string "tenant,request id,served pm,tokens,latency
# ms,stream,taken pm taken pm…;…" (served and latency empty when none): each one's in-flight
# entries removed, its tokens added to the minute's counter, its latency folded into the average.
_RELEASE = """
local keep, weight, latency_keep = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local flight_t, tokens_t, latency_t = ARGV[4], ARGV[5], ARGV[6]
local n = 0
for entry in string.gmatch(ARGV[7], '[^;]+') do
  local t, rid, served, tokens, lat, stream, taken =
    string.match(entry, '^(%d+),([^,]+),(%d*),(%d+),([%d%.]*),(%d),(.*)$')
  if t then
    n = n + 1
    for pm in string.gmatch(taken, '%d+') do redis.call('ZREM', string.format(flight_t, t, pm), rid) end
    if served ~= '' and tonumber(tokens) > 0 then
      local k = string.format(tokens_t, t, served)
      redis.call('INCRBY', k, tokens)
      redis.call('EXPIRE', k, keep)
    end
    if served ~= '' and lat ~= '' then
      local k, field, sample = string.format(latency_t, t, served), (stream == '1') and 'ttft' or 'lat', tonumber(lat)
      local old = tonumber(redis.call('HGET', k, field) or '')
      if old then sample = old + weight * (sample - old) end
      redis.call('HSET', k, field, tostring(sample))
      redis.call('EXPIRE', k, latency_keep)
    end
  end
end
return n
"""

# Tokens-per-minute reservations corrected to what the requests used: each counter that still
# exists (its minute not gone) gets ARGV[i] added (negative: less was used than reserved).
# (Tokens per day are added by billing's SETTLE_SCRIPT, with the budgets' costs.)
_CORRECT = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, ARGV[i]) end
end
return 0
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

@dataclass(slots=True)
class Counter:
    """One limit a request must fit: a counter in Redis, its limit, what admission adds to it (1
    for requests per minute, the worst-case tokens for tokens per minute, 0 for tokens per day),
    how long it is kept, seconds until it frees up, and whether Redis must hold it (``kept``: a
    tokens-per-day counter, which admission asks to have rebuilt from the rollups when missing;
    a minute's counter starts at 0)."""

    key: str
    limit: int
    add: int
    ttl: int
    frees: float
    kept: bool = False


NO_BUDGETS: tuple[int, ...] = (0, RESERVATION_TTL, 0)


@dataclass(frozen=True, slots=True)
class Admission:
    order: tuple[tuple[int, int, int], ...] = ()  # (deployment index, deployment's state, seconds to wait)
    stale: tuple[str, str] | None = None  # the current versions, when the caller's were not
    refused: int = 0  # the refusing Counter (1-based), else 0
    used: int = 0  # what that counter held
    budget: tuple[int, ...] = ()  # (2 block | 3 downgrade, scope, budget, spent, reserved) or (4, scope, missing…)
    lost: tuple[int, ...] = ()  # the kept Counters (1-based) Redis does not hold: rebuild them, then ask again


@dataclass(frozen=True, slots=True)
class Pick:
    """What admission needs to order a route's deployments (gateway/deployments.py)."""

    candidates: tuple[Candidate, ...]  # in the worker's preorder
    code: int  # the script's ordering
    stream: bool
    request_id: str


def _order(flat) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(flat[i]), int(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3))


def _admission(result) -> Admission:
    """_ADMIT's answer."""
    code = int(result[0])
    if code == -1:
        return Admission(stale=(_text(result[2]), _text(result[3])))
    if code == 1:
        return Admission(refused=int(result[1]), used=int(result[2]))
    if code == 5:
        return Admission(lost=tuple(int(v) for v in result[1:]))
    if code > 1:
        return Admission(budget=tuple(int(v) for v in result))
    return Admission(order=_order(result[2:]))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _minute(now: float) -> int:
    return int(now // 60)


def seconds_to_next_minute(now: float) -> float:
    return 60 - (now % 60)


def rpm_key(sid: str, minute: int) -> str:
    return f"tg:rl:{sid}:m{minute}"


def tpm_key(sid: str, minute: int) -> str:
    return f"tg:tpm:{sid}:m{minute}"


def tpd_key(sid: str, day: date) -> str:
    """A scope's tokens-per-day counter of one local day of its tenant (the rollups' day, so a
    lost counter is rebuilt from them exactly)."""
    return f"tg:tokens:{sid}:d{day:%Y%m%d}"


def _auth_key(address: str, now: float) -> str:
    return f"tg:af:{address}:m{_minute(now)}"


class RedisState:
    def __init__(self, url: str):
        timeout = settings.REDIS_TIMEOUT_SECONDS
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        self._admit = self.redis.register_script(_ADMIT)
        self._fail = self.redis.register_script(_FAIL)
        self._take = self.redis.register_script(_TAKE)
        self._release = self.redis.register_script(_RELEASE)
        self._settle = self.redis.register_script(SETTLE_SCRIPT)
        self._seed = self.redis.register_script(SEED_SCRIPT)
        self._held_release = self.redis.register_script(HELD_RELEASE_SCRIPT)
        self._correct = self.redis.register_script(_CORRECT)
        self._down_since: float | None = None  # monotonic time of the first failure of this outage
        self._ask_after = 0.0  # no Redis call before this monotonic time (an outage was just seen)
        self.held = ""  # this worker's held hash (billing.spend.held_key), set by its usage writer; "": none

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

    async def admit(self, *, tenant_id: int, pick: Pick, versions: tuple[str, str], counters: list[Counter] = (),
                    budgets=NO_BUDGETS) -> Admission:
        """Check every limit and budget of the request and order its deployments; if all admit
        it, count the limits, reserve the budgets and count the request against the first
        usable deployment — one round trip (_ADMIT). Nothing is counted when the routing table
        the caller holds is older than the tenant's or the platform's configuration (``stale``
        carries the current versions), or when something refuses. ``versions`` ('*', '*') skips
        that check; ``budgets`` is billing.spend.budget_arguments' section."""
        now = time.time()
        minute = traffic.minute_of(now)
        args: list = [*versions, now, pick.request_id, self.held,
                      ";".join([f"{c.key},{c.limit},{c.add},{c.ttl},{math.ceil(c.frees)},{int(c.kept)}"
                                for c in counters]),
                      *budgets]
        args += (now + IN_FLIGHT_SECONDS, pick.code, int(pick.stream), traffic.TRAFFIC_KEEP_SECONDS,
                 IN_FLIGHT_SECONDS, cooldown_key(tenant_id, "%s"), traffic.requests_key(tenant_id, "%s", minute),
                 traffic.tokens_key(tenant_id, "%s", minute), traffic.inflight_key(tenant_id, "%s"),
                 traffic.latency_key(tenant_id, "%s"), ",".join(c.spec for c in pick.candidates))
        result = await self._call(lambda: self._admit(keys=[version_key(tenant_id), PLATFORM], args=args))
        return _admission(result)

    async def pick(self, *, tenant_id: int, pick: Pick) -> tuple[tuple[int, int, int], ...]:
        """Order another route's deployments (an error-class fallback), counting the request
        against the first usable one; no limit counted, no version read."""
        admission = await self.admit(tenant_id=tenant_id, pick=pick, versions=("*", "*"))
        return admission.order

    async def take(self, *, tenant_id: int, provider_model_id: int, request_id: str) -> None:
        """Count the request against a deployment it falls back to (this minute, in flight)."""
        now = time.time()
        keys = [traffic.requests_key(tenant_id, provider_model_id, traffic.minute_of(now)),
                traffic.inflight_key(tenant_id, provider_model_id)]
        await self._optional(lambda: self._take(keys=keys, args=[now + IN_FLIGHT_SECONDS, request_id,
                                                                 traffic.TRAFFIC_KEEP_SECONDS, IN_FLIGHT_SECONDS]),
                             None)

    async def traffic_settle(self, ended: list[Ended]) -> None:
        """Release ended requests: in-flight entries removed, tokens added to this minute's
        counters, latencies folded into the moving averages; one script call (``_RELEASE``)."""
        minute = traffic.minute_of(time.time())
        entries = ";".join(
            f"{e.tenant_id},{e.request_id},{'' if e.served is None else e.served},{e.tokens},"
            f"{'' if e.latency_ms is None or e.served is None else round(e.latency_ms, 3)},{int(e.stream)},"
            f"{' '.join(map(str, e.taken))}"
            for e in ended
        )
        args = [traffic.TRAFFIC_KEEP_SECONDS, traffic.LATENCY_WEIGHT, traffic.LATENCY_KEEP_SECONDS,
                traffic.inflight_key("%s", "%s"), traffic.tokens_key("%s", "%s", minute),
                traffic.latency_key("%s", "%s"), entries]
        await self._call(lambda: self._release(keys=[], args=args))

    async def versions(self, tenant_id: int) -> tuple[str, str]:
        """The current configuration versions of a tenant and of the platform."""
        tenant, platform = await self._call(lambda: self.redis.mget(version_key(tenant_id), PLATFORM))
        return _text(tenant), _text(platform)

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

    async def cool(self, *, tenant_id: int, provider_model_id: int, seconds: float) -> None:
        """Cool a deployment down for ``seconds`` (an upstream's 429 said when to come back),
        unless it is cooling down longer already."""
        name = cooldown_key(tenant_id, provider_model_id)
        ms = max(int(seconds * 1000), 1)
        flag = f"{RATE_FLAG}{time.time() + seconds:.3f}"

        async def work():
            if (await self.redis.pttl(name)) < ms:
                await self.redis.set(name, flag, px=ms)

        await self._optional(work, None)

    async def tpm_correct(self, minutes: dict[str, int]) -> None:
        """Correct tokens-per-minute reservations by what the requests used (``minutes``: the
        difference, by counter; a counter gone with its minute is left alone): ``_CORRECT``."""
        if minutes:
            await self._call(lambda: self._correct(keys=list(minutes), args=list(minutes.values())))

    async def budget_seed(self, values: dict[str, int], *, ttl: int = BUCKET_TTL, snapshot: str = "") -> None:
        """Counters rebuilt from the rollups (budget buckets, tokens-per-day counters), each set
        only if still missing and kept ``ttl`` seconds, with the snapshot the rollups were read
        under (billing.spend.rollups_read): SEED_SCRIPT."""
        if values:
            await self._call(lambda: self._seed(keys=list(values), args=[ttl, snapshot, *values.values()]))

    async def budget_settle(self, keys: list[str], args: list[int | str]) -> None:
        """Release reservations and add costs to buckets: SETTLE_SCRIPT, with the KEYS and
        ARGV of billing.spend.settle_arguments (the usage writer settles)."""
        await self._call(lambda: self._settle(keys=keys, args=args))

    async def held_refresh(self) -> None:
        """Keep this worker's held hash alive: its marker field set (the hash never empties, so
        admission never recreates it without a lifetime) and its lifetime HELD_TTL. Skipped
        while Redis is unreachable."""
        if not self.held:
            return
        held = self.held

        async def work():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(held, "", "")
                pipe.expire(held, HELD_TTL)
                await pipe.execute()

        await self._optional(work, None)

    async def held_release(self, *, held: str, skip: Collection[str] = ()) -> int:
        """Release what a dead (or stopping) worker's held hash lists, but the requests in
        ``skip`` (its journal's: their replay settles them), and delete the hash
        (HELD_RELEASE_SCRIPT). Returns how many requests were released; StoreUnavailable while
        Redis is unreachable."""
        return int(await self._call(lambda: self._held_release(keys=[], args=[held, *skip])))

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
    """The same contract in one process (embedded default, no Redis). Its reservations die with
    the process, so it lists no held reservations: ``held_refresh`` and ``held_release`` do
    nothing."""

    def __init__(self):
        self.held = ""
        self.counters: dict[str, int] = {}
        self.expiry: dict[str, float] = {}
        self.cache: dict[str, tuple[float, bytes]] = {}
        self.reservations: dict[str, dict[str, tuple[int, float]]] = {}  # scope -> id -> (amount, expiry)
        self.flags: dict[str, str] = {}  # cooldown flags (their expiry in ``expiry``)
        self.in_flight: dict[str, dict[str, float]] = {}  # in-flight key -> request id -> until
        self.latencies: dict[str, dict[str, float]] = {}  # latency key -> lat / ttft -> moving average
        self.seeds: dict[str, str] = {}  # rebuilt counter -> the snapshot its rollups were read under
        self.late: dict[str, dict[int, int]] = {}  # missing counter -> transaction -> amount settled meanwhile

    def _get(self, name: str, now: float) -> int:
        if self.expiry.get(name, now + 1) <= now:
            self.counters.pop(name, None)
            self.expiry.pop(name, None)
            self.seeds.pop(name, None)  # its snapshot goes with it
        return self.counters.get(name, 0)

    def _missing(self, name: str, now: float) -> bool:
        return name not in self.counters or self.expiry.get(name, now + 1) <= now

    def _flag(self, name: str, now: float) -> str | None:
        if name in self.flags and self.expiry.get(name, now + 1) <= now:
            del self.flags[name]
            self.expiry.pop(name, None)
        return self.flags.get(name)

    def _incr(self, name: str, by: int, ttl: float, now: float) -> int:
        value = self._get(name, now) + by
        self.counters[name] = value
        self.expiry.setdefault(name, now + ttl)
        return value

    async def admit(self, *, tenant_id: int, pick: Pick, versions: tuple[str, str], counters: list[Counter] = (),
                    budgets=NO_BUDGETS) -> Admission:
        if tuple(versions) != ("*", "*"):
            current = await self.versions(tenant_id)
            if tuple(versions) != current:
                return Admission(stale=current)
        now = time.time()
        refusal: Admission | None = None
        frees = -1.0
        count = []
        lost = tuple(i for i, c in enumerate(counters, 1) if c.kept and self._missing(c.key, now))
        if lost:
            return Admission(lost=lost)
        for i, c in enumerate(counters, 1):
            used = self._get(c.key, now)
            if used + max(c.add, 1) > c.limit:
                if math.ceil(c.frees) > frees:  # whole seconds, as the script compares them
                    refusal, frees = Admission(refused=i, used=used), math.ceil(c.frees)
            elif c.add > 0:
                count.append(c)
        checked = self._budgets_check(list(budgets), now)
        if checked[0] is not None and checked[0][0] == 4:
            return Admission(budget=checked[0])
        budget_refusal, budget_frees, downgrade, reserve = checked
        if budget_refusal is not None and budget_frees > frees:
            refusal = Admission(budget=budget_refusal)
        if refusal is not None:
            return refusal
        if downgrade is not None:
            return Admission(budget=downgrade)
        for c in count:
            self._incr(c.key, c.add, c.ttl, now)
        resv, ttl, totals = reserve
        if resv > 0:
            for total in totals:
                self.reservations.setdefault(total, {})[pick.request_id] = (resv, now + ttl)
        minute = traffic.minute_of(now)
        measures = []
        for c in pick.candidates:
            pm = c.provider_model_id
            flight = self.in_flight.setdefault(traffic.inflight_key(tenant_id, pm), {})
            for request_id in [r for r, until in flight.items() if until <= now]:
                del flight[request_id]
            lat = self.latencies.get(traffic.latency_key(tenant_id, pm), {})
            measures.append(Measure(
                cooling=self._flag(cooldown_key(tenant_id, pm), now),
                requests=self._get(traffic.requests_key(tenant_id, pm, minute), now),
                tokens=self._get(traffic.tokens_key(tenant_id, pm, minute), now),
                in_flight=len(flight), latency=lat.get("lat"), ttft=lat.get("ttft"),
            ))
        order = tuple(rank(pick.candidates, measures, pick.code, pick.stream, now))
        first = next((i for i, state, _ in order if state == 0), None)
        if first is not None:
            await self.take(tenant_id=tenant_id, provider_model_id=pick.candidates[first].provider_model_id,
                            request_id=pick.request_id)
        return Admission(order=order)

    def _budgets_check(self, args: list, now: float):
        """BUDGET_LUA's budgets_check: (refusal or rebuild, its seconds, downgrade, (reservation,
        lifetime, totals to reserve in))."""
        resv, ttl, scopes = int(args[0]), int(args[1]), int(args[2])
        a = 3
        refusal, frees, downgrade, totals = None, -1.0, None, []
        for s in range(1, scopes + 1):
            total, nd = args[a], int(args[a + 1])
            a += 2
            reserved = self._reserved(total, now)
            day_keys = args[a:a + nd]
            a += nd
            missing = [i + 1 for i, key in enumerate(day_keys) if self._missing(key, now)]
            if missing:
                return (4, s, *missing), 0, None, None
            vals = [self._get(key, now) for key in day_keys]
            nb = int(args[a])
            a += 1
            for b in range(1, nb + 1):
                amount, action, n, free = (int(v) for v in args[a:a + 4])
                a += 4
                spent = sum(vals[nd - n:])
                if spent + reserved + resv > amount:
                    if action == 1 and free > frees:
                        refusal, frees = (2, s, b, spent, reserved), free
                    if action == 2 and downgrade is None:
                        downgrade = (3, s, b, spent, reserved)
            totals.append(total)
        return refusal, frees, downgrade, (resv, ttl, totals)

    async def pick(self, *, tenant_id: int, pick: Pick) -> tuple[tuple[int, int, int], ...]:
        admission = await self.admit(tenant_id=tenant_id, pick=pick, versions=("*", "*"))
        return admission.order

    async def take(self, *, tenant_id: int, provider_model_id: int, request_id: str) -> None:
        now = time.time()
        self._incr(traffic.requests_key(tenant_id, provider_model_id, traffic.minute_of(now)), 1,
                   traffic.TRAFFIC_KEEP_SECONDS, now)
        self.in_flight.setdefault(traffic.inflight_key(tenant_id, provider_model_id), {})[request_id] = (
            now + IN_FLIGHT_SECONDS)

    async def traffic_settle(self, ended: list[Ended]) -> None:
        now = time.time()
        minute = traffic.minute_of(now)
        for e in ended:
            for pm in e.taken:
                self.in_flight.get(traffic.inflight_key(e.tenant_id, pm), {}).pop(e.request_id, None)
            if e.served is None:
                continue
            if e.tokens:
                self._incr(traffic.tokens_key(e.tenant_id, e.served, minute), e.tokens,
                           traffic.TRAFFIC_KEEP_SECONDS, now)
            if e.latency_ms is not None:
                averages = self.latencies.setdefault(traffic.latency_key(e.tenant_id, e.served), {})
                field = "ttft" if e.stream else "lat"
                old = averages.get(field)
                sample = e.latency_ms
                averages[field] = sample if old is None else old + traffic.LATENCY_WEIGHT * (sample - old)

    async def versions(self, tenant_id: int) -> tuple[str, str]:
        return (config_version.LOCAL.get(version_key(tenant_id), ""), config_version.LOCAL.get(PLATFORM, ""))

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
            self.flags[cool] = "1"
            self.expiry[cool] = now + max(cooldown_seconds, 1)
            self.counters.pop(fails, None)
            self.expiry.pop(fails, None)
            return True
        return False

    async def cool(self, *, tenant_id: int, provider_model_id: int, seconds: float) -> None:
        now = time.time()
        name = cooldown_key(tenant_id, provider_model_id)
        if name not in self.flags or self.expiry.get(name, 0) < now + seconds:
            self.flags[name] = f"{RATE_FLAG}{now + seconds:.3f}"
            self.expiry[name] = now + seconds

    async def tpm_correct(self, minutes: dict[str, int]) -> None:
        now = time.time()
        for name, tokens in minutes.items():
            self._get(name, now)  # drops the counter if its minute is gone
            if name in self.counters:
                self.counters[name] += tokens

    def _reserved(self, scope: str, now: float) -> int:
        held = self.reservations.get(scope, {})
        for request_id in [r for r, (_, until) in held.items() if until <= now]:
            del held[request_id]
        return sum(amount for amount, _ in held.values())

    async def budget_seed(self, values: dict[str, int], *, ttl: int = BUCKET_TTL, snapshot: str = "") -> None:
        now = time.time()
        for key, value in values.items():
            if self._get(key, now) == 0 and key not in self.counters:
                late = self.late.pop(key, {})
                self.counters[key] = value + sum(amount for xid, amount in late.items()
                                                 if snapshot and not snapshot_saw(snapshot, xid))
                self.expiry[key] = now + ttl
                self.seeds[key] = snapshot

    async def budget_settle(self, keys: list[str], args: list[int | str]) -> None:
        """SETTLE_SCRIPT, the same steps (billing.spend): the releases, the bucket costs and
        tokens (skipped where the counter's rebuild saw their rows; kept aside where it is
        missing), then each replayed request's release and cost, only if its reservation is still
        held. (The late amounts are not expired here: this process rebuilds soon after.)"""
        now = time.time()

        def release(scope: str, request_id) -> bool:
            return self.reservations.get(scope, {}).pop(request_id, None) is not None

        def add(key: str, cost: int, xid: int | str = "") -> None:
            self._get(key, now)  # drops it if it expired
            if key not in self.counters:
                if xid != "":  # for a rebuild whose read did not see these rows
                    if len(self.late) > 10_000:  # counters never rebuilt (long gone days): not kept forever
                        self.late.clear()
                    late = self.late.setdefault(key, {})
                    late[int(xid)] = late.get(int(xid), 0) + cost
            elif not snapshot_saw(self.seeds.get(key, ""), int(xid) if xid != "" else None):
                self.counters[key] += cost

        releases, buckets = args[0], args[1]  # (args[2], the held hash: none in one process)
        for i in range(releases):
            release(keys[3 * i], args[i + 3])
        k, a = 3 * releases, releases + 3
        for i, key in enumerate(keys[k:k + buckets]):
            add(key, args[a + 2 * i], args[a + 2 * i + 1])
        k, a = k + buckets, a + 2 * buckets
        while a < len(args):
            request_id, scopes, nb, cost = args[a:a + 4]
            a += 4
            held = [release(keys[k + 3 * s], request_id) for s in range(scopes)]
            k += 3 * scopes
            if any(held):
                for key in keys[k:k + nb]:
                    add(key, cost)
            k += nb

    async def held_refresh(self) -> None:
        return None

    async def held_release(self, *, held: str, skip: Collection[str] = ()) -> int:
        return 0

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
