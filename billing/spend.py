"""Spend reservation: how the data plane admits a request against budgets (billing owns it).

Spend is kept in Redis per scope and local day of the tenant's time zone, in nano-dollars:
``tg:spend:{scope}:d{YYYYMMDD}``, where the scope (``scope_id``) is the tenant ``t{T}``, a
project ``t{T}:p{P}``, a key ``t{T}:k{K}`` or an end user ``t{T}:p{P}:u{h}`` / ``t{T}:u{h}``,
followed by ``:f{h}`` for a budget on one model or alias. Every period (day, week, month,
rolling 30 days) ends today, so a budget's spend is the sum of the last N day buckets of its
scope. In-flight requests hold a reservation of their worst-case cost in ``tg:resv:{scope}``,
each request's share with its own expiry (``…:exp``, ``…:amt``), so a worker that dies leaks
nothing for longer than RESERVATION_TTL.

Each data-plane worker also lists what it holds: ``tg:held:{owner}`` (``held_key``; the owner is
the worker's journal directory, ``<host>-<pid>-<random>``, unique across hosts and restarts) is a
hash of request id → the reservation totals it reserved in, written by the admission script in
the same call (one HSET) and trimmed by the settlement script (one HDEL a batch). The worker
that takes over a dead worker's journal (billing.writer) runs HELD_RELEASE_SCRIPT on the dead
worker's hash: every reservation it still lists is released — except those of requests its
journal holds, which the replay settles with their cost — and the hash is deleted. So a
``kill -9`` holds budget until the next worker starts, not for RESERVATION_TTL. The hash carries
an empty-named marker field, so it never empties and is recreated without a lifetime; the
worker refreshes it and its lifetime (HELD_TTL) every HELD_REFRESH_SECONDS, so a hash nobody
takes over (its machine is gone) expires after its last reservation has.

Admission is part of the data plane's one admission script (BUDGET_LUA, run by
gateway/state.py with the limits of every scope and the deployments): it reads the buckets,
refuses (block), asks for a downgrade, or reserves for every scope, atomically, so 200
concurrent requests cannot all see the same "almost spent" budget. Once the request's usage
record is written, the usage writer (billing.writer) settles it (``Settlement``): the
reservation is released and the real cost added to the day's bucket. Redis is a cache of the
truth: a missing bucket is rebuilt from the rollups (PostgreSQL: UsageDaily for the tenant, a
key or a project's keys, EndUserDaily for an end user) before admission goes on.
"""

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import F, Sum

from billing.models import BudgetAction, BudgetScope, EndUserDaily, UsageDaily
from billing.periods import period_for
from tenants.models import ApiKey

NANOS = Decimal(1_000_000_000)
ACTION_CODES = {BudgetAction.ALERT: 0, BudgetAction.BLOCK: 1, BudgetAction.DOWNGRADE: 2}
BUCKET_TTL = 40 * 86400
RESERVATION_TTL = 600
HELD_REFRESH_SECONDS = 30  # how often a worker refreshes its list of held reservations (tg:held:…)
HELD_TTL = RESERVATION_TTL + 2 * HELD_REFRESH_SECONDS  # that list outlives every reservation it holds
# The most one request may reserve ($1e9 in nano-dollars): far above any real request, well
# inside Redis's 64-bit counters, whatever max_tokens or n a client sends.
MAX_RESERVATION = 10**18


@dataclass(frozen=True, slots=True)
class BudgetInfo:
    budget_id: int
    name: str
    scope: str  # a BudgetScope value
    key_id: int | None
    amount: Decimal
    period: str
    action: str
    downgrade_alias: str
    project_id: int | None = None  # a project budget's project; an end-user budget's (None: the tenant's)
    model: str = ""  # only requests to this model or alias ("" = all)

    @property
    def amount_nanos(self) -> int:
        return int(self.amount * NANOS)


