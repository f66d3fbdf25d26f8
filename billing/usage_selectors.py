"""Usage reads for the REST API and the CSV export: the ledger (UsageLog) with filters, and
grouped totals. Every function takes ``tenant=``.

Totals come from the daily rollups (UsageDaily) when they can answer exactly: whole local days,
grouped by day, week, month, model, provider or key, filtered by provider or key only. The
rollups have no project dimension, so a ``project`` filter (and a caller who may see some projects
only) and grouping by project read the ledger (its index ``usage_tenant_project``). The
``model`` filter also matches what the client asked for (an alias, ``model_requested``) and
the rollups do not keep that, so it, ``status``, ``api`` and ``conversation`` filters, date-time
bounds and grouping by conversation or by api (the /v1 door) read the ledger. Latency
percentiles always read the ledger: ``percentile_cont`` on PostgreSQL, the same interpolation
in Python on other databases (the embedded SQLite default)."""

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Aggregate, Count, DateField, F, FloatField, Q, QuerySet, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from billing.models import UsageApi, UsageDaily, UsageLog, UsageStatus
from core.errors import InvalidInput
from core.timezones import zone_of
from providers.models import Provider, ProviderModel
from tenants.models import ApiKey, Project, Tenant
from tenants.selectors import project_get

ERROR_STATUSES = (UsageStatus.ERROR, UsageStatus.PARTIAL, UsageStatus.REJECTED)
TIME_GROUPINGS = ("day", "week", "month")
LEDGER_GROUPINGS = ("conversation", "api", "project")  # the rollups do not keep these
GROUPINGS = (*TIME_GROUPINGS, "model", "provider", "key", *LEDGER_GROUPINGS)
DEFAULT_DAYS = 30
EXPORT_CHUNK = 2000  # rows fetched per round trip by the CSV export (server-side cursor)


# --- filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageFilters:
    """A resolved, validated set of filters. Build it with ``usage_filters_build``."""

    start: datetime  # first instant counted (aware)
    end: datetime  # first instant not counted (aware)
    timezone: str  # the tenant's, in which dates were read
    days: tuple[date, date] | None  # (first, last) local day when both bounds are whole days
    model: str = ""
    model_ids: tuple[int, ...] = ()  # provider models named by ``model`` as "provider:model_id"
    provider_ids: tuple[int, ...] | None = None
    key_id: int | None = None
    statuses: tuple[str, ...] = ()
    conversation: str = ""
    apis: tuple[str, ...] = ()  # the /v1 doors (UsageApi values)
    project_ids: tuple[int, ...] | None = None  # the project asked for, or the caller's projects; None: all

    @property
    def rollups_can_answer(self) -> bool:
        return self.days is not None and self.project_ids is None and not (
            self.model or self.statuses or self.conversation or self.apis)


