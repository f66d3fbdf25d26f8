"""The scopes a request falls in, and the limits it must fit in each (issue #16).

A request is in its tenant, its key's project, its key and, when it names one, its end user;
each scope has limits (requests per minute, tokens per minute, tokens per day): the tenant's,
project's and key's own (their rows' fields) and the limit rules (billing.models.LimitRule),
some only for one model or alias. ``plan`` turns them into the admission script's counters
(gateway/state.py) in precedence order — tenant, project, key, end user — with what a refusal
says, and what settlement must count afterwards. Budgets in the same scopes are planned by
billing.spend.plan; both go to Redis in the one admission round trip.

Tokens per day are counted per local day of the tenant's time zone — the day of the rollups and
the budget buckets — so a counter Redis lost is rebuilt exactly from the rollups' token columns
(``Plan.sources`` says where each counter's tokens are read: billing.spend.tokens_by_day)."""

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from billing.models import BudgetScope
from billing.spend import SpendSource, scope_id
from gateway.state import Counter, rpm_key, seconds_to_next_minute, tpd_key, tpm_key

TENANT_ROWS = SpendSource()  # all of the tenant's rollup rows
MINUTE_TTL = 120  # a minute counter outlives its minute (a late correction still finds it)
DAY_TTL = 2 * 86400


@dataclass(frozen=True, slots=True)
class LimitInfo:
    """Limits in one scope: a tenant's, project's or key's own, or a limit rule's (0: none)."""

    scope: str  # a BudgetScope value
    project_id: int | None = None  # a project rule's project; an end-user rule's (None: every end user)
    key_id: int | None = None
    model: str = ""  # only requests to this model or alias ("" = all)
    rpm: int = 0
    tpm: int = 0
    tpd: int = 0


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    project_id: int
    slug: str
    rpm: int = 0
    tpm: int = 0
    tpd: int = 0
    default_model: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a counter's refusal says: its kind (rpm, tpm, tpd), the scope, the limit."""

    kind: str
    scope: str  # tenant, project, key, end_user
    where: str  # "this tenant", "project 'support'", …
    limit: int
    model: str = ""


KINDS = {
    "rpm": ("requests per minute", "rate_limit"),
    "tpm": ("tokens per minute", "token_rate_limit"),
    "tpd": ("tokens per day", "token_limit"),
}


@dataclass(slots=True)
class Plan:
    counters: list[Counter]
    refusals: list[tuple]  # Refusal's fields, per counter (a Refusal is made only when one refuses)
    token_keys: tuple[str, ...]  # the tokens-per-day counters settlement adds the request's tokens to
    tpm: tuple[tuple[str, int], ...]  # tokens-per-minute counters and what was reserved in each
    day: date | None = None  # the tenant's local day the tokens-per-day counters count
    sources: dict[int, SpendSource] | None = None  # tokens-per-day Counter (1-based) -> its rollup rows


_days: dict[ZoneInfo, tuple[int, date, float]] = {}


def local_day(zone: ZoneInfo, now: float) -> tuple[date, float]:
    """The tenant's local day at ``now`` and the epoch time of its next local midnight, worked
    out once a minute per zone, not once a request (zones are whole minutes off UTC, so a day
    never ends inside a minute)."""
    minute = int(now // 60)
    cached = _days.get(zone)
    if cached is None or cached[0] != minute:
        day = datetime.fromtimestamp(now, zone).date()
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone).timestamp()
        cached = _days[zone] = (minute, day, midnight)
    return cached[1], cached[2]