def to_nanos(cost: Decimal | None) -> int:
    """USD → whole nano-dollars, rounded up (budgets never under-count)."""
    if cost is None or cost <= 0:
        return 0
    return int(math.ceil(cost * NANOS))


def hashed(text: str) -> str:
    """A short stable digest of a free-form name (an end user, a model) for a Redis key."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def scope_id(tenant_id: int, *, project_id: int | None = None, key_id: int | None = None, end_user: str = "",
             model: str = "") -> str:
    """A scope's name in Redis keys: ``t{T}`` (the tenant), ``t{T}:p{P}`` (a project),
    ``t{T}:k{K}`` (a key), ``t{T}:p{P}:u{h}`` / ``t{T}:u{h}`` (an end user of a project / of the
    tenant), each followed by ``:f{h}`` when it counts only one model or alias."""
    sid = f"t{tenant_id}"
    if key_id is not None:
        sid += f":k{key_id}"
    elif project_id is not None:
        sid += f":p{project_id}"
    if end_user:
        sid += f":u{hashed(end_user)}"
    if model:
        sid += f":f{hashed(model)}"
    return sid


def scope_prefix(tenant_id: int, key_id: int | None) -> str:
    return scope_id(tenant_id, key_id=key_id)


def bucket_of(sid: str, day: date) -> str:
    return f"tg:spend:{sid}:d{day:%Y%m%d}"


def reserved_of(sid: str) -> str:
    return f"tg:resv:{sid}"


def held_key(owner: str) -> str:
    """The hash of a worker's reservations not yet settled (request id → its totals), by the
    worker's id (its journal directory's name)."""
    return f"tg:held:{owner}"


def bucket_key(tenant_id: int, key_id: int | None, day: date) -> str:
    return bucket_of(scope_prefix(tenant_id, key_id), day)


def reserved_key(tenant_id: int, key_id: int | None) -> str:
    return reserved_of(scope_prefix(tenant_id, key_id))


def reservation_keys(reserved: str) -> tuple[str, str, str]:
    """A scope's reservations: the total, each request's expiry (a sorted set) and each
    request's amount (a hash)."""
    return reserved, f"{reserved}:exp", f"{reserved}:amt"


@dataclass(frozen=True, slots=True)
class Settlement:
    """What an admitted request settles once its usage record is written: its reservation in
    each scope it was reserved in, released, and its real cost added to each scope's bucket of
    the day it was admitted; its tokens added to the tokens-per-day counters of that day in the
    scopes that have such a limit (``token_keys``), and each tokens-per-minute reservation
    corrected to what it used (``tpm``: counter and tokens reserved). Costs and tokens go only
    into buckets and counters that exist: a missing one is rebuilt from the rollups."""

    reserved_keys: tuple[str, ...]
    bucket_keys: tuple[str, ...]
    token_keys: tuple[str, ...] = ()
    tpm: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SpendSource:
    """Where a scope's spend (a budget's buckets) or tokens (a tokens-per-day counter) are read
    from the rollups when Redis lost them: the key's rows, the project's keys' rows, or one end
    user's (EndUserDaily), optionally only of some provider models (a budget or limit rule on one
    model or alias); all of the tenant's rows without any."""

    key_id: int | None = None
    project_id: int | None = None
    end_user: str = ""
    provider_models: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class ScopePlan:
    sid: str  # scope_id
    days: list[date]  # ascending, ending today: the longest period among its budgets
    budgets: list[tuple[BudgetInfo, int]]  # budget and how many of the last days it counts
    source: SpendSource = SpendSource()
    resets_in: tuple[float, ...] = ()  # per budget, seconds from the plan's time until it resets


