"""Read-only selectors for the support dashboards (/support/) and the tenant admin's cost
columns: every tenant's spend, requests and budgets from the daily rollups, and provider health
from the health histograms plus the cooldowns in Redis (providers.cooldowns). Unlike other
apps' selectors these read across tenants: only support staff (support/views.py) and the Django
admin reach them.

The all-tenants figures are computed with a fixed number of queries whatever the number of
tenants: the tenants, one aggregate over the per-tenant daily rollups (TenantDaily) per
distinct local date (at most three), the enabled budgets, and (only when some budget is per
key or project) the projects' keys and one GROUP BY (key, day) over UsageDaily. Each tenant's
"today" and "this month" are its own local days (its time zone). Provider health reads the
HealthBucket histograms of the last hour or day (billing.health): a few hundred rows whatever
the traffic. Nothing here reads a provider's key or headers.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum
from django.utils import timezone as dj_timezone

from billing.health import WINDOW_SLOT, histogram_percentile, window_start
from billing.models import Budget, BudgetScope, HealthBucket, TenantDaily, UsageDaily
from billing.periods import period_for
from billing.usage_selectors import usage_filters_build, usage_summary
from core.redis import REDIS_DOWN, get_redis
from core.timezones import zone_of
from providers.cooldowns import cooldowns_scan
from providers.models import Provider, ProviderModel
from tenants.models import ApiKey, Tenant

log = logging.getLogger(__name__)

TREND_DAYS = 14
LOOKBACK_DAYS = 32  # covers a key budget's month (≤ 30 days back) or rolling 30 days
SPARK_WIDTH, SPARK_HEIGHT = 100, 24

SORTS = {  # ?sort= value → (row attribute, label)
    "tenant": ("slug", "Tenant"),
    "spend_today": ("spend_today", "Spend today"),
    "spend_month": ("spend_month", "Spend this month"),
    "budget": ("budget_percent", "Budget used"),
    "requests": ("requests_month", "Requests this month"),
    "error_rate": ("error_rate", "Error rate"),
}
DEFAULT_SORT = "tenant"


@dataclass
class TenantRow:
    pk: int
    slug: str
    name: str
    timezone: str
    is_active: bool
    today: date
    spend_today: Decimal = Decimal(0)
    spend_month: Decimal = Decimal(0)
    requests_today: int = 0
    requests_month: int = 0
    errors_month: int = 0
    unpriced_month: int = 0
    budget_percent: Decimal | None = None  # max over the enabled budgets; None without one
    trend: list[float] = field(default_factory=list)  # cost per local day, oldest first, today last (drawing;
    # filled by trends_fill for the rows shown)

    @property
    def error_rate(self) -> float | None:
        return self.errors_month / self.requests_month if self.requests_month else None

    @property
    def error_percent(self) -> str:
        rate = self.error_rate
        return "–" if rate is None else f"{rate * 100:.1f} %"

    @property
    def spark_points(self) -> str:
        """The trend as SVG polyline points in a SPARK_WIDTH × SPARK_HEIGHT box."""
        if not self.trend:
            return ""
        top = max(self.trend) or 1.0
        step = SPARK_WIDTH / max(len(self.trend) - 1, 1)
        return " ".join(
            f"{i * step:.1f},{SPARK_HEIGHT - 1 - v / top * (SPARK_HEIGHT - 2):.1f}"
            for i, v in enumerate(self.trend)
        )

    @property
    def trend_label(self) -> str:
        return f"Cost per day, last {len(self.trend)} days: " + ", ".join(f"${v:.2f}" for v in self.trend)


def _sort_key(attr: str):
    def key(row: TenantRow):
        value = getattr(row, attr)
        if attr == "slug":
            return (0, value)
        # Rows without a value (no budget, no requests) sort after every number either way.
        return (0, value) if value is not None else (1, 0)
    return key


def tenants_dashboard(*, query: str = "", sort: str = DEFAULT_SORT, now: datetime | None = None) -> list[TenantRow]:
    """One row per tenant (matching ``query`` on slug or name), sorted by ``sort`` (a SORTS
    key, "-" in front for descending)."""
    now = now or dj_timezone.now()
    tenants = Tenant.objects.order_by("slug").values_list("pk", "slug", "name", "timezone", "is_active")
    if query:
        tenants = tenants.filter(Q(slug__icontains=query) | Q(name__icontains=query))
    rows = {}
    for pk, slug, name, tz, active in tenants:
        rows[pk] = TenantRow(pk=pk, slug=slug, name=name, timezone=tz, is_active=active,
                             today=now.astimezone(zone_of(tz)).date())
    if rows:
        _fill_usage(rows, now, search=bool(query))
    descending = sort.startswith("-")
    attr = SORTS.get(sort.lstrip("-"), SORTS[DEFAULT_SORT])[0]
    ordered = sorted(rows.values(), key=lambda r: r.slug)
    if attr != "slug" or descending:
        present = [r for r in ordered if getattr(r, attr) is not None]
        absent = [r for r in ordered if getattr(r, attr) is None]
        present.sort(key=lambda r: getattr(r, attr), reverse=descending)
        ordered = present + absent
    return ordered


def _by_today(rows) -> dict[date, list[TenantRow]]:
    by_today: dict[date, list[TenantRow]] = defaultdict(list)
    for row in rows:
        by_today[row.today].append(row)
    return by_today


def _of_group(usage, group: list[TenantRow], *, by_id: bool, several: bool = False):
    """``usage`` (TenantDaily rows) of the tenants in ``group``: ``by_id`` when they are few
    (a search, a page); else by time zone when ``several`` local dates split the tenants, else
    all of them."""
    if by_id:
        return usage.filter(tenant_id__in=[r.pk for r in group])
    if several:
        return usage.filter(tenant__timezone__in={r.timezone for r in group})
    return usage


def _fill_usage(rows: dict[int, TenantRow], now: datetime, *, search: bool) -> None:
    """Each tenant's sums from the per-tenant daily rollups. Tenants whose local today is the
    same date share their windows (month, week, 30 days), so there is one aggregate query
    per distinct local date (at most three at any moment, whatever the number of tenants),
    grouped by tenant in SQL; Python only copies the sums into the rows."""
    by_today = _by_today(rows.values())
    spent: dict[int, dict[str, Decimal]] = {}
    for today, group in by_today.items():
        month_start, week_start = today.replace(day=1), today - timedelta(days=today.weekday())
        rolling_start = today - timedelta(days=29)
        aggregates = {
            "n": Sum("requests", filter=Q(day__gte=month_start)), "e": Sum("errors", filter=Q(day__gte=month_start)),
            "c": Sum("cost", filter=Q(day__gte=month_start)), "u": Sum("unpriced", filter=Q(day__gte=month_start)),
            "week": Sum("cost", filter=Q(day__gte=week_start)),
            "rolling": Sum("cost", filter=Q(day__gte=rolling_start)),
            "n_today": Sum("requests", filter=Q(day=today)), "c_today": Sum("cost", filter=Q(day=today)),
        }
        usage = _of_group(TenantDaily.objects.filter(day__gte=min(month_start, rolling_start), day__lte=today),
                          group, by_id=search, several=len(by_today) > 1)
        found = {a["tenant_id"]: a for a in usage.values("tenant_id").annotate(**aggregates).order_by()}
        zero = Decimal(0)
        for row in group:
            a = found.get(row.pk)
            if a is None:
                spent[row.pk] = {"day": zero, "week": zero, "month": zero, "rolling_30d": zero}
                continue
            row.requests_month, row.errors_month = a["n"] or 0, a["e"] or 0
            row.spend_month, row.unpriced_month = a["c"] or zero, a["u"] or 0
            row.requests_today, row.spend_today = a["n_today"] or 0, a["c_today"] or zero
            spent[row.pk] = {"day": row.spend_today, "week": a["week"] or zero, "month": row.spend_month,
                             "rolling_30d": a["rolling"] or zero}

    # The column is about money the tenant (or one of its keys or projects) spends: budgets with a
    # model filter, and end-user budgets (each end user on their own), are left out of it.
    budgets = Budget.objects.filter(enabled=True, model="").exclude(scope=BudgetScope.END_USER)
    if search:
        budgets = budgets.filter(tenant_id__in=list(rows))
    budgets = [b for b in budgets.values_list("tenant_id", "scope", "api_key_id", "project_id", "amount", "period")
               if b[0] in rows]
    project_keys: dict[int, list[int]] = defaultdict(list)
    project_ids = {project for _, scope, _, project, _, _ in budgets if scope == BudgetScope.PROJECT}
    if project_ids:
        for key, project in ApiKey.objects.filter(project_id__in=project_ids).values_list("pk", "project_id"):
            project_keys[project].append(key)
    key_ids = {key for _, scope, key, _, _, _ in budgets if scope == BudgetScope.KEY}
    key_ids |= {key for keys in project_keys.values() for key in keys}
    per_key: dict[int, dict[date, Decimal]] = defaultdict(dict)
    if key_ids:
        first = min(r.today for r in rows.values()) - timedelta(days=LOOKBACK_DAYS)
        last = max(r.today for r in rows.values())
        for key, day, c in (UsageDaily.objects.filter(day__gte=first, day__lte=last, api_key_id__in=key_ids)
                            .values("api_key_id", "day").annotate(c=Sum("cost")).order_by()
                            .values_list("api_key_id", "day", "c")):
            per_key[key][day] = c or Decimal(0)
    for tenant_id, scope, key, project, amount, period_name in budgets:
        row = rows[tenant_id]
        if scope in (BudgetScope.KEY, BudgetScope.PROJECT):
            period = period_for(period_name, row.timezone, now)
            keys = [key] if scope == BudgetScope.KEY else project_keys.get(project, [])
            total = sum((c for k in keys for d, c in per_key.get(k, {}).items() if period.start <= d < period.end),
                        Decimal(0))
        else:
            total = spent[tenant_id].get(period_name, Decimal(0))
        percent = (total * 100 / amount).quantize(Decimal("0.1"))
        if row.budget_percent is None or percent > row.budget_percent:
            row.budget_percent = percent


def trends_fill(rows: list[TenantRow]) -> None:
    """Each row's cost per local day over the last TREND_DAYS days (its sparkline): for the
    rows shown (a page), not for every tenant, in one query per distinct local date."""
    for today, group in _by_today(rows).items():
        first = today - timedelta(days=TREND_DAYS - 1)
        costs: dict[int, dict[date, float]] = defaultdict(dict)
        for tenant_id, day, cost in _of_group(TenantDaily.objects.filter(day__gte=first, day__lte=today), group,
                                              by_id=True).values_list("tenant_id", "day", "cost"):
            costs[tenant_id][day] = float(cost)
        for row in group:
            days = costs.get(row.pk, {})
            row.trend = [days.get(first + timedelta(days=i), 0.0) for i in range(TREND_DAYS)]


def top_spenders(rows: list[TenantRow], limit: int = 10) -> list[TenantRow]:
    return sorted((r for r in rows if r.spend_month > 0), key=lambda r: (-r.spend_month, r.slug))[:limit]


def month_costs(tenants: list[Tenant], now: datetime | None = None) -> dict[int, Decimal]:
    """Known cost this (local) month of each tenant, in one query (the tenant admin's column)."""
    if not tenants:
        return {}
    now = now or dj_timezone.now()
    starts = {t.pk: now.astimezone(zone_of(t.timezone)).date().replace(day=1) for t in tenants}
    costs = {pk: Decimal(0) for pk in starts}
    rows = (UsageDaily.objects.filter(tenant_id__in=list(starts), day__gte=min(starts.values()))
            .values("tenant_id", "day").annotate(c=Sum("cost")).order_by().values_list("tenant_id", "day", "c"))
    for tenant_id, day, cost in rows:
        if day >= starts[tenant_id]:
            costs[tenant_id] += cost or Decimal(0)
    return costs


@dataclass
class ModelCost:
    label: str
    requests: int
    cost: Decimal


def month_costs_by_model(tenant: Tenant, now: datetime | None = None) -> list[ModelCost]:
    """This (local) month's requests and known cost of one tenant per model, highest first."""
    now = now or dj_timezone.now()
    start = now.astimezone(zone_of(tenant.timezone)).date().replace(day=1)
    rows = list(UsageDaily.objects.filter(tenant=tenant, day__gte=start).values("provider_model_id")
                .annotate(n=Sum("requests"), c=Sum("cost")).order_by())
    names = {pk: f"{provider}:{model}" for pk, provider, model in ProviderModel.objects.filter(
        pk__in=[r["provider_model_id"] for r in rows if r["provider_model_id"]]
    ).values_list("pk", "provider__name", "model_id")}
    result = [ModelCost(label=names.get(r["provider_model_id"], "(no model)" if not r["provider_model_id"]
                                        else f"(deleted model {r['provider_model_id']})"),
                        requests=r["n"] or 0, cost=r["c"] or Decimal(0)) for r in rows]
    result.sort(key=lambda m: (-m.cost, -m.requests, m.label))
    return result


def month_costs_by_project(tenant: Tenant, now: datetime | None = None) -> list[ModelCost]:
    """This (local) month's requests and known cost of one tenant per project, highest first
    (from the ledger: the rollups have no project dimension)."""
    now = now or dj_timezone.now()
    today = now.astimezone(zone_of(tenant.timezone)).date()
    filters = usage_filters_build(tenant=tenant, since=today.replace(day=1), until=today, now=now)
    summary = usage_summary(tenant=tenant, group_by="project", filters=filters, percentiles=False)
    return [ModelCost(label=g.label, requests=g.requests, cost=g.cost) for g in summary.groups]


# --- provider health ----------------------------------------------------------------------------

WINDOWS = tuple(WINDOW_SLOT)  # "hour", "day"


@dataclass
class Health:
    requests: int = 0
    errors: int = 0
    p50: float | None = None
    p95: float | None = None
    cooldowns: int = 0

    @property
    def error_percent(self) -> str:
        return "–" if not self.requests else f"{self.errors * 100 / self.requests:.1f} %"


@dataclass
class ModelHealth(Health):
    pk: int = 0
    model_id: str = ""


@dataclass
class ProviderHealth(Health):
    pk: int = 0
    name: str = ""
    display_name: str = ""
    provider_type: str = ""
    owner_slug: str = ""  # "" for a platform provider
    enabled: bool = True
    sync_status: str = ""
    last_sync_at: datetime | None = None
    last_sync_error: str = ""
    models: list[ModelHealth] = field(default_factory=list)


@dataclass
class Cooldown:
    tenant_id: int
    provider_model_id: int
    seconds_left: int
    tenant_slug: str = ""
    label: str = ""


@dataclass
class PlatformHealth:
    window: str
    since: datetime
    totals: Health
    providers: list[ProviderHealth]
    cooldowns: list[Cooldown]
    redis: bool  # False: no Redis configured, or unreachable: cooldowns unknown


def active_cooldowns(limit: int = 1000) -> tuple[list[Cooldown], bool]:
    """The deployment cooldowns in Redis now (providers.cooldowns), with seconds left; False
    when no Redis is configured or it is unreachable (cooldowns unknown)."""
    client = get_redis()
    if client is None:
        return [], False
    try:
        flags = cooldowns_scan(client, limit=limit)
    except REDIS_DOWN as exc:
        log.warning("cooldowns unknown: Redis is unreachable: %s", exc)
        return [], False
    return [Cooldown(tenant_id=flag.tenant_id, provider_model_id=flag.provider_model_id,
                     seconds_left=flag.seconds_left) for flag in flags], True


def _histograms(since: datetime, span: int) -> dict[tuple[int, int], tuple[int, int, dict[int, int]]]:
    """(provider id, model id) → (requests, errors, {latency bucket: requests}) over the slots
    of ``span`` seconds starting at or after ``since``: one GROUP BY in SQL."""
    found: dict[tuple[int, int], tuple[int, int, dict[int, int]]] = {}
    rows = (HealthBucket.objects.filter(span=span, start__gte=since)
            .values("provider_id", "provider_model_id", "bucket")
            .annotate(n=Sum("requests"), e=Sum("errors")).order_by()
            .values_list("provider_id", "provider_model_id", "bucket", "n", "e"))
    for provider_id, model_id, bucket, n, e in rows:
        key = (provider_id, model_id)
        requests, errors, buckets = found.get(key) or (0, 0, {})
        buckets[bucket] = buckets.get(bucket, 0) + n
        found[key] = (requests + n, errors + e, buckets)
    return found


def _health(parts) -> Health:
    requests = errors = 0
    merged: dict[int, int] = defaultdict(int)
    for n, e, buckets in parts:
        requests, errors = requests + n, errors + e
        for bucket, count in buckets.items():
            merged[bucket] += count
    pairs = list(merged.items())
    return Health(requests=requests, errors=errors, p50=histogram_percentile(pairs, 0.5),
                  p95=histogram_percentile(pairs, 0.95))


def platform_health(*, window: str = "hour", now: datetime | None = None) -> PlatformHealth:
    """Requests, error rate and latency per provider and per model over the last hour or day,
    the cooldowns active now, and each provider's last catalog sync. Providers shown: every
    platform provider, and tenants' own providers with traffic or a cooldown in the window."""
    window = window if window in WINDOWS else "hour"
    now = now or dj_timezone.now()
    since, span = window_start(window, now)
    histograms = _histograms(since, span)
    by_model = {key: _health([part]) for key, part in histograms.items()}
    per_provider: dict[int, list] = defaultdict(list)
    for (provider_id, _), part in histograms.items():
        per_provider[provider_id].append(part)
    by_provider = {(provider_id,): _health(parts) for provider_id, parts in per_provider.items()}
    totals = _health(histograms.values())
    cooldowns, has_redis = active_cooldowns()

    model_ids = {m for _, m in by_model if m} | {c.provider_model_id for c in cooldowns}
    models = {pk: (provider_id, model_id) for pk, provider_id, model_id in ProviderModel.objects.filter(
        pk__in=model_ids).values_list("pk", "provider_id", "model_id")}
    provider_ids = {p for (p,) in by_provider if p} | {v[0] for v in models.values()}
    # .only(): the encrypted key and headers are never loaded, let alone shown.
    providers = (Provider.objects.filter(Q(owner__isnull=True) | Q(pk__in=provider_ids))
                 .select_related("owner")
                 .only("pk", "name", "display_name", "provider_type", "enabled", "sync_status", "last_sync_at",
                       "last_sync_error", "owner__slug"))
    result: dict[int, ProviderHealth] = {}
    for p in providers:
        health = by_provider.get((p.pk,), Health())
        result[p.pk] = ProviderHealth(
            pk=p.pk, name=p.name, display_name=p.display_name, provider_type=p.get_provider_type_display(),
            owner_slug=p.owner.slug if p.owner_id else "", enabled=p.enabled, sync_status=p.sync_status,
            last_sync_at=p.last_sync_at, last_sync_error=p.last_sync_error,
            requests=health.requests, errors=health.errors, p50=health.p50, p95=health.p95)
    model_rows: dict[int, ModelHealth] = {}
    for (provider_id, model_pk), health in by_model.items():
        if provider_id in result:
            model_rows[model_pk or 0] = ModelHealth(
                pk=model_pk or 0, model_id=models.get(model_pk, (0, "(no model)"))[1] if model_pk else "(no model)",
                requests=health.requests, errors=health.errors, p50=health.p50, p95=health.p95)
            result[provider_id].models.append(model_rows[model_pk or 0])

    tenant_slugs = dict(Tenant.objects.filter(pk__in={c.tenant_id for c in cooldowns}).values_list("pk", "slug"))
    for cooldown in cooldowns:
        cooldown.tenant_slug = tenant_slugs.get(cooldown.tenant_id, "")
        provider_id, model_id = models.get(cooldown.provider_model_id, (None, f"(model {cooldown.provider_model_id})"))
        provider = result.get(provider_id)
        cooldown.label = f"{provider.name}:{model_id}" if provider else model_id
        if provider is not None:
            provider.cooldowns += 1
            model = model_rows.get(cooldown.provider_model_id)
            if model is None:
                model = model_rows[cooldown.provider_model_id] = ModelHealth(
                    pk=cooldown.provider_model_id, model_id=model_id)
                provider.models.append(model)
            model.cooldowns += 1
    for provider in result.values():
        provider.models.sort(key=lambda m: (-m.requests, m.model_id))
    ordered = sorted(result.values(), key=lambda p: (p.owner_slug != "", -p.requests, p.name, p.owner_slug))
    cooldowns.sort(key=lambda c: (c.tenant_slug, c.label))
    totals.cooldowns = len(cooldowns)
    return PlatformHealth(window=window, since=since, totals=totals, providers=ordered, cooldowns=cooldowns,
                          redis=has_redis)