def plan(*, tenant, key, project: ProjectInfo | None, end_user: str, covers, worst_tokens: int,
         now: float | None = None) -> Plan:
    """The counters of every limit the request falls under. ``tenant`` is the routing table
    (its own limits, ``limit_rules`` and time ``zone``), ``key`` the KeyInfo, ``covers(model)``
    whether the request is to that model or alias and the provider models it stands for (see
    TenantConfig.covers), ``worst_tokens`` what tokens per minute reserve."""
    now = time.time() if now is None else now
    minute = int(now // 60)
    to_minute = seconds_to_next_minute(now)
    day: date | None = None
    to_midnight = 0.0
    tenant_id = tenant.tenant_id
    project_id = project.project_id if project is not None else None
    counters: list[Counter] = []
    refusals: list[tuple] = []
    token_keys: list[str] = []
    tpm: list[tuple[str, int]] = []
    sources: dict[int, SpendSource] = {}

    placed: dict[str, int] = {}  # counter -> its index

    def put(counter: Counter, refusal: tuple) -> bool:
        """Whether ``counter`` is new. A rule without a model in the tenant, project or key
        scope names that scope's own counter: it is counted once, at the lower limit."""
        i = placed.get(counter.key)
        if i is None:
            placed[counter.key] = len(counters)
            counters.append(counter)
            refusals.append(refusal)
            return True
        if counter.limit < counters[i].limit:
            counters[i], refusals[i] = counter, refusal
        return False

    def add(scope: str, where: str, sid: str, rpm: int, tpm_limit: int, tpd: int, model: str,
            source: SpendSource | None) -> None:
        nonlocal day, to_midnight
        if rpm:
            put(Counter(rpm_key(sid, minute), rpm, 1, MINUTE_TTL, to_minute), ("rpm", scope, where, rpm, model))
        if tpm_limit:
            name = tpm_key(sid, minute)
            if put(Counter(name, tpm_limit, worst_tokens, MINUTE_TTL, to_minute),
                   ("tpm", scope, where, tpm_limit, model)):
                tpm.append((name, worst_tokens))
        if tpd:
            if day is None:
                day, midnight = local_day(tenant.zone, now)
                to_midnight = midnight - now
            name = tpd_key(sid, day)
            if put(Counter(name, tpd, 0, DAY_TTL, to_midnight, True), ("tpd", scope, where, tpd, model)):
                token_keys.append(name)
                sources[len(counters)] = source

    rules = tenant.limit_rules
    add(BudgetScope.TENANT, "this tenant", f"t{tenant_id}", tenant.requests_per_minute or 0,
        tenant.tokens_per_minute or 0, tenant.tokens_per_day or 0, "", TENANT_ROWS)
    for rule in rules:
        if rule.scope == BudgetScope.TENANT:
            _rule(add, rule, covers, BudgetScope.TENANT, "this tenant", tenant_id)
    if project is not None:
        where = f"project '{project.slug}'"
        add(BudgetScope.PROJECT, where, scope_id(tenant_id, project_id=project_id), project.rpm, project.tpm,
            project.tpd, "", SpendSource(project_id=project_id) if project.tpd else None)
        for rule in rules:
            if rule.scope == BudgetScope.PROJECT and rule.project_id == project_id:
                _rule(add, rule, covers, BudgetScope.PROJECT, where, tenant_id, project_id=project_id)
    if key.key_id is not None:
        add(BudgetScope.KEY, "this API key", f"t{tenant_id}:k{key.key_id}", key.requests_per_minute or 0,
            key.tokens_per_minute or 0, key.tokens_per_day or 0, "",
            SpendSource(key_id=key.key_id) if key.tokens_per_day else None)
        for rule in rules:
            if rule.scope == BudgetScope.KEY and rule.key_id == key.key_id:
                _rule(add, rule, covers, BudgetScope.KEY, "this API key", tenant_id, key_id=key.key_id)
    if end_user:
        for rule in rules:
            if rule.scope == BudgetScope.END_USER and rule.project_id in (None, project_id):
                where = f"end user '{end_user}'" + (f" (each end user of project '{project.slug}')"
                                                    if rule.project_id is not None else " (each end user)")
                _rule(add, rule, covers, BudgetScope.END_USER, where, tenant_id, project_id=rule.project_id,
                      end_user=end_user)
    return Plan(counters, refusals, tuple(token_keys), tuple(tpm), day, sources or None)


def _rule(add, rule: LimitInfo, covers, scope: str, where: str, tenant_id: int, **sid) -> None:
    """A limit rule's counters; its tokens per day are read from the rollups like a budget's
    spend in the same scope (billing.spend.plan): the key's, the project's keys', the end
    user's rows, only of the provider models its model stands for."""
    models = None
    if rule.model:
        models = covers(rule.model)
        if models is None:
            return
    source = None
    if rule.tpd:
        source = SpendSource(key_id=sid.get("key_id"), project_id=sid.get("project_id"),
                             end_user=sid.get("end_user", ""), provider_models=models)
    add(scope, where, scope_id(tenant_id, model=rule.model, **sid), rule.rpm, rule.tpm, rule.tpd, rule.model,
        source)


def refusal_text(refusal: Refusal, used: int, retry_after: float, worst_tokens: int) -> tuple[int, str, str]:
    """(status, message, code) of a request a counter refused."""
    what, suffix = KINDS[refusal.kind]
    on = f" on model '{refusal.model}'" if refusal.model else ""
    code = f"{refusal.scope}_{suffix}"
    if refusal.kind == "tpm" and worst_tokens > refusal.limit:
        return 400, (
            f"This request may use up to {worst_tokens} tokens (its prompt and max_tokens), more than the limit of "
            f"{refusal.limit} {what} for {refusal.where}{on}: lower max_tokens or shorten the prompt, or raise the "
            "limit."), code
    unit = "requests" if refusal.kind == "rpm" else "tokens"
    held = f"{used} {unit} counted" + (", in flight included" if refusal.kind == "tpm" else "")
    if refusal.kind == "tpm":
        held += f"; this request may use up to {worst_tokens}"
    return 429, (
        f"Rate limit reached: {refusal.limit} {what} for {refusal.where}{on} ({held}). Retry after "
        f"{retry_after:.0f} s, or raise the limit."), code