def usage_filters_build(
    *,
    tenant: Tenant,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    model: str = "",
    provider: str = "",
    key_id: int | None = None,
    statuses: tuple[str, ...] | list[str] = (),
    conversation: str = "",
    apis: tuple[str, ...] | list[str] = (),
    project: int | str | None = None,
    visible_projects: frozenset[int] | None = None,
    now: datetime | None = None,
) -> UsageFilters:
    """Resolve filters in ``tenant``'s time zone. Dates are local days and ``until`` is
    inclusive; date-times are instants and ``until`` is exclusive. Without bounds: the last
    30 local days, today included. Raises ``InvalidInput`` naming the field at fault, and
    ``NotFound`` for a ``project`` (id or slug) that is not the tenant's, or not among
    ``visible_projects`` (a caller with roles on some projects only: they see those only)."""
    zone = zone_of(tenant.timezone)
    today = (now or timezone.now()).astimezone(zone).date()
    if since is None and until is None:
        since, until = today - timedelta(days=DEFAULT_DAYS - 1), today
    elif until is None:
        until = today
    elif since is None:
        since = (until - timedelta(days=DEFAULT_DAYS - 1) if _is_date(until)
                 else until - timedelta(days=DEFAULT_DAYS))
    start = _instant(since, zone)
    end = _instant(until + timedelta(days=1), zone) if _is_date(until) else _instant(until, zone)
    if start >= end:
        raise InvalidInput(
            f"since ({since.isoformat()}) must come before until ({until.isoformat()}); a date "
            "'until' counts its whole day, a date-time 'until' is the first instant not counted.",
            field="since",
        )
    days = (since, until) if _is_date(since) and _is_date(until) else None

    for status in statuses:
        if status not in UsageStatus.values:
            raise InvalidInput(
                f"Unknown status '{status}'; use one or more of {', '.join(UsageStatus.values)} "
                "(comma-separated).",
                field="status",
            )

    for api in apis:
        if api not in UsageApi.values:
            raise InvalidInput(
                f"Unknown api '{api}'; use one or more of {', '.join(UsageApi.values)} (comma-separated).",
                field="api",
            )

    model = model.strip()
    model_ids: tuple[int, ...] = ()
    if ":" in model:
        provider_name, model_id = model.split(":", 1)
        model_ids = tuple(
            ProviderModel.objects.filter(provider__name=provider_name, model_id=model_id)
            .filter(Q(provider__owner=tenant) | Q(provider__owner__isnull=True))
            .values_list("pk", flat=True)
        )

    provider_ids = None
    if provider:
        visible = Provider.objects.filter(Q(owner=tenant) | Q(owner__isnull=True))
        provider_ids = tuple(visible.filter(name=provider).values_list("pk", flat=True))
        if not provider_ids:
            names = sorted(set(visible.values_list("name", flat=True)))
            raise InvalidInput(
                f"Unknown provider '{provider}'; providers of tenant '{tenant.slug}': "
                f"{', '.join(names) or 'none yet'}.",
                field="provider",
            )

    project_ids = None if visible_projects is None else tuple(sorted(visible_projects))
    if project is not None and project != "":
        found = project_get(tenant=tenant, project=project, project_ids=visible_projects)
        project_ids = (found.pk,)

    tenant_keys = ApiKey.objects.filter(tenant=tenant)
    if visible_projects is not None:
        tenant_keys = tenant_keys.filter(project_id__in=visible_projects)
    if key_id is not None and not tenant_keys.filter(pk=key_id).exists():
        keys = tenant_keys.order_by("pk")[:20]
        listed = ", ".join(f"{k.pk} ({k.name})" for k in keys)
        raise InvalidInput(
            f"API key {key_id} is not a key of tenant '{tenant.slug}'; its keys: {listed or 'none'}.",
            field="key",
        )

    return UsageFilters(
        start=start, end=end, timezone=zone.key, days=days, model=model, model_ids=model_ids,
        provider_ids=provider_ids, key_id=key_id, statuses=tuple(statuses), conversation=conversation,
        apis=tuple(apis), project_ids=project_ids,
    )


def _is_date(value) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _instant(value: date | datetime, zone: ZoneInfo) -> datetime:
    if _is_date(value):
        return datetime.combine(value, time.min, tzinfo=zone)
    return value if timezone.is_aware(value) else value.replace(tzinfo=zone)


# --- ledger rows ---------------------------------------------------------------------------


def usage_rows(
    *, tenant: Tenant, filters: UsageFilters, before: tuple[datetime, int] | None = None
) -> QuerySet[UsageLog]:
    """Ledger rows matching ``filters``, newest first. ``before`` = (created_at, id) of the
    last row already seen: the next page starts after it (keyset pagination)."""
    rows = UsageLog.objects.filter(tenant=tenant, created_at__gte=filters.start, created_at__lt=filters.end)
    if filters.model:
        rows = rows.filter(Q(model_requested=filters.model) | Q(provider_model_id__in=filters.model_ids))
    if filters.provider_ids is not None:
        rows = rows.filter(provider_id__in=filters.provider_ids)
    if filters.key_id is not None:
        rows = rows.filter(api_key_id=filters.key_id)
    if filters.statuses:
        rows = rows.filter(status__in=filters.statuses)
    if filters.conversation:
        rows = rows.filter(conversation_id=filters.conversation)
    if filters.apis:
        rows = rows.filter(api__in=filters.apis)
    if filters.project_ids is not None:
        rows = rows.filter(project_id__in=filters.project_ids)
    if before is not None:
        at, row_id = before
        rows = rows.filter(created_at__lte=at).exclude(created_at=at, id__gte=row_id)
    return rows.order_by("-created_at", "-id")


