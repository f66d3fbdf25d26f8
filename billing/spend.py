"""Spend reservation: how the data plane admits a request against budgets (billing owns it).

Spend is kept in Redis per scope (the tenant, or one key) and local day of the tenant's time
zone, in nano-dollars: ``tg:spend:t{tenant}:d{YYYYMMDD}`` and ``tg:spend:t{t}:k{key}:d{…}``.
Every period (day, week, month, rolling 30 days) ends today, so a budget's spend is the sum of
the last N day buckets of its scope. In-flight requests hold a reservation of their worst-case
cost in ``tg:resv:t{t}`` / ``tg:resv:t{t}:k{key}``, each request's share with its own expiry
(``…:exp``, ``…:amt``), so a worker that dies leaks nothing for longer than RESERVATION_TTL.

Admission is one Lua script: it reads the buckets, refuses (block), asks for a downgrade, or
reserves for every scope, atomically, so 200 concurrent requests cannot all see the same
"almost spent" budget. Once the request's usage record is written, the usage writer
(billing.writer) settles it (``Settlement``): the reservation is released and the real cost
added to the day's bucket. Redis is a cache of the truth: a missing bucket is rebuilt from the
daily rollups (PostgreSQL) before admission goes on.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Sum

from billing.models import BudgetAction, BudgetScope, UsageDaily
from billing.periods import period_for

NANOS = Decimal(1_000_000_000)
ACTION_CODES = {BudgetAction.ALERT: 0, BudgetAction.BLOCK: 1, BudgetAction.DOWNGRADE: 2}
BUCKET_TTL = 40 * 86400
RESERVATION_TTL = 600
# The most one request may reserve ($1e9 in nano-dollars): far above any real request, well
# inside Redis's 64-bit counters, whatever max_tokens or n a client sends.
MAX_RESERVATION = 10**18


@dataclass(frozen=True, slots=True)
class BudgetInfo:
    budget_id: int
    name: str
    scope: str  # tenant or key
    key_id: int | None
    amount: Decimal
    period: str
    action: str
    downgrade_alias: str

    @property
    def amount_nanos(self) -> int:
        return int(self.amount * NANOS)


def to_nanos(cost: Decimal | None) -> int:
    """USD → whole nano-dollars, rounded up (budgets never under-count)."""
    if cost is None or cost <= 0:
        return 0
    return int(math.ceil(cost * NANOS))


def scope_prefix(tenant_id: int, key_id: int | None) -> str:
    return f"t{tenant_id}" if key_id is None else f"t{tenant_id}:k{key_id}"


def bucket_key(tenant_id: int, key_id: int | None, day: date) -> str:
    return f"tg:spend:{scope_prefix(tenant_id, key_id)}:d{day:%Y%m%d}"


def reserved_key(tenant_id: int, key_id: int | None) -> str:
    return f"tg:resv:{scope_prefix(tenant_id, key_id)}"


def reservation_keys(reserved: str) -> tuple[str, str, str]:
    """A scope's reservations: the total, each request's expiry (a sorted set) and each
    request's amount (a hash)."""
    return reserved, f"{reserved}:exp", f"{reserved}:amt"


@dataclass(frozen=True, slots=True)
class Settlement:
    """What an admitted request settles once its usage record is written: its reservation in
    each scope it was reserved in, released, and its real cost added to each scope's bucket of
    the day it was admitted."""

    reserved_keys: tuple[str, ...]
    bucket_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScopePlan:
    key_id: int | None  # None: the tenant scope
    days: list[date]  # ascending, ending today: the longest period among its budgets
    budgets: list[tuple[BudgetInfo, int]]  # budget and how many of the last days it counts


