"""Reads for budgets: the tenant's budgets, spend per budget from the daily rollups (never the
ledger), the in-flight reservations the data plane holds in Redis, and the live status those
make. Usage reads are in usage_selectors.py."""

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import redis
from django.db.models import Q, Sum

from billing.models import Budget, BudgetPeriod, BudgetScope, UsageDaily
from billing.periods import Period, period_for
from billing.spend import reserved_of, scope_id
from billing.targets import target_words
from core import money
from core.errors import NotFound
from core.redis import get_redis
from providers.selectors import provider_model_ids_named
from tenants.models import ApiKey, Tenant

log = logging.getLogger(__name__)

NANO = Decimal("1e-9")
PERIOD_NAMES = {BudgetPeriod.DAY: "day", BudgetPeriod.WEEK: "week", BudgetPeriod.MONTH: "month",
                BudgetPeriod.ROLLING_30D: "rolling 30 days"}


def in_projects(project_ids: frozenset[int]) -> Q:
    """Budgets and limit rules inside these projects: project and end-user ones naming one of
    them, key ones of their keys (a tenant-wide end-user one is in none)."""
    return Q(project_id__in=project_ids) | Q(api_key__project_id__in=project_ids)


def budget_list(*, tenant: Tenant, project_ids: frozenset[int] | None = None):
    """The tenant's budgets; ``project_ids`` (a project-scoped caller's): those inside them."""
    budgets = Budget.objects.filter(tenant=tenant).select_related("api_key", "project")
    return budgets if project_ids is None else budgets.filter(in_projects(project_ids))


def budget_get(*, tenant: Tenant, budget_id: int, project_ids: frozenset[int] | None = None) -> Budget:
    budget = budget_list(tenant=tenant, project_ids=project_ids).filter(pk=budget_id).first()
    if budget is None:
        raise NotFound(f"Budget {budget_id} not found in tenant '{tenant.slug}'.")
    return budget


def budget_period(budget: Budget, now=None) -> Period:
    return period_for(budget.period, budget.tenant.timezone, now)


def budget_model_ids(*, budget: Budget) -> frozenset[int] | None:
    """The provider models a model-filtered budget counts (None: every model)."""
    if not budget.model:
        return None
    return provider_model_ids_named(tenant=budget.tenant, name=budget.model, project_id=budget.project_id)


def budget_spent(*, budget: Budget, period: Period) -> Decimal | None:
    """What the budget's scope has spent in ``period`` (known costs only): a project's is its
    keys' (keys never move between projects), a model filter counts the provider models the
    name stands for. None for an end-user budget, which caps each end user on their own."""
    if budget.scope == BudgetScope.END_USER:
        return None
    rows = UsageDaily.objects.filter(tenant_id=budget.tenant_id, day__gte=period.start, day__lt=period.end)
    if budget.scope == BudgetScope.KEY:
        rows = rows.filter(api_key_id=budget.api_key_id)
    elif budget.scope == BudgetScope.PROJECT:
        keys = ApiKey.objects.filter(tenant_id=budget.tenant_id, project_id=budget.project_id).values("pk")
        rows = rows.filter(api_key_id__in=keys)
    model_ids = budget_model_ids(budget=budget)
    if model_ids is not None:
        rows = rows.filter(provider_model_id__in=model_ids)
    return rows.aggregate(total=Sum("cost"))["total"] or Decimal(0)


def budget_rule(budget: Budget) -> str:
    """The budget in words: "$2.00 per day for each end user of project support"."""
    period = PERIOD_NAMES.get(budget.period, budget.period)
    return f"{money.usd(budget.amount, places=2)} per {period} for {target_words(budget)}"


# --- status: spend from the rollups, reservations from Redis ----------------------------------


def _of_tenant(tenant: Tenant, budget: Budget) -> None:
    """Another tenant's budget reads exactly like a missing one."""
    if budget.tenant_id != tenant.pk:
        raise NotFound(f"Budget {budget.pk} not found in tenant '{tenant.slug}'.")


def budget_reserved_key(*, budget: Budget) -> str | None:
    """Where the data plane keeps the in-flight reservations of the budget's scope (integer
    nano-dollars; billing/spend.py): ``tg:resv:{scope id}``. None for an end-user budget (one
    scope per end user)."""
    if budget.scope == BudgetScope.END_USER:
        return None
    return reserved_of(scope_id(
        budget.tenant_id, project_id=budget.project_id if budget.scope == BudgetScope.PROJECT else None,
        key_id=budget.api_key_id if budget.scope == BudgetScope.KEY else None, model=budget.model))


def budget_reserved(*, tenant: Tenant, budget: Budget) -> Decimal | None:
    """USD held by requests in flight; 0 without Redis (the embedded default), None when Redis
    cannot be read."""
    _of_tenant(tenant, budget)
    key = budget_reserved_key(budget=budget)
    if key is None:
        return None
    client = get_redis()
    if client is None:
        return Decimal(0)
    try:
        raw = client.get(key)
    except redis.RedisError as exc:
        log.warning("budget %s: cannot read reservations from Redis: %s", budget.pk, exc)
        return None
    if raw is None:
        return Decimal(0)
    try:
        nanos = int(raw)
    except ValueError:
        log.warning("budget %s: reservation value %r is not an integer", budget.pk, raw)
        return None
    return max(Decimal(nanos) * NANO, Decimal(0))


@dataclass(frozen=True)
class BudgetStatus:
    """An end-user budget has no single figure: spent, remaining and percent_used are None and
    its state is ``per_end_user``; ``rule`` says what it does."""

    budget_id: int
    period: Period
    timezone: str
    amount: Decimal
    spent: Decimal | None
    reserved: Decimal | None
    remaining: Decimal | None
    percent_used: Decimal | None
    thresholds_crossed: list[int]
    action: str
    state: str  # ok | alerting | exhausted | per_end_user
    rule: str = ""


def thresholds_crossed(*, thresholds: list[int], spent: Decimal, amount: Decimal) -> list[int]:
    """The thresholds (percents) that ``spent`` has reached, ascending."""
    valid = sorted(t for t in thresholds if isinstance(t, int) and not isinstance(t, bool) and t > 0)
    return [t for t in valid if spent * 100 >= amount * t]


def budget_status(*, tenant: Tenant, budget: Budget, now: datetime | None = None) -> BudgetStatus:
    """The budget's current period: spent, held by requests in flight, left, and its state."""
    _of_tenant(tenant, budget)
    period = period_for(budget.period, tenant.timezone, now)
    spent = budget_spent(budget=budget, period=period)
    if spent is None:
        return BudgetStatus(
            budget_id=budget.pk, period=period, timezone=tenant.timezone, amount=budget.amount, spent=None,
            reserved=None, remaining=None, percent_used=None, thresholds_crossed=[], action=budget.action,
            state="per_end_user", rule=budget_rule(budget),
        )
    reserved = budget_reserved(tenant=tenant, budget=budget)
    amount = budget.amount
    remaining = max(amount - spent - (reserved or 0), Decimal(0))
    crossed = thresholds_crossed(thresholds=budget.thresholds, spent=spent, amount=amount)
    if spent + (reserved or 0) >= amount:
        state = "exhausted"
    elif crossed:
        state = "alerting"
    else:
        state = "ok"
    return BudgetStatus(
        budget_id=budget.pk, period=period, timezone=tenant.timezone, amount=amount, spent=spent,
        reserved=reserved, remaining=remaining,
        percent_used=(spent * 100 / amount).quantize(Decimal("0.01")), thresholds_crossed=crossed,
        action=budget.action, state=state, rule=budget_rule(budget),
    )