# Columns of the CSV export, in order: (header, ledger field or lookup).
EXPORT_COLUMNS = (
    ("request_id", "request_id"),
    ("created_at", "created_at"),
    ("model_requested", "model_requested"),
    ("provider", "provider__name"),
    ("model", "provider_model__model_id"),
    ("key_name", "api_key__name"),
    ("key_prefix", "api_key__prefix"),
    ("project", "project_id"),  # the project's slug (usage_export_rows; its id if deleted since)
    ("status", "status"),
    ("error_type", "error_type"),
    ("attempts", "attempts"),
    ("input_tokens", "input_tokens"),
    ("cached_input_tokens", "cached_input_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("output_tokens", "output_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("tokens_estimated", "tokens_estimated"),
    ("cost", "cost"),
    ("provider_cost", "provider_cost"),
    ("latency_ms", "latency_ms"),
    ("ttft_ms", "ttft_ms"),
    ("stream", "stream"),
    ("conversation_id", "conversation_id"),
    ("end_user", "end_user"),
    ("api", "api"),
)


def usage_export_rows(*, tenant: Tenant, filters: UsageFilters) -> Iterator[tuple]:
    """The rows of ``usage_rows`` as tuples in ``EXPORT_COLUMNS`` order, fetched
    ``EXPORT_CHUNK`` at a time (a server-side cursor on PostgreSQL), so memory stays flat
    however many rows there are."""
    rows = usage_rows(tenant=tenant, filters=filters)
    tuples = rows.values_list(*(lookup for _, lookup in EXPORT_COLUMNS)).iterator(chunk_size=EXPORT_CHUNK)
    return _with_project_slugs(tuples, project_slugs(tenant=tenant))


_PROJECT_COLUMN = [lookup for _, lookup in EXPORT_COLUMNS].index("project_id")


def _with_project_slugs(rows: Iterator[tuple], slugs: dict[int, str]) -> Iterator[tuple]:
    i = _PROJECT_COLUMN
    try:
        for row in rows:
            if row[i] is None:
                yield row
            else:
                yield (*row[:i], slugs.get(row[i], f"(deleted project {row[i]})"), *row[i + 1:])
    finally:
        rows.close()  # a download cut short: the server-side cursor closes now


def project_slugs(*, tenant: Tenant) -> dict[int, str]:
    return dict(Project.objects.filter(tenant=tenant).values_list("pk", "slug"))


# --- summary -------------------------------------------------------------------------------


@dataclass
class UsageMetrics:
    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)  # known costs only
    unpriced: int = 0  # requests that used tokens but whose cost is unknown (not in ``cost``)
    latency_ms_total: int = 0
    p50: float | None = None
    p95: float | None = None

    @property
    def error_rate(self) -> float:
        return round(self.errors / self.requests, 4) if self.requests else 0.0

    @property
    def latency_ms_avg(self) -> float | None:
        return round(self.latency_ms_total / self.requests, 1) if self.requests else None


@dataclass
class UsageGroup(UsageMetrics):
    key: object = None  # date (first day), model / provider / key id, conversation id, api; None = none
    label: str = ""
    display_name: str | None = None  # model and provider groups
    prefix: str | None = None  # key groups: the masked key (tg_ab12cd34e…), never the key


@dataclass
class UsageSummary:
    group_by: str
    source: str  # "rollups" or "ledger": where the totals were read
    filters: UsageFilters
    totals: UsageMetrics
    groups: list[UsageGroup] = field(default_factory=list)
    more: bool = False  # conversation groups beyond ``limit`` were left out


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate ``percentile_cont(f) WITHIN GROUP (ORDER BY x)``:
    linear interpolation between the two nearest values. Aggregates over the same ORDER BY
    share one sort."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float):
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be between 0 and 1")
        super().__init__(expression, fraction=repr(float(fraction)))