def plan(budgets: list[BudgetInfo], *, tenant_id: int, key_id: int, zone: ZoneInfo,
         now: datetime | None = None) -> list[ScopePlan]:
    """The scopes and days a request of ``key_id`` must check: the tenant's budgets and the
    budgets of this key."""
    now = now or datetime.now(zone)
    today = now.astimezone(zone).date()
    by_scope: dict[int | None, list[tuple[BudgetInfo, int]]] = {}
    for budget in budgets:
        if budget.scope == BudgetScope.KEY and budget.key_id != key_id:
            continue
        start = period_for(budget.period, str(zone), now).start
        scope = None if budget.scope == BudgetScope.TENANT else key_id
        by_scope.setdefault(scope, []).append((budget, (today - start).days + 1))
    plans = []
    for scope, entries in by_scope.items():
        longest = max(n for _, n in entries)
        days = [today - timedelta(days=i) for i in range(longest - 1, -1, -1)]
        plans.append(ScopePlan(scope, days, entries))
    return plans


def script_arguments(plans: list[ScopePlan], *, tenant_id: int, reservation: int,
                     downgrade_as_alert: bool) -> tuple[list[str], list[int]]:
    keys: list[str] = []
    args: list[int] = [reservation, len(plans)]
    for scope in plans:
        keys.extend(reservation_keys(reserved_key(tenant_id, scope.key_id)))
        keys.extend(bucket_key(tenant_id, scope.key_id, day) for day in scope.days)
        args.extend([len(scope.days), len(scope.budgets)])
        for budget, n_days in scope.budgets:
            action = ACTION_CODES[budget.action]
            if downgrade_as_alert and action == 2:
                action = 0
            args.extend([budget.amount_nanos, action, n_days])
    return keys, args


def settlement(plans: list[ScopePlan], *, tenant_id: int, reserved: bool = True) -> Settlement:
    """The settlement of a request admitted under ``plans`` (``reserved``: False when nothing
    was reserved, a request served while Redis was unreachable: only its cost is added)."""
    return Settlement(
        reserved_keys=tuple(reserved_key(tenant_id, p.key_id) for p in plans) if reserved else (),
        bucket_keys=tuple(bucket_key(tenant_id, p.key_id, p.days[-1]) for p in plans),
    )


def settle_arguments(releases: list[tuple[str, str]], adds: dict[str, int],
                     replayed: Sequence[tuple[str, Settlement, int]] = ()) -> tuple[list[str], list[int | str]]:
    """SETTLE_SCRIPT's KEYS and ARGV: release each (reservation key, request id), add each
    bucket's cost (nano-dollars); then, for each ``replayed`` (request id, settlement, cost) —
    a record the ledger already had —, release its reservation and add its cost only if its
    reservation is still held."""
    keys = [name for key, _ in releases for name in reservation_keys(key)] + list(adds)
    args: list[int | str] = [len(releases), len(adds), *(request_id for _, request_id in releases), *adds.values()]
    for request_id, settled, cost in replayed:
        keys.extend(name for key in settled.reserved_keys for name in reservation_keys(key))
        keys.extend(settled.bucket_keys)
        args.extend([request_id, len(settled.reserved_keys), len(settled.bucket_keys), cost])
    return keys, args


def spend_by_day(*, tenant_id: int, key_id: int | None, days: list[date]) -> dict[date, int]:
    """The truth, from the rollups: nano-dollars spent per day (missing days are 0)."""
    rows = UsageDaily.objects.filter(tenant_id=tenant_id, day__in=days)
    if key_id is not None:
        rows = rows.filter(api_key_id=key_id)
    totals = {row["day"]: row["total"] for row in rows.values("day").annotate(total=Sum("cost"))}
    return {day: to_nanos(totals.get(day)) for day in days}


