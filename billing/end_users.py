"""End users: the people or accounts a tenant's app serves, named per request by the
``x-tollgate-end-user`` header (else the body's ``user`` / ``metadata.user_id``; the ledger
row's ``end_user``, at most 128 characters).

Reads come from the EndUserDaily rollup (billing.ledger writes it with the ledger; the
gateway rebuilds per-end-user budget buckets from it through billing.spend.spend_by_day): the
top end users of a period with their status (blocked, over an end-user budget, ok). Writes are the
blocks (EndUserBlock): an end user refused at the door in one project or in the whole tenant;
each block and unblock writes an audit event, and its save or delete replaces the tenant's
configuration version (billing/apps.py), so every gateway worker reloads its blocks on its
next request."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, QuerySet, Sum

from billing.models import Budget, BudgetScope, EndUserBlock, EndUserDaily
from billing.periods import local_today, period_for
from core.errors import InvalidInput, NotFound
from core.validation import text_check
from providers.selectors import provider_model_ids_named
from tenants.access import Principal
from tenants.models import Project, Tenant
from tenants.services import audit_record

MAX_END_USER = 128  # UsageLog.end_user, EndUserDaily.end_user, EndUserBlock.end_user
MAX_REASON = 200  # EndUserBlock.reason
TOP_LIMIT_MAX = 500

# The top list's periods: name -> label. Days are the tenant's local days, ending today.
PERIODS = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "month": "This month",
}
DEFAULT_PERIOD = "30d"


# --- selectors: spend ------------------------------------------------------------------------


# --- selectors: blocks -----------------------------------------------------------------------


def blocked_end_users(*, tenant: Tenant, project_ids: frozenset[int] | None = None) -> QuerySet[EndUserBlock]:
    """The tenant's end-user blocks; ``project_ids`` (a project-scoped caller's): the blocks in
    those projects only (tenant-wide blocks name end users of every project)."""
    blocks = EndUserBlock.objects.filter(tenant=tenant).select_related("project", "created_by")
    if project_ids is not None:
        blocks = blocks.filter(project_id__in=project_ids)
    return blocks.order_by("end_user", F("project__slug").asc(nulls_first=True), "pk")  # tenant-wide first


def end_user_block_get(*, tenant: Tenant, block_id: int, project_ids: frozenset[int] | None = None) -> EndUserBlock:
    block = blocked_end_users(tenant=tenant, project_ids=project_ids).filter(pk=block_id).first()
    if block is None:
        raise NotFound(f"End-user block {block_id} not found in tenant '{tenant.slug}'; "
                       "GET /api/end-users/blocks lists them.")
    return block


# --- selectors: the top list -----------------------------------------------------------------


def period_days(period: str, tz_name: str, now: datetime | None = None) -> tuple[date, date]:
    """The first and last local day (inclusive) of a top-list period, ending today."""
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)} (got {period!r}).", field="period")
    today = local_today(tz_name, now)
    start = {"today": today, "7d": today - timedelta(days=6), "30d": today - timedelta(days=29),
             "month": today.replace(day=1)}[period]
    return start, today


@dataclass
class EndUserRow:
    end_user: str
    project_id: int  # 0: requests of no project
    project_slug: str | None  # None: no project, or one deleted since
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost: Decimal
    unpriced: int
    last_day: date
    status: str = "ok"  # blocked | blocked_in_project | over_budget | ok
    blocks: list[EndUserBlock] = field(default_factory=list)  # the blocks that refuse this row's requests
    over: list[tuple[Budget, Decimal]] = field(default_factory=list)  # (budget, spent) at or over its amount

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class TopEndUsers:
    period: str
    start: date
    end: date  # inclusive
    timezone: str
    rows: list[EndUserRow]


def top_end_users(*, tenant: Tenant, period: str = DEFAULT_PERIOD, project: Project | None = None, limit: int = 50,
                  search: str = "", project_ids: frozenset[int] | None = None,
                  now: datetime | None = None) -> TopEndUsers:
    """The end users who spent most in ``period`` (today, 7d, 30d, month: local days ending
    today), one row per end user and project, dearest first; ``project``: that project's
    only; ``search``: end users whose name contains it; ``project_ids`` (a project-scoped
    caller's): those projects' only. One grouped query over the rollup, then a few for the
    page's rows only: project slugs, blocks, end-user budgets and their spend."""
    start, end = period_days(period, tenant.timezone, now)
    limit = max(1, min(limit, TOP_LIMIT_MAX))
    rows = EndUserDaily.objects.filter(tenant=tenant, day__gte=start, day__lte=end)
    if project is not None:
        rows = rows.filter(project_id=project.pk)
    if project_ids is not None:
        rows = rows.filter(project_id__in=project_ids)
    search = (search or "").strip()
    if search:
        rows = rows.filter(end_user__icontains=search)
    grouped = (
        rows.values("end_user", "project_id")
        .annotate(requests=Sum("requests"), errors=Sum("errors"), input_tokens=Sum("input_tokens"),
                  output_tokens=Sum("output_tokens"), cost=Sum("cost"), unpriced=Sum("unpriced"),
                  last_day=Max("day"))
        .order_by("-cost", "-requests", "end_user", "project_id")[:limit]
    )
    found = [EndUserRow(project_slug=None, **row) for row in grouped]
    slugs = dict(Project.objects.filter(tenant=tenant, pk__in={r.project_id for r in found})
                 .values_list("pk", "slug"))
    for row in found:
        row.project_slug = slugs.get(row.project_id)
    _add_status(tenant, found, now)
    return TopEndUsers(period=period, start=start, end=end, timezone=tenant.timezone, rows=found)


def _add_status(tenant: Tenant, rows: list[EndUserRow], now: datetime | None) -> None:
    """Each row's blocks and the end-user budgets it is over, and its status from them."""
    if not rows:
        return
    users = {row.end_user for row in rows}
    blocks: dict[str, list[EndUserBlock]] = {}
    for block in (EndUserBlock.objects.filter(tenant=tenant, end_user__in=users)
                  .select_related("project", "created_by")):
        blocks.setdefault(block.end_user, []).append(block)

    budgets = list(Budget.objects.filter(tenant=tenant, scope=BudgetScope.END_USER, enabled=True)
                   .filter(Q(project__isnull=True) | Q(project_id__in={row.project_id for row in rows}))
                   .order_by("name", "pk"))
    spent: dict[str, list[tuple[int, int, date, Decimal]]] = {}  # end user -> (project, model, day, cost)
    periods, models = {}, {}
    if budgets:
        named = {(b.model, b.project_id): provider_model_ids_named(tenant=tenant, name=b.model,
                                                                   project_id=b.project_id)
                 for b in budgets if b.model}  # each name looked up once
        for budget in budgets:
            periods[budget.pk] = period_for(budget.period, tenant.timezone, now)
            models[budget.pk] = named.get((budget.model, budget.project_id)) if budget.model else None
        first = min(p.start for p in periods.values())
        for r in (EndUserDaily.objects.filter(tenant=tenant, end_user__in=users, day__gte=first)
                  .values("end_user", "project_id", "provider_model_id", "day")
                  .annotate(total=Sum("cost")).order_by()):
            spent.setdefault(r["end_user"], []).append((r["project_id"], r["provider_model_id"], r["day"],
                                                        r["total"]))

    for row in rows:
        row.blocks = [b for b in blocks.get(row.end_user, ())
                      if b.project_id is None or b.project_id == row.project_id]
        for budget in budgets:
            if budget.project_id is not None and budget.project_id != row.project_id:
                continue
            period, wanted = periods[budget.pk], models[budget.pk]
            total = sum((cost for project_id, model_id, day, cost in spent.get(row.end_user, ())
                         if period.start <= day < period.end
                         and (budget.project_id is None or project_id == budget.project_id)
                         and (wanted is None or model_id in wanted)), Decimal(0))
            if total >= budget.amount:
                row.over.append((budget, total))
        if any(b.project_id is None for b in row.blocks):
            row.status = "blocked"
        elif row.blocks:
            row.status = "blocked_in_project"
        elif row.over:
            row.status = "over_budget"


# --- services: blocks ------------------------------------------------------------------------


def end_user_clean(value: object) -> str:
    """An end user as the gateway records it: 1 to 128 characters, no control characters
    (surrounding spaces are dropped)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("end_user must not be empty: give the end user as your app sends it (the "
                           "x-tollgate-end-user header, or the body's user / metadata.user_id).", field="end_user")
    value = value.strip()
    if len(value) > MAX_END_USER:
        raise InvalidInput(f"end_user is {len(value)} characters long; the gateway records at most {MAX_END_USER}, "
                           f"so a longer one can never match a request.", field="end_user")
    return text_check(value, field="end_user", what="end_user")


def _reason_clean(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("reason must be a string.", field="reason")
    value = value.strip()
    if len(value) > MAX_REASON:
        raise InvalidInput(f"reason is {len(value)} characters long; keep it to {MAX_REASON}.", field="reason")
    return text_check(value, field="reason", what="reason")


def block_audit_view(block: EndUserBlock) -> dict:
    return {"end_user": block.end_user, "project": block.project.slug if block.project_id else None,
            "reason": block.reason}


def end_user_block(*, tenant: Tenant, end_user: str, project: Project | None = None, reason: str = "",
                   actor: Principal) -> tuple[EndUserBlock, bool]:
    """Refuse ``end_user``'s requests (403 end_user_blocked) in ``project``, or in every project
    of the tenant when it is None. Idempotent: blocking an end user already blocked there
    returns the existing block unchanged and False (True: created now)."""
    end_user = end_user_clean(end_user)
    reason = _reason_clean(reason)
    if project is not None and project.tenant_id != tenant.pk:
        raise NotFound(f"Project {project.slug!r} not found in tenant '{tenant.slug}'.")
    existing = EndUserBlock.objects.filter(tenant=tenant, project=project, end_user=end_user)
    found = existing.first()
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            block = EndUserBlock.objects.create(tenant=tenant, project=project, end_user=end_user, reason=reason,
                                                created_by=actor.user)
            audit_record(actor=actor, action="end_user.block", tenant=tenant, target=f"end_user_block:{block.pk}",
                         after=block_audit_view(block))
    except IntegrityError:  # blocked at the same moment by someone else
        found = existing.first()
        if found is None:
            raise
        return found, False
    return block, True


def end_user_unblock(*, block: EndUserBlock, actor: Principal) -> None:
    """Lift a block: the end user's requests are served again from the gateway's next request."""
    with transaction.atomic():
        deleted, _ = EndUserBlock.objects.filter(pk=block.pk).delete()
        if deleted:
            audit_record(actor=actor, action="end_user.unblock", tenant=block.tenant,
                         target=f"end_user_block:{block.pk}", before=block_audit_view(block))