def percentile(values: list[int], fraction: float) -> float | None:
    """``percentile_cont`` of sorted ``values``, computed as PostgreSQL does."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


# Unknown cost on a request that used tokens (a refusal with none cost nothing): as the
# rollups count it (billing.ledger).
UNPRICED = Q(cost__isnull=True) & (Q(input_tokens__gt=0) | Q(output_tokens__gt=0))
_COUNTERS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
# Aggregates are named "agg_<metric>": a name that is also a column (cost, input_tokens) would
# shadow the column in the filters of the aggregates after it.
_LEDGER_SUMS = {
    "agg_requests": Count("id"),
    "agg_errors": Count("id", filter=Q(status__in=ERROR_STATUSES)),
    "agg_cache_hits": Count("id", filter=Q(status=UsageStatus.CACHE_HIT)),
    **{f"agg_{name}": Sum(name, default=0) for name in _COUNTERS},
    "agg_cost": Sum("cost", default=Decimal(0)),
    "agg_unpriced": Count("id", filter=UNPRICED),
    "agg_latency_ms_total": Sum("latency_ms", default=0),
}
_ROLLUP_SUMS = {
    **{f"agg_{name}": Sum(name, default=0) for name in ("requests", "errors", "cache_hits", *_COUNTERS)},
    "agg_cost": Sum("cost", default=Decimal(0)),
    "agg_unpriced": Sum("unpriced", default=0),
    "agg_latency_ms_total": Sum("latency_ms_total", default=0),
}
_PERCENTILES = {"agg_p50": PercentileCont("latency_ms", 0.5), "agg_p95": PercentileCont("latency_ms", 0.95)}


def _metrics(row: dict) -> dict:
    return {name.removeprefix("agg_"): value for name, value in row.items()}


_NONE_LABELS = {"model": "(no model)", "provider": "(no provider)", "key": "(no key)",
                "conversation": "(no conversation)", "api": "(no api)", "project": "(no project)"}


def _ledger_key(group_by: str, zone: ZoneInfo):
    if group_by in TIME_GROUPINGS:
        return Trunc("created_at", group_by, output_field=DateField(), tzinfo=zone)
    return F({"model": "provider_model_id", "provider": "provider_id", "key": "api_key_id",
              "conversation": "conversation_id", "api": "api", "project": "project_id"}[group_by])


def _rollup_key(group_by: str):
    if group_by == "day":
        return F("day")
    if group_by in TIME_GROUPINGS:
        return Trunc("day", group_by, output_field=DateField())
    return F({"model": "provider_model_id", "provider": "provider_id", "key": "api_key_id"}[group_by])


def _normal(key):
    """0 (rollups), None (ledger) and "" (no conversation) all mean "none"."""
    return key or None


def usage_summary(
    *, tenant: Tenant, group_by: str, filters: UsageFilters, limit: int = 100, percentiles: bool = True
) -> UsageSummary:
    """Totals and one group per ``group_by`` value: time groups oldest first, the others by
    cost, highest first (``limit`` caps conversation groups; ``more`` says some were left out).
    Latency percentiles read every ledger row in range, even when the rollups give the rest;
    ``percentiles=False`` leaves them out (None) for a reader that only needs totals."""
    if group_by not in GROUPINGS:
        raise InvalidInput(f"Unknown group_by '{group_by}'; use one of {', '.join(GROUPINGS)}.", field="group_by")
    zone = ZoneInfo(filters.timezone)
    ledger = usage_rows(tenant=tenant, filters=filters).order_by()
    ledger_key = _ledger_key(group_by, zone)
    in_sql = connection.vendor == "postgresql"

    use_rollups = filters.rollups_can_answer and group_by not in LEDGER_GROUPINGS
    if use_rollups:
        first, last = filters.days
        base = UsageDaily.objects.filter(tenant=tenant, day__gte=first, day__lte=last)
        if filters.provider_ids is not None:
            base = base.filter(provider_id__in=filters.provider_ids)
        if filters.key_id is not None:
            base = base.filter(api_key_id=filters.key_id)
        key, sums = _rollup_key(group_by), _ROLLUP_SUMS
    else:
        base, key, sums = ledger, ledger_key, dict(_LEDGER_SUMS)
        if percentiles and in_sql:  # one scan gives sums and percentiles
            sums.update(_PERCENTILES)

    grouped = base.order_by().values(k=key).annotate(**sums)
    if group_by == "conversation":
        grouped = grouped.order_by("-agg_cost", "-agg_requests", "k")[: limit + 1]
    rows = list(grouped)
    more = len(rows) > limit
    rows = rows[:limit] if more else rows
    totals = UsageMetrics(**_metrics(base.aggregate(**sums)))

    groups = {}
    for row in rows:
        group_key = _normal(row.pop("k"))
        groups[group_key] = UsageGroup(key=group_key, **_metrics(row))

    if percentiles and (use_rollups or not in_sql):
        if in_sql:
            totals.p50, totals.p95 = ledger.aggregate(**_PERCENTILES).values()
            grouped_percentiles = ledger.values(k=ledger_key).annotate(**_PERCENTILES)
            by_key = {_normal(r.pop("k")): _metrics(r) for r in grouped_percentiles}
        else:
            by_key, overall = _percentiles_python(ledger, ledger_key)
            totals.p50, totals.p95 = overall["p50"], overall["p95"]
        for group_key, group in groups.items():
            found = by_key.get(group_key, {})
            group.p50, group.p95 = found.get("p50"), found.get("p95")

    ordered = list(groups.values())
    if group_by in TIME_GROUPINGS:
        ordered.sort(key=lambda g: g.key)
    elif group_by == "api":
        ordered.sort(key=lambda g: (-g.cost, -g.requests, g.key or ""))
    elif group_by != "conversation":
        ordered.sort(key=lambda g: (-g.cost, -g.requests, g.key is None, g.key or 0))
    _label(tenant=tenant, group_by=group_by, groups=ordered)
    return UsageSummary(group_by=group_by, source="rollups" if use_rollups else "ledger", filters=filters,
                        totals=totals, groups=ordered, more=more)


def _percentiles_python(ledger: QuerySet, key) -> tuple[dict, dict]:
    """p50 / p95 per group and overall, reading latencies in one pass (databases without
    ``percentile_cont``)."""
    by_key: dict[object, list[int]] = defaultdict(list)
    latencies = ledger.annotate(k=key).values_list("k", "latency_ms")
    for group_key, latency in latencies.iterator(chunk_size=EXPORT_CHUNK):
        by_key[_normal(group_key)].append(latency)
    everything: list[int] = []
    result = {}
    for group_key, values in by_key.items():
        values.sort()
        everything.extend(values)
        result[group_key] = {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
    everything.sort()
    return result, {"p50": percentile(everything, 0.5), "p95": percentile(everything, 0.95)}


def _label(*, tenant: Tenant, group_by: str, groups: list[UsageGroup]) -> None:
    ids = [g.key for g in groups if g.key is not None]
    for group in groups:
        if group.key is None:
            group.label = _NONE_LABELS[group_by]
        elif group_by == "day":
            group.label = group.key.isoformat()
        elif group_by == "week":
            year, week, _ = group.key.isocalendar()
            group.label = f"{year}-W{week:02d}"
        elif group_by == "month":
            group.label = group.key.strftime("%Y-%m")
        elif group_by in ("conversation", "api"):
            group.label = group.key
    # Model and provider ids come from this tenant's own ledger rows; keys are looked up in it.
    if group_by == "model":
        models = ProviderModel.objects.filter(pk__in=ids).select_related("provider").in_bulk()
        for group in groups:
            if (pm := models.get(group.key)) is not None:
                group.label = f"{pm.provider.name}:{pm.model_id}"
                group.display_name = pm.display_name or pm.model_id
            elif group.key is not None:
                group.label = f"(deleted model {group.key})"
    elif group_by == "provider":
        providers = Provider.objects.filter(pk__in=ids).in_bulk()
        for group in groups:
            if (p := providers.get(group.key)) is not None:
                group.label, group.display_name = p.name, p.display_name or p.name
            elif group.key is not None:
                group.label = f"(deleted provider {group.key})"
    elif group_by == "project":
        projects = Project.objects.filter(tenant=tenant, pk__in=ids).in_bulk()
        for group in groups:
            if (p := projects.get(group.key)) is not None:
                group.label, group.display_name = p.slug, p.name
            elif group.key is not None:
                group.label = f"(deleted project {group.key})"
    elif group_by == "key":
        keys = ApiKey.objects.filter(tenant=tenant, pk__in=ids).in_bulk()
        for group in groups:
            if (k := keys.get(group.key)) is not None:
                group.label, group.prefix = k.name, k.masked
            elif group.key is not None:
                group.label = f"(deleted key {group.key})"
