"""The scopes a request falls in, and the limits it must fit in each (issue #16).

A request is in its tenant, its key's project, its key and, when it names one, its end user;
each scope has limits (requests per minute, tokens per minute, tokens per day): the tenant's,
project's and key's own (their rows' fields) and the limit rules (billing.models.LimitRule),
some only for one model or alias. ``plan`` turns them into the admission script's counters
(gateway/state.py) in precedence order — tenant, project, key, end user — with what a refusal
says, and what settlement must count afterwards. Budgets in the same scopes are planned by
billing.spend.plan; both go to Redis in the one admission round trip."""

import time
from dataclasses import dataclass

from billing.models import BudgetScope
from billing.spend import scope_id
from gateway.state import Counter, day_of, rpm_key, seconds_to_next_minute, seconds_to_utc_midnight, tpd_key, tpm_key

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
    token_keys: tuple[str, ...]  # tokens-per-day counters settlement adds to (beyond tenant and key)
    tpm: tuple[tuple[str, int], ...]  # tokens-per-minute counters and what was reserved in each


def plan(*, tenant, key, project: ProjectInfo | None, end_user: str, covers, worst_tokens: int,
         now: float | None = None) -> Plan:
    """The counters of every limit the request falls under. ``tenant`` is the routing table
    (its own limits and ``limit_rules``), ``key`` the KeyInfo, ``covers(model)`` whether the
    request is to that model or alias (see TenantConfig.covers), ``worst_tokens`` what tokens
    per minute reserve."""
    now = time.time() if now is None else now
    minute, day = int(now // 60), day_of(now)
    to_minute, to_midnight = seconds_to_next_minute(now), seconds_to_utc_midnight(now)
    tenant_id = tenant.tenant_id
    project_id = project.project_id if project is not None else None
    counters: list[Counter] = []
    refusals: list[tuple] = []
    token_keys: list[str] = []
    tpm: list[tuple[str, int]] = []

    def add(scope: str, where: str, sid: str, rpm: int, tpm_limit: int, tpd: int, model: str, counted: bool) -> None:
        if rpm:
            counters.append(Counter(rpm_key(sid, minute), rpm, 1, MINUTE_TTL, to_minute))
            refusals.append(("rpm", scope, where, rpm, model))
        if tpm_limit:
            name = tpm_key(sid, minute)
            counters.append(Counter(name, tpm_limit, worst_tokens, MINUTE_TTL, to_minute))
            refusals.append(("tpm", scope, where, tpm_limit, model))
            tpm.append((name, worst_tokens))
        if tpd:
            name = tpd_key(sid, day)
            counters.append(Counter(name, tpd, 0, DAY_TTL, to_midnight))
            refusals.append(("tpd", scope, where, tpd, model))
            if not counted:
                token_keys.append(name)

    rules = tenant.limit_rules
    add(BudgetScope.TENANT, "this tenant", f"t{tenant_id}", tenant.requests_per_minute or 0,
        tenant.tokens_per_minute or 0, tenant.tokens_per_day or 0, "", True)
    for rule in rules:
        if rule.scope == BudgetScope.TENANT:
            _rule(add, rule, covers, BudgetScope.TENANT, "this tenant", tenant_id)
    if project is not None:
        where = f"project '{project.slug}'"
        add(BudgetScope.PROJECT, where, scope_id(tenant_id, project_id=project_id), project.rpm, project.tpm,
            project.tpd, "", False)
        for rule in rules:
            if rule.scope == BudgetScope.PROJECT and rule.project_id == project_id:
                _rule(add, rule, covers, BudgetScope.PROJECT, where, tenant_id, project_id=project_id)
    if key.key_id is not None:
        add(BudgetScope.KEY, "this API key", f"t{tenant_id}:k{key.key_id}", key.requests_per_minute or 0,
            key.tokens_per_minute or 0, key.tokens_per_day or 0, "", True)
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
    return Plan(counters, refusals, tuple(token_keys), tuple(tpm))


def _rule(add, rule: LimitInfo, covers, scope: str, where: str, tenant_id: int, **sid) -> None:
    if rule.model and covers(rule.model) is None:
        return
    add(scope, where, scope_id(tenant_id, model=rule.model, **sid), rule.rpm, rule.tpm, rule.tpd, rule.model,
        False)


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