def plan(budgets: list[BudgetInfo], *, tenant_id: int, key_id: int | None, zone: ZoneInfo,
         now: datetime | None = None, project_id: int | None = None, end_user: str = "",
         covers: Callable[[str], frozenset[int] | None] | None = None) -> list[ScopePlan]:
    """The scopes and days a request must check: the tenant's budgets, its project's, its key's
    and its end user's. ``covers(model)`` says whether the request is to that model or alias (the
    provider models the name stands for; None: it is not): budgets on a model apply only then
    (without ``covers``, never)."""
    now = now or datetime.now(zone)
    today = now.astimezone(zone).date()
    by_scope: dict[str, tuple[SpendSource, list[tuple[BudgetInfo, int]], list[float]]] = {}
    for budget in budgets:
        scope = budget.scope
        if scope == BudgetScope.KEY:
            if budget.key_id != key_id:
                continue
            sid_args, source = {"key_id": key_id}, SpendSource(key_id=key_id)
        elif scope == BudgetScope.PROJECT:
            if project_id is None or budget.project_id != project_id:
                continue
            sid_args, source = {"project_id": project_id}, SpendSource(project_id=project_id)
        elif scope == BudgetScope.END_USER:
            if not end_user or (budget.project_id is not None and budget.project_id != project_id):
                continue
            sid_args = {"project_id": budget.project_id, "end_user": end_user}
            source = SpendSource(project_id=budget.project_id, end_user=end_user)
        else:
            sid_args, source = {}, SpendSource()
        if budget.model:
            models = covers(budget.model) if covers is not None else None
            if models is None:
                continue
            sid_args["model"] = budget.model
            source = replace(source, provider_models=models)
        period = period_for(budget.period, str(zone), now)
        _, entries, resets = by_scope.setdefault(scope_id(tenant_id, **sid_args), (source, [], []))
        entries.append((budget, (today - period.start).days + 1))
        resets.append((period.resets_at - now).total_seconds())
    plans = []
    for sid, (source, entries, resets) in by_scope.items():
        longest = max(n for _, n in entries)
        days = [today - timedelta(days=i) for i in range(longest - 1, -1, -1)]
        plans.append(ScopePlan(sid, days, entries, source, tuple(resets)))
    return plans


def budget_arguments(plans: list[ScopePlan], *, reservation: int, downgrade_as_alert: bool) -> list[int | str]:
    """The budget section of the admission script's ARGV (BUDGET_LUA): the reservation, its
    lifetime, then per scope its reservation key, its day buckets and its budgets (amount,
    action, days counted, seconds until it resets)."""
    args: list[int | str] = [reservation, RESERVATION_TTL, len(plans)]
    for scope in plans:
        args.append(reserved_of(scope.sid))
        args.append(len(scope.days))
        args.extend(bucket_of(scope.sid, day) for day in scope.days)
        args.append(len(scope.budgets))
        for (budget, n_days), resets_in in zip(scope.budgets, scope.resets_in, strict=True):
            action = ACTION_CODES[budget.action]
            if downgrade_as_alert and action == 2:
                action = 0
            args.extend([budget.amount_nanos, action, n_days, int(resets_in)])
    return args


def settlement(plans: list[ScopePlan], *, reserved: bool = True, token_keys: tuple[str, ...] = (),
               tpm: tuple[tuple[str, int], ...] = ()) -> Settlement:
    """The settlement of a request admitted under ``plans`` (``reserved``: False when nothing
    was reserved, a request served while Redis was unreachable: only its cost is added)."""
    return Settlement(
        reserved_keys=tuple(reserved_of(p.sid) for p in plans) if reserved else (),
        bucket_keys=tuple(bucket_of(p.sid, p.days[-1]) for p in plans),
        token_keys=token_keys,
        tpm=tpm,
    )


