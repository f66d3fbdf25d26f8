"""Reads for budgets: the tenant's budgets, spend per budget from the daily rollups (never the
ledger), the in-flight reservations the data plane holds in Redis, and the live status those
make. Usage reads are in usage_selectors.py."""

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import redis
from django.db.models import Sum

from billing.models import Budget, BudgetScope, UsageDaily
from billing.periods import Period, period_for
from billing.spend import reserved_key
from core.errors import NotFound
from core.redis import get_redis
from tenants.models import Tenant

log = logging.getLogger(__name__)

NANO = Decimal("1e-9")


def budget_list(*, tenant: Tenant):
    return Budget.objects.filter(tenant=tenant).select_related("api_key")


def budget_get(*, tenant: Tenant, budget_id: int) -> Budget:
    budget = budget_list(tenant=tenant).filter(pk=budget_id).first()
    if budget is None:
        raise NotFound(f"Budget {budget_id} not found in tenant '{tenant.slug}'.")
    return budget


def budget_period(budget: Budget, now=None) -> Period:
    return period_for(budget.period, budget.tenant.timezone, now)


def budget_spent(*, budget: Budget, period: Period) -> Decimal:
    """What the budget's scope has spent in ``period`` (known costs only)."""
    rows = UsageDaily.objects.filter(tenant_id=budget.tenant_id, day__gte=period.start, day__lt=period.end)
    if budget.scope == BudgetScope.KEY:
        rows = rows.filter(api_key_id=budget.api_key_id)
    return rows.aggregate(total=Sum("cost"))["total"] or Decimal(0)


# --- status: spend from the rollups, reservations from Redis ----------------------------------


def _of_tenant(tenant: Tenant, budget: Budget) -> None:
    """Another tenant's budget reads exactly like a missing one."""
    if budget.tenant_id != tenant.pk:
        raise NotFound(f"Budget {budget.pk} not found in tenant '{tenant.slug}'.")


def budget_reserved_key(*, budget: Budget) -> str:
    """Where the data plane keeps the in-flight reservations of the budget's scope (integer
    nano-dollars; billing/spend.py)."""
    return reserved_key(budget.tenant_id, budget.api_key_id if budget.scope == BudgetScope.KEY else None)


def budget_reserved(*, tenant: Tenant, budget: Budget) -> Decimal | None:
    """USD held by requests in flight; 0 without Redis (the embedded default), None when Redis
    cannot be read."""
    _of_tenant(tenant, budget)
    client = get_redis()
    if client is None:
        return Decimal(0)
    try:
        raw = client.get(budget_reserved_key(budget=budget))
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
    budget_id: int
    period: Period
    timezone: str
    amount: Decimal
    spent: Decimal
    reserved: Decimal | None
    remaining: Decimal
    percent_used: Decimal
    thresholds_crossed: list[int]
    action: str
    state: str  # ok | alerting | exhausted


def thresholds_crossed(*, thresholds: list[int], spent: Decimal, amount: Decimal) -> list[int]:
    """The thresholds (percents) that ``spent`` has reached, ascending."""
    valid = sorted(t for t in thresholds if isinstance(t, int) and not isinstance(t, bool) and t > 0)
    return [t for t in valid if spent * 100 >= amount * t]


def budget_status(*, tenant: Tenant, budget: Budget, now: datetime | None = None) -> BudgetStatus:
    """The budget's current period: spent, held by requests in flight, left, and its state."""
    _of_tenant(tenant, budget)
    period = period_for(budget.period, tenant.timezone, now)
    spent = budget_spent(budget=budget, period=period)
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
        action=budget.action, state=state,
    )