def worst_case_nanos(*, prompt_bytes: int, max_output_tokens: int, input_price: Decimal | None,
                     output_price: Decimal | None) -> int:
    """What a request can cost at most: every two bytes of its body a prompt token (more
    than any tokenizer makes of JSON), and all of its output tokens. Prices per million."""
    if input_price is None or output_price is None:
        return 0  # an unknown price cannot be reserved (its rows carry no cost either)
    usd = (Decimal(prompt_bytes // 2 + 1) * input_price + Decimal(max_output_tokens) * output_price) / Decimal(10**6)
    return to_nanos(usd)


# --- the Redis side (run by gateway/state.py) ----------------------------------

# Budget admission. Per scope: its three reservation keys (the
# total, each request's expiry in a sorted set, each request's amount in a hash), then its day
# buckets ascending to today; per budget: amount, action (0 alert, 1 block, 2 downgrade) and
# how many of the last days it counts. ARGV ends with the request id and the reservation's
# lifetime. Each reservation expires on its own: reservations past their time are dropped from
# the total before it is read, so a dead worker's requests stop holding budget after
# RESERVATION_TTL however busy the scope is. Answers {0} (admitted and reserved), {1, scope,
# missing day indexes...} (rebuild those buckets first), {2, scope, budget, spent, reserved}
# (blocked) or {3, scope, budget, spent, reserved} (downgrade).
RESERVE_SCRIPT = """
local resv = tonumber(ARGV[1])
local scopes = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local a, k = 3, 1
local reserve = {}
for s = 1, scopes do
  local nd, nb = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local total, expiries, amounts = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local expired = redis.call('ZRANGEBYSCORE', expiries, '-inf', now, 'LIMIT', 0, 1000)
  if #expired > 0 then
    local gone = 0
    for _, v in ipairs(redis.call('HMGET', amounts, unpack(expired))) do
      if v then gone = gone + tonumber(v) end
    end
    redis.call('HDEL', amounts, unpack(expired))
    redis.call('ZREM', expiries, unpack(expired))
    if redis.call('DECRBY', total, gone) < 0 then redis.call('SET', total, '0') end
  end
  local reserved = tonumber(redis.call('GET', total) or '0')
  local vals = redis.call('MGET', unpack(KEYS, k + 3, k + 2 + nd))
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
  reserve[#reserve + 1] = k
  k = k + 3 + nd
end
if resv > 0 then
  local rid, ttl = ARGV[a], tonumber(ARGV[a + 1])
  for _, i in ipairs(reserve) do
    redis.call('INCRBY', KEYS[i], ARGV[1])  -- the string: Lua would print a big number as 1e+14
    redis.call('ZADD', KEYS[i + 1], now + ttl * 1000, rid)
    redis.call('HSET', KEYS[i + 2], rid, ARGV[1])
    for j = i, i + 2 do redis.call('EXPIRE', KEYS[j], ttl) end
  end
end
return {0}
"""

# Settle finished requests: release each one's reservation — only if it is still there (one
# that expired, or that a Redis restart lost, releases nothing) — and add real costs to day
# buckets that exist (a missing bucket is rebuilt from the rollups, which hold the cost).
# Then the replayed requests (records the ledger already had: a dead worker's journal replayed
# after its batch was committed), each on its own condition: its reservation is released and
# its cost added only if the reservation is still held. Committing and settling are not atomic,
# but settling is: a held reservation means this request was never settled, a released one
# that it was (or that it expired: then the bucket may under-count until it is rebuilt from the
# rollups, never over-count). KEYS: three reservation keys per release, the buckets, then per
# replayed request three keys per scope and its buckets; ARGV: the number of releases and of
# buckets, each release's request id, each bucket's cost, then per replayed request its id,
# its number of scopes and of buckets, and its cost.
SETTLE_SCRIPT = """
local function release(k, rid)
  local amount = redis.call('HGET', KEYS[k + 2], rid)
  if not amount then return false end
  redis.call('HDEL', KEYS[k + 2], rid)
  redis.call('ZREM', KEYS[k + 1], rid)
  if redis.call('DECRBY', KEYS[k], amount) < 0 then redis.call('SET', KEYS[k], '0') end
  return true
end
local function add(key, cost)
  -- pcall: a bucket past 64 bits must not fail the script (and re-release on every retry)
  if redis.call('EXISTS', key) == 1 then redis.pcall('INCRBY', key, cost) end
end
local releases, buckets = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, releases do release(3 * i - 2, ARGV[i + 2]) end
local k, a = 3 * releases + 1, releases + 3
for i = 1, buckets do
  add(KEYS[k], ARGV[a])
  k, a = k + 1, a + 1
end
while a <= #ARGV do
  local rid, scopes, nb, cost = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
  a = a + 4
  local held = false
  for s = 0, scopes - 1 do
    if release(k + 3 * s, rid) then held = true end
  end
  k = k + 3 * scopes
  if held then
    for b = 0, nb - 1 do add(KEYS[k + b], cost) end
  end
  k = k + nb
end
return 0
"""
