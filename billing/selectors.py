"""Reads for billing: spend per budget from the daily rollups (never the ledger)."""

from decimal import Decimal

from django.db.models import Sum

from billing.models import Budget, BudgetScope, UsageDaily
from billing.periods import Period, period_for
from core.errors import NotFound
from tenants.models import Tenant


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