def settle_arguments(releases: list[tuple[str, str]], adds: Mapping[str | tuple[str, int | None], int],
                     replayed: Sequence[tuple[str, Settlement, int]] = (), *,
                     held: str = "") -> tuple[list[str], list[int | str]]:
    """SETTLE_SCRIPT's KEYS and ARGV: release each (reservation key, request id) and strike its
    request from ``held`` (the settling worker's held_key; "": none); add to each bucket or
    tokens-per-day counter its amount (nano-dollars, tokens) — ``adds`` by key, or by (key, id
    of the PostgreSQL transaction that wrote the rows it comes from: skipped where the counter
    was rebuilt from rollups that already saw that transaction) —; then, for each ``replayed``
    (request id, settlement, cost) — a record the ledger already had —, release its reservation
    and add its cost only if its reservation is still held."""
    pairs = [(key, None) if isinstance(key, str) else key for key in adds]
    keys = [name for key, _ in releases for name in reservation_keys(key)] + [key for key, _ in pairs]
    args: list[int | str] = [len(releases), len(adds), held, *(request_id for _, request_id in releases)]
    for (_, xid), amount in zip(pairs, adds.values(), strict=True):
        args += [amount, "" if xid is None else xid]
    for request_id, settled, cost in replayed:
        keys.extend(name for key in settled.reserved_keys for name in reservation_keys(key))
        keys.extend(settled.bucket_keys)
        args.extend([request_id, len(settled.reserved_keys), len(settled.bucket_keys), cost])
    return keys, args


def rollups_read(read: Callable[[], Any]) -> tuple[Any, str]:
    """``read()`` (rollup queries) and the PostgreSQL snapshot it read under, for a counter
    seeded from it (``SEED_SCRIPT``): a settlement of rows that snapshot already saw is not added
    to it again (SETTLE_SCRIPT). "" — every settlement added, as before — on another database or
    inside a transaction already under way (whose statements need not share one snapshot)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return read(), ""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_current_snapshot()::text")  # the transaction's one snapshot
            (snapshot,) = cursor.fetchone()
        return read(), snapshot


def snapshot_saw(snapshot: str, xid: int | None) -> bool:
    """Whether rows written by transaction ``xid`` were visible in ``snapshot`` (PostgreSQL's
    ``xmin:xmax:in-progress,…``), as pg_visible_in_snapshot says (SETTLE_SCRIPT does the same)."""
    if xid is None or not snapshot:
        return False
    xmin, xmax, running = snapshot.split(":")
    if xid < int(xmin):
        return True
    return xid < int(xmax) and str(xid) not in running.split(",")


def spend_by_day(*, tenant_id: int, days: list[date], key_id: int | None = None,
                 source: SpendSource | None = None) -> dict[date, int]:
    """The truth, from the rollups: nano-dollars spent per day in a scope (missing days are 0):
    the tenant's, a key's, a project's (its keys': a key never moves to another project), an
    end user's (EndUserDaily), optionally only on some provider models."""
    rows = _rollup_rows(tenant_id, days, source or SpendSource(key_id=key_id))
    totals = {row["day"]: row["total"] for row in rows.values("day").annotate(total=Sum("cost"))}
    return {day: to_nanos(totals.get(day)) for day in days}


def tokens_by_day(*, tenant_id: int, days: list[date], source: SpendSource) -> dict[date, int]:
    """The truth of a tokens-per-day counter, from the same rollup rows as ``spend_by_day``:
    input plus output tokens per day in a scope (missing days are 0)."""
    rows = _rollup_rows(tenant_id, days, source)
    totals = {row["day"]: row["total"] for row in rows.values("day").annotate(
        total=Sum(F("input_tokens") + F("output_tokens")))}
    return {day: int(totals.get(day) or 0) for day in days}


def _rollup_rows(tenant_id: int, days: list[date], source: SpendSource):
    """A scope's rollup rows on ``days``: UsageDaily's (the tenant's, a key's, a project's keys'),
    or EndUserDaily's for an end user; optionally only of some provider models."""
    if source.end_user:
        rows = EndUserDaily.objects.filter(tenant_id=tenant_id, end_user=source.end_user, day__in=days)
        if source.project_id is not None:
            rows = rows.filter(project_id=source.project_id)
    else:
        rows = UsageDaily.objects.filter(tenant_id=tenant_id, day__in=days)
        if source.key_id is not None:
            rows = rows.filter(api_key_id=source.key_id)
        elif source.project_id is not None:
            rows = rows.filter(api_key_id__in=ApiKey.objects.filter(tenant_id=tenant_id, project_id=source.project_id)
                               .values("pk"))
    if source.provider_models is not None:
        rows = rows.filter(provider_model_id__in=source.provider_models)
    return rows


