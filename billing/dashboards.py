"""Read-only dashboard selectors: what the console's overview and budget pages show. Every
function takes ``tenant=`` and reads the daily rollups (UsageDaily), never the ledger, with a
bounded number of queries whatever the traffic: the overview is one GROUP BY over at most 62
local days of one tenant (the leading (tenant, day) columns of the rollups' unique index),
one lookup of model names, and one spend query per budget."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum

from billing.models import Budget, BudgetAlert, UsageDaily
from billing.periods import local_today
from billing.selectors import BudgetStatus, budget_list, budget_status
from providers.models import ProviderModel
from tenants.models import Tenant

CHART_DAYS = 30
CHART_SERIES = 8  # models drawn one by one; the rest are stacked together as "other models"
CHART_PLACES = Decimal("0.000001")


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    cost: Decimal = Decimal(0)  # known costs only
    unpriced: int = 0  # requests whose cost is unknown (not in ``cost``)

    @property
    def error_rate(self) -> float | None:
        """errors / requests (0..1), None without requests."""
        return self.errors / self.requests if self.requests else None

    @property
    def error_percent(self) -> str:
        rate = self.error_rate
        return "–" if rate is None else f"{rate * 100:.1f} %"

    def add(self, requests: int, errors: int, cost: Decimal, unpriced: int) -> None:
        self.requests += requests
        self.errors += errors
        self.cost += cost
        self.unpriced += unpriced


@dataclass
class Overview:
    today: date  # in the tenant's time zone
    month_start: date
    timezone: str
    today_totals: Totals
    month_totals: Totals
    chart: dict  # {"labels": [iso days], "datasets": [{"label", "data": [USD strings]}], "totals": [...]}
    chart_rows: list[tuple[date, Decimal]] = field(default_factory=list)  # the chart as a table


def overview_get(*, tenant: Tenant, now: datetime | None = None) -> Overview:
    """Today's and this month's cost, requests and error rate, and the daily cost by model
    for the last 30 days (today included), in the tenant's time zone."""
    today = local_today(tenant.timezone, now)
    month_start = today.replace(day=1)
    chart_start = today - timedelta(days=CHART_DAYS - 1)
    rows = (
        UsageDaily.objects.filter(tenant=tenant, day__gte=min(month_start, chart_start), day__lte=today)
        .values("day", "provider_model_id")
        .annotate(n_requests=Sum("requests"), n_errors=Sum("errors"), n_cost=Sum("cost"), n_unpriced=Sum("unpriced"))
        .order_by()
    )
    today_totals, month_totals = Totals(), Totals()
    by_model: dict[int, dict[date, Decimal]] = defaultdict(dict)
    for row in rows:
        day, cost = row["day"], row["n_cost"] or Decimal(0)
        numbers = (row["n_requests"] or 0, row["n_errors"] or 0, cost, row["n_unpriced"] or 0)
        if day == today:
            today_totals.add(*numbers)
        if day >= month_start:
            month_totals.add(*numbers)
        if day >= chart_start:
            by_model[row["provider_model_id"]][day] = cost
    days = [chart_start + timedelta(days=i) for i in range(CHART_DAYS)]
    chart, chart_rows = _cost_chart(days, by_model)
    return Overview(today=today, month_start=month_start, timezone=tenant.timezone, today_totals=today_totals,
                    month_totals=month_totals, chart=chart, chart_rows=chart_rows)


def _model_labels(ids: list[int]) -> dict[int, str]:
    """provider:model_id of the models in the tenant's own rollups (ids are unique, so no
    other tenant's data can be named this way)."""
    found = ProviderModel.objects.filter(pk__in=[i for i in ids if i]).values_list(
        "pk", "provider__name", "model_id")
    labels = {pk: f"{provider}:{model_id}" for pk, provider, model_id in found}
    return {i: labels.get(i, "(no model)" if not i else f"(deleted model {i})") for i in ids}


def _cost_chart(days: list[date], by_model: dict[int, dict[date, Decimal]]) -> tuple[dict, list]:
    totals = {pk: sum(per_day.values(), Decimal(0)) for pk, per_day in by_model.items()}
    ranked = sorted(totals, key=lambda pk: (-totals[pk], pk))
    drawn, rest = ranked[:CHART_SERIES], ranked[CHART_SERIES:]
    if len(rest) == 1:
        drawn, rest = ranked, []
    labels = _model_labels(drawn)
    datasets = [{"label": labels[pk], "data": [_chart_number(by_model[pk].get(d)) for d in days]} for pk in drawn]
    if rest:
        datasets.append({
            "label": f"{len(rest)} other models",
            "data": [_chart_number(sum((by_model[pk].get(d, Decimal(0)) for pk in rest), Decimal(0))) for d in days],
        })
    per_day = [(d, sum((by_model[pk].get(d, Decimal(0)) for pk in by_model), Decimal(0))) for d in days]
    chart = {"labels": [d.isoformat() for d in days], "datasets": datasets, "unit": "usd"}
    return chart, per_day


def _chart_number(value: Decimal | None) -> str:
    """USD as a decimal string (the chart parses it for drawing; the tables show exact sums)."""
    return format((value or Decimal(0)).quantize(CHART_PLACES), "f")


# --- budgets ----------------------------------------------------------------------------------


@dataclass
class BudgetBar:
    budget: Budget
    status: BudgetStatus
    width: str  # CSS percent of the bar, 0..100
    marks: list[int]  # thresholds drawn on the bar (those up to 100 %)

    @property
    def over(self) -> bool:
        return self.status.percent_used is not None and self.status.percent_used >= 100


def budget_bars(*, tenant: Tenant, now: datetime | None = None,
                project_ids: frozenset[int] | None = None) -> list[BudgetBar]:
    """Every budget of the tenant with its spend in the current period (one rollup sum per
    budget, plus its in-flight reservations; an end-user budget has its rule instead);
    ``project_ids`` (a project-scoped caller's): the budgets inside those projects only."""
    bars = []
    for budget in budget_list(tenant=tenant, project_ids=project_ids).order_by("-enabled", "name", "pk"):
        budget.tenant = tenant  # the caller's tenant object: no query per budget to load it
        status = budget_status(tenant=tenant, budget=budget, now=now)
        width = min(status.percent_used, Decimal(100)) if status.percent_used is not None else Decimal(0)
        bars.append(BudgetBar(budget=budget, status=status, width=format(width, "f"),
                              marks=[t for t in sorted(budget.thresholds) if isinstance(t, int) and t <= 100]))
    return bars


def alerts_recent(*, tenant: Tenant, budget: Budget | None = None, limit: int = 50,
                  project_ids: frozenset[int] | None = None) -> list[BudgetAlert]:
    """The tenant's alerts (budget thresholds and the daily cost alert), or one budget's,
    newest first; ``project_ids`` (a project-scoped caller's): those of their projects' budgets."""
    alerts = BudgetAlert.objects.filter(tenant=tenant).select_related("budget")
    if budget is not None:
        alerts = alerts.filter(budget=budget)
    if project_ids is not None:
        alerts = alerts.filter(budget__in=budget_list(tenant=tenant, project_ids=project_ids))
    return list(alerts[:limit])