def worst_case_nanos(*, prompt_bytes: int, max_output_tokens: int, input_price: Decimal | None,
                     output_price: Decimal | None) -> int:
    """What a request can cost at most: every two bytes of its body a prompt token (more
    than any tokenizer makes of JSON), and all of its output tokens. Prices per million."""
    if input_price is None or output_price is None:
        return 0  # an unknown price cannot be reserved (its rows carry no cost either)
    usd = (Decimal(prompt_bytes // 2 + 1) * input_price + Decimal(max_output_tokens) * output_price) / Decimal(10**6)
    return to_nanos(usd)


# --- the Redis side (run by gateway/state.py) ----------------------------------

# Budget admission, a part of the data plane's one admission script (gateway/state.py), which
# reads ARGV from ``a`` (budget_arguments): the reservation (nano-dollars), its lifetime, the number
# of scopes; per scope its reservation total's key (``…:exp``, each request's expiry, a sorted
# set; ``…:amt``, each request's amount, a hash), its day buckets ascending to today, and per
# budget its amount, action (0 alert, 1 block, 2 downgrade), how many of the last days it counts
# and seconds until it resets. Each reservation expires on its own: reservations past their time
# are dropped from the total before it is read, so a dead worker's requests stop holding budget
# after RESERVATION_TTL however busy the scope is. ``budgets_check`` answers the next ARGV index,
# then {4, scope, missing day indexes...} (rebuild those buckets first: nothing else matters), or
# the refusal that frees up last of the budgets that block ({2, scope, budget, spent, reserved},
# seconds), the first downgrade ({3, …}) and the totals to reserve in; ``budgets_reserve`` reserves,
# and lists the request and its totals in the worker's held hash (``held``, held_key; '': none).
BUDGET_LUA = """
local function budgets_check(a, now_ms)
  local resv_s, ttl, scopes = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local refusal, frees, downgrade, reserve = nil, -1, nil, {}
  for s = 1, scopes do
    local total, nd = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    local expiries, amounts = total .. ':exp', total .. ':amt'
    local expired = redis.call('ZRANGEBYSCORE', expiries, '-inf', now_ms, 'LIMIT', 0, 1000)
    if #expired > 0 then
      local gone = 0
      for _, v in ipairs(redis.call('HMGET', amounts, unpack(expired))) do
        if v then gone = gone + tonumber(v) end
      end
      redis.call('HDEL', amounts, unpack(expired))
      redis.call('ZREM', expiries, unpack(expired))
      if redis.call('DECRBY', total, gone) < 0 then redis.call('SET', total, '0', 'KEEPTTL') end
    end
    local reserved = tonumber(redis.call('GET', total) or '0')
    local vals = redis.call('MGET', unpack(ARGV, a, a + nd - 1))
    a = a + nd
    local missing = {}
    for i = 1, nd do if not vals[i] then missing[#missing + 1] = i end end
    if #missing > 0 then return a, {4, s, unpack(missing)}, 0, nil, nil end
    local nb = tonumber(ARGV[a])
    a = a + 1
    for b = 1, nb do
      local amount, action, n, free = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
        tonumber(ARGV[a + 3])
      a = a + 4
      local spent = 0
      for i = nd - n + 1, nd do spent = spent + tonumber(vals[i]) end
      if spent + reserved + tonumber(resv_s) > amount then
        if action == 1 and free > frees then refusal, frees = {2, s, b, spent, reserved}, free end
        if action == 2 and not downgrade then downgrade = {3, s, b, spent, reserved} end
      end
    end
    reserve[#reserve + 1] = total
  end
  return a, refusal, frees, downgrade, {resv_s, ttl, reserve}
end

local function budgets_reserve(plan, rid, now_ms, held)
  local resv_s, ttl, reserve = plan[1], plan[2], plan[3]
  if tonumber(resv_s) <= 0 or #reserve == 0 then return end
  if held ~= '' then
    redis.call('HSET', held, rid, table.concat(reserve, ' '))
    -- a hash Redis lost is made again here: never without a lifetime (its worker may be dead)
    if redis.call('TTL', held) < 0 then redis.call('EXPIRE', held, """ + str(HELD_TTL) + """) end
  end
  for _, total in ipairs(reserve) do
    -- the string: Lua would print a big number as 1e+14
    redis.call('INCRBY', total, resv_s)
    redis.call('ZADD', total .. ':exp', now_ms + ttl * 1000, rid)
    redis.call('HSET', total .. ':amt', rid, resv_s)
    redis.call('EXPIRE', total, ttl)
    redis.call('EXPIRE', total .. ':exp', ttl)
    redis.call('EXPIRE', total .. ':amt', ttl)
  end
end
"""

# Whether a snapshot (PostgreSQL's ``xmin:xmax:in-progress,…``; nil or '': none) saw the rows of
# transaction ``xid`` ('': unknown, never), as pg_visible_in_snapshot says; snapshot_saw in Python.
_SAW_LUA = """
local LATE_TTL = """ + str(RESERVATION_TTL) + """
local function saw(snap, xid)
  if xid == '' or not snap or snap == '' then return false end
  local xmin, xmax, running = string.match(snap, '^(%d+):(%d+):(.*)$')
  local x = tonumber(xid)
  if x < tonumber(xmin) then return true end
  if x >= tonumber(xmax) then return false end
  for v in string.gmatch(running, '%d+') do
    if tonumber(v) == x then return false end
  end
  return true
end
"""

# Settle finished requests: release each one's reservation — only if it is still there (one
# that expired, or that a Redis restart lost, releases nothing) — and add real costs to day
# buckets and tokens to tokens-per-day counters that exist (a missing one is rebuilt from the
# rollups, which hold them). An amount carries the id of the transaction that wrote its rows:
# a counter rebuilt from rollups read under a snapshot that saw that transaction
# (``tg:seed:{counter}``, SEED_SCRIPT) has it already and is skipped — so a settlement kept
# through an outage that lands after another worker rebuilt the counter counts once, not twice;
# an amount for a counter that does not exist is kept aside for a while (``tg:late:{counter}``,
# per transaction), for a rebuild whose read did not see it — it was written after the read but
# settled before the seed — to add.
# Then the replayed requests (records the ledger already had: a dead worker's journal replayed
# after its batch was committed), each on its own condition: its reservation is released and
# its cost added only if the reservation is still held. Committing and settling are not atomic,
# but settling is: a held reservation means this request was never settled, a released one
# that it was (or that it expired: then the bucket may under-count until it is rebuilt from the
# rollups, never over-count). The released and the replayed requests are struck from the settling
# worker's held hash (the released: one HDEL per thousand). KEYS: three reservation keys per
# release, the buckets, then per replayed request three keys per scope and its buckets; ARGV:
# the number of releases and of buckets, the held hash ('': none), each release's request id, each bucket's amount and
# transaction id ('' unknown), then per replayed request its id, its number of scopes and of
# buckets, and its cost.
SETTLE_SCRIPT = _SAW_LUA + """
local function release(k, rid)
  local amount = redis.call('HGET', KEYS[k + 2], rid)
  if not amount then return false end
  redis.call('HDEL', KEYS[k + 2], rid)
  redis.call('ZREM', KEYS[k + 1], rid)
  if redis.call('DECRBY', KEYS[k], amount) < 0 then redis.call('SET', KEYS[k], '0', 'KEEPTTL') end
  return true
end
local function add(key, cost, xid)
  if redis.call('EXISTS', key) == 0 then
    if xid ~= '' then  -- a rebuild under way may have read before these rows committed: its seed adds them
      redis.call('HINCRBY', 'tg:late:' .. key, xid, cost)
      redis.call('EXPIRE', 'tg:late:' .. key, LATE_TTL)
    end
  elseif not saw(redis.call('GET', 'tg:seed:' .. key), xid) then
    -- pcall: a bucket past 64 bits must not fail the script (and re-release on every retry)
    redis.pcall('INCRBY', key, cost)
  end
end
local releases, buckets, held = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = 1, releases do release(3 * i - 2, ARGV[i + 3]) end
if held ~= '' then
  for i = 4, releases + 3, 1000 do redis.call('HDEL', held, unpack(ARGV, i, math.min(i + 999, releases + 3))) end
end
local k, a = 3 * releases + 1, releases + 4
for i = 1, buckets do
  add(KEYS[k], ARGV[a], ARGV[a + 1])
  k, a = k + 1, a + 2
end
while a <= #ARGV do
  local rid, scopes, nb, cost = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
  a = a + 4
  local was_held = false
  for s = 0, scopes - 1 do
    if release(k + 3 * s, rid) then was_held = true end
  end
  if held ~= '' then redis.call('HDEL', held, rid) end
  k = k + 3 * scopes
  if was_held then
    for b = 0, nb - 1 do add(KEYS[k + b], cost, '') end
  end
  k = k + nb
end
return 0
"""

# Counters rebuilt from the rollups (budget buckets, tokens-per-day counters): each set only if
# still missing, kept ARGV[1] seconds, to its value read from the rollups plus what settled
# meanwhile that the read did not see (``tg:late:{counter}``), with the snapshot its rollups were
# read under beside it (``tg:seed:{counter}``, for SETTLE_SCRIPT; none: that key is removed).
# ARGV: lifetime, snapshot, values.
SEED_SCRIPT = _SAW_LUA + """
local snap = ARGV[2]
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, ARGV[i + 2], 'EX', ARGV[1])
    local late = redis.call('HGETALL', 'tg:late:' .. key)
    for j = 1, #late, 2 do
      if snap ~= '' and not saw(snap, late[j]) then redis.pcall('INCRBY', key, late[j + 1]) end
    end
    redis.call('DEL', 'tg:late:' .. key)
    if snap ~= '' then redis.call('SET', 'tg:seed:' .. key, snap, 'EX', ARGV[1])
    else redis.call('DEL', 'tg:seed:' .. key) end
  end
end
return 0
"""

# A dead worker's reservations, released by the worker that takes over its journal: each request
# its held hash (ARGV[1]) still lists, but for those given after it (the requests its journal
# holds: their replay settles them, cost and all), is released in every total it reserved in —
# only where it is still held, like SETTLE_SCRIPT's release — and the hash is deleted. Returns
# the number of requests released.
HELD_RELEASE_SCRIPT = """
local held = ARGV[1]
local skip = {}
for i = 2, #ARGV do skip[ARGV[i]] = true end
local entries = redis.call('HGETALL', held)
local n = 0
for i = 1, #entries, 2 do
  local rid = entries[i]
  if rid ~= '' and not skip[rid] then
    local released = false
    for total in string.gmatch(entries[i + 1], '%S+') do
      local amounts = total .. ':amt'
      local amount = redis.call('HGET', amounts, rid)
      if amount then
        redis.call('HDEL', amounts, rid)
        redis.call('ZREM', total .. ':exp', rid)
        if redis.call('DECRBY', total, amount) < 0 then redis.call('SET', total, '0', 'KEEPTTL') end
        released = true
      end
    end
    if released then n = n + 1 end
  end
end
redis.call('DEL', held)
return n
"""
