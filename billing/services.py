"""Writes for billing: budgets (create, change, delete, each with its audit event) and the
scheduled budget check that turns threshold crossings into ``BudgetAlert`` rows.

Also the one read the budget status needs beyond ``billing.selectors`` (the in-flight
reservations kept in Redis by the data plane), kept beside the status it feeds."""

import functools
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import (
    AlertKind,
    Budget,
    BudgetAction,
    BudgetAlert,
    BudgetPeriod,
    BudgetScope,
    UsageDaily,
    default_thresholds,
)
from billing.periods import Period, local_today, period_for
from billing.selectors import budget_period, budget_spent
from billing.spend import reserved_key
from core.errors import InvalidInput
from core.net import UnsafeURL, UpstreamUnreachable, check_url
from core.redis import get_redis
from core.validation import text_check
from providers.models import ModelAlias
from tenants.access import Principal
from tenants.models import ApiKey, Tenant
from tenants.services import audit_record

log = logging.getLogger(__name__)

BUDGET_FIELDS = (
    "name", "scope", "api_key", "amount", "period", "thresholds", "action", "downgrade_alias",
    "webhook_url", "enabled",
)
MAX_AMOUNT = Decimal(10) ** 14  # Budget.amount: 20 digits, 6 of them decimals
MAX_THRESHOLDS = 10
NANO = Decimal("1e-9")
ROLLING_DAYS = 30


# --- budgets: validation ---------------------------------------------------------------------


def _choices(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _clean_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("name must not be empty: give the budget a name such as 'Monthly'.", field="name")
    value = value.strip()
    if len(value) > 100:
        raise InvalidInput("name is longer than 100 characters.", field="name")
    # A downgrade sends the name back in the x-tollgate-budget-downgrade response header.
    return text_check(value, field="name", what="name")


def _clean_amount(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput('amount must be a decimal USD amount such as "100.00" (not a float).', field="amount")
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise InvalidInput(f'amount must be a USD amount such as "100.00" (got {value!r}).', field="amount")
    if not amount.is_finite() or amount <= 0:
        raise InvalidInput('amount must be more than 0 USD, e.g. "100.00".', field="amount")
    if amount >= MAX_AMOUNT:
        raise InvalidInput(f"amount must be less than {MAX_AMOUNT:,} USD.", field="amount")
    if amount != amount.quantize(Decimal("1e-6")):
        raise InvalidInput("amount has more than 6 decimal places; round it to the micro-dollar.", field="amount")
    return amount.quantize(Decimal("1e-6"))


def _clean_thresholds(value: Any) -> list[int]:
    hint = "Send 1 to 10 distinct whole percents between 1 and 1000, e.g. [50, 80, 100]."
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInput(f"thresholds must be a non-empty list. {hint}", field="thresholds")
    if len(value) > MAX_THRESHOLDS:
        raise InvalidInput(f"thresholds has {len(value)} entries; at most {MAX_THRESHOLDS}. {hint}",
                           field="thresholds")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000]
    if bad:
        raise InvalidInput(f"thresholds contains {bad[0]!r}, which is not a whole percent in 1..1000. {hint}",
                           field="thresholds")
    duplicates = sorted({v for v in value if list(value).count(v) > 1})
    if duplicates:
        raise InvalidInput(f"thresholds repeats {', '.join(map(str, duplicates))}. {hint}", field="thresholds")
    return sorted(value)


def _clean_webhook_url(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("webhook_url must be a string (an https:// URL) or empty.", field="webhook_url")
    value = value.strip()
    if not value:
        return ""
    if len(value) > 500:
        raise InvalidInput("webhook_url is longer than 500 characters.", field="webhook_url")
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise InvalidInput(
            f"webhook_url '{mask_url(value)}' is not a valid http(s) URL, e.g. "
            "https://hooks.slack.com/services/….", field="webhook_url",
        )
    try:
        check_url(value)
    except UnsafeURL as exc:
        raise InvalidInput(f"webhook_url cannot be used: {exc.message}", field="webhook_url")
    except UpstreamUnreachable:
        pass  # the name may resolve later; every send is vetted again when it connects
    return value


def _aliases_hint(tenant: Tenant) -> str:
    names = list(ModelAlias.objects.filter(tenant=tenant).order_by("name").values_list("name", flat=True)[:50])
    if not names:
        return f"tenant '{tenant.slug}' has no aliases yet; create one with POST /api/aliases."
    return f"aliases of tenant '{tenant.slug}': {', '.join(names)}."


def _key_of(tenant: Tenant, value: Any) -> ApiKey:
    key_id = value.pk if isinstance(value, ApiKey) else value
    if isinstance(key_id, bool) or not isinstance(key_id, int):
        raise InvalidInput(f"api_key must be the id of one of the tenant's API keys (got {value!r}).",
                           field="api_key")
    # Looked up through the tenant: another tenant's key reads exactly like a missing one.
    key = ApiKey.objects.filter(tenant=tenant, pk=key_id).first()
    if key is None:
        raise InvalidInput(
            f"api_key {key_id} is not an API key of tenant '{tenant.slug}'; list the keys with "
            "GET /api/keys.", field="api_key",
        )
    return key


def _budget_clean(*, tenant: Tenant, data: dict[str, Any], current: Budget | None) -> dict[str, Any]:
    """The full, valid field set of a budget after applying ``data`` (only the fields that are
    given change; on create, missing optional fields take their defaults)."""
    unknown = sorted(set(data) - set(BUDGET_FIELDS))
    if unknown:
        raise InvalidInput(
            f"Unknown budget field(s): {', '.join(unknown)}. Allowed: {', '.join(BUDGET_FIELDS)}.",
            field=unknown[0],
        )
    if current is None:
        for required in ("name", "amount"):
            if data.get(required) in (None, ""):
                raise InvalidInput(f"{required} is required.", field=required)
        state: dict[str, Any] = {
            "scope": BudgetScope.TENANT, "api_key": None, "period": BudgetPeriod.MONTH,
            "thresholds": default_thresholds(), "action": BudgetAction.ALERT, "downgrade_alias": "",
            "webhook_url": "", "enabled": True,
        }
    else:
        state = {f: getattr(current, f) for f in BUDGET_FIELDS}

    if "name" in data:
        state["name"] = _clean_name(data["name"])
    if "amount" in data:
        state["amount"] = _clean_amount(data["amount"])
    if "period" in data:
        if data["period"] not in BudgetPeriod.values:
            raise InvalidInput(f"period must be one of {_choices(BudgetPeriod.values)}.", field="period")
        state["period"] = data["period"]
    if "thresholds" in data:
        state["thresholds"] = _clean_thresholds(data["thresholds"])
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise InvalidInput("enabled must be true or false.", field="enabled")
        state["enabled"] = data["enabled"]
    if "webhook_url" in data:
        state["webhook_url"] = _clean_webhook_url(data["webhook_url"])

    # scope and key: a key given without a scope means "this key's budget".
    if "scope" in data:
        if data["scope"] not in BudgetScope.values:
            raise InvalidInput(f"scope must be one of {_choices(BudgetScope.values)}.", field="scope")
        state["scope"] = data["scope"]
    elif data.get("api_key") is not None:
        state["scope"] = BudgetScope.KEY
    if state["scope"] == BudgetScope.TENANT:
        if data.get("api_key") is not None:
            raise InvalidInput(
                "api_key must be null when scope is 'tenant' (the budget covers every key of the "
                "tenant); set scope to 'key' to limit one key.", field="api_key",
            )
        state["api_key"] = None
    else:
        if "api_key" in data:
            if data["api_key"] is None:
                raise InvalidInput("api_key is required when scope is 'key': give the id of one of the "
                                   "tenant's API keys.", field="api_key")
            key = _key_of(tenant, data["api_key"])
            unchanged = current is not None and current.api_key_id == key.pk
            if key.revoked_at is not None and not unchanged:
                raise InvalidInput(
                    f"api_key {key.pk} ({key.name}, {key.masked}) is revoked, so it can spend nothing; "
                    "choose an active key.", field="api_key",
                )
            state["api_key"] = key
        elif state["api_key"] is None:
            raise InvalidInput("api_key is required when scope is 'key': give the id of one of the "
                               "tenant's API keys.", field="api_key")

    # action and its alias: the alias must be one of this tenant's.
    if "action" in data:
        if data["action"] not in BudgetAction.values:
            raise InvalidInput(f"action must be one of {_choices(BudgetAction.values)}.", field="action")
        state["action"] = data["action"]
    alias = data.get("downgrade_alias")
    if alias is not None and not isinstance(alias, str):
        raise InvalidInput("downgrade_alias must be the name of an alias (a string).", field="downgrade_alias")
    if state["action"] == BudgetAction.DOWNGRADE:
        if alias is not None:
            state["downgrade_alias"] = alias.strip()
        if not state["downgrade_alias"]:
            raise InvalidInput(
                "downgrade_alias is required when action is 'downgrade': name the cheaper alias to "
                f"route to; {_aliases_hint(tenant)}", field="downgrade_alias",
            )
        # Checked when the alias or the action is set; a budget whose alias was deleted later can
        # still be changed otherwise (disabled, say) without naming a new one.
        rechecked = current is None or "action" in data or "downgrade_alias" in data
        if rechecked and not ModelAlias.objects.filter(tenant=tenant, name=state["downgrade_alias"]).exists():
            raise InvalidInput(
                f"downgrade_alias '{state['downgrade_alias']}' is not an alias of this tenant; "
                f"{_aliases_hint(tenant)}", field="downgrade_alias",
            )
    else:
        if alias:
            raise InvalidInput(
                f"downgrade_alias is only used when action is 'downgrade' (action is '{state['action']}'); "
                "leave it out or set action to 'downgrade'.", field="downgrade_alias",
            )
        state["downgrade_alias"] = ""
    return state


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/…WXYZ``: enough to recognise a webhook, not to use it."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.hostname or ''}"
    except ValueError:
        origin = ""
    rest = url[len(origin):]
    return f"{origin}/…{rest[-4:]}" if len(rest) > 8 else origin or "…"


def budget_audit_view(budget: Budget) -> dict[str, Any]:
    return {
        "name": budget.name, "scope": budget.scope, "api_key": budget.api_key_id,
        "amount": str(budget.amount), "period": budget.period, "thresholds": budget.thresholds,
        "action": budget.action, "downgrade_alias": budget.downgrade_alias,
        "webhook_url": mask_url(budget.webhook_url), "enabled": budget.enabled,
    }


def budget_validate(*, tenant: Tenant, data: dict[str, Any], budget: Budget | None = None) -> dict[str, Any]:
    """Check ``data`` as budget_create / budget_update would, without writing (the admin form)."""
    return _budget_clean(tenant=tenant, data=data, current=budget)


# --- budgets: writes -------------------------------------------------------------------------


def budget_create(*, tenant: Tenant, data: dict[str, Any], actor: Principal) -> Budget:
    state = _budget_clean(tenant=tenant, data=data, current=None)
    with transaction.atomic():
        budget = Budget.objects.create(tenant=tenant, **state)
        audit_record(actor=actor, action="budget.create", tenant=tenant, target=f"budget:{budget.pk}",
                     after=budget_audit_view(budget))
    return budget


def budget_update(*, budget: Budget, data: dict[str, Any], actor: Principal) -> Budget:
    """Change the fields given in ``data``; the others keep their value."""
    with transaction.atomic():
        locked = Budget.objects.select_for_update(of=("self",)).select_related("tenant", "api_key").get(pk=budget.pk)
        state = _budget_clean(tenant=locked.tenant, data=data, current=locked)
        before, old_url = budget_audit_view(locked), locked.webhook_url
        for field, value in state.items():
            setattr(locked, field, value)
        after = budget_audit_view(locked)
        changed = [k for k in after if before[k] != after[k]]
        if locked.webhook_url != old_url and "webhook_url" not in changed:
            changed.append("webhook_url")  # a new URL that masks like the old one
        if changed:
            locked.save()
            audit_record(actor=actor, action="budget.update", tenant=locked.tenant, target=f"budget:{locked.pk}",
                         before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    return locked


def budget_delete(*, budget: Budget, actor: Principal) -> None:
    """Delete a budget and its alert history."""
    with transaction.atomic():
        audit_record(actor=actor, action="budget.delete", tenant=budget.tenant, target=f"budget:{budget.pk}",
                     before=budget_audit_view(budget))
        budget.delete()


# --- budget status (a read: spend from the rollups, reservations from Redis) -----------------


def budget_reserved_key(*, budget: Budget) -> str:
    """Where the data plane keeps the in-flight reservations of the budget's scope (integer
    nano-dollars; billing/spend.py)."""
    return reserved_key(budget.tenant_id, budget.api_key_id if budget.scope == BudgetScope.KEY else None)


def budget_reserved(*, budget: Budget) -> Decimal | None:
    """USD held by requests in flight; 0 without Redis (the embedded default), None when Redis
    cannot be read."""
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


def budget_status(*, budget: Budget, now: datetime | None = None) -> BudgetStatus:
    period = budget_period(budget, now)
    spent = budget_spent(budget=budget, period=period)
    reserved = budget_reserved(budget=budget)
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
        budget_id=budget.pk, period=period, timezone=budget.tenant.timezone, amount=amount, spent=spent,
        reserved=reserved, remaining=remaining,
        percent_used=(spent * 100 / amount).quantize(Decimal("0.01")), thresholds_crossed=crossed,
        action=budget.action, state=state,
    )


# --- the scheduled check ---------------------------------------------------------------------


def cost_alert_threshold() -> Decimal | None:
    """settings.COST_ALERT_THRESHOLD (USD per tenant per local day); None or 0 = off."""
    value = getattr(settings, "COST_ALERT_THRESHOLD", None)
    if value in (None, ""):
        return None
    value = value if isinstance(value, Decimal) else Decimal(str(value))
    return value if value > 0 else None


@dataclass(frozen=True)
class _Candidate:
    tenant_id: int
    budget_id: int | None
    kind: str
    period_start: date
    threshold: int
    spent: Decimal
    limit: Decimal


def _spend_in_window(start: date, end: date, tenant_ids: set[int]) -> dict[tuple[int, int], Decimal]:
    """Known cost per (tenant, key id; 0 = no key) for local days in [start, end): one query."""
    rows = UsageDaily.objects.filter(day__gte=start, day__lt=end)
    if len(tenant_ids) <= 500:  # a short IN list narrows the scan; a long one costs more than it saves
        rows = rows.filter(tenant_id__in=tenant_ids)
    return {
        (r["tenant_id"], r["api_key_id"]): r["total"] or Decimal(0)
        for r in rows.values("tenant_id", "api_key_id").annotate(total=Sum("cost")).order_by()
    }


def _budget_candidates(now: datetime) -> list[_Candidate]:
    budgets = list(
        Budget.objects.filter(enabled=True, tenant__is_active=True)
        .values_list("id", "tenant_id", "scope", "api_key_id", "amount", "period", "thresholds",
                     "tenant__timezone", named=True)
        .order_by()
    )
    periods: dict[tuple[str, str], Period] = {}
    by_window: dict[tuple[date, date], list[tuple[Any, Period]]] = defaultdict(list)
    for b in budgets:
        spec = (b.period, b.tenant__timezone)
        if spec not in periods:
            periods[spec] = period_for(spec[0], spec[1], now)
        period = periods[spec]
        by_window[(period.start, period.end)].append((b, period))

    candidates = []
    for (start, end), entries in by_window.items():
        per_key = _spend_in_window(start, end, {b.tenant_id for b, _ in entries})
        per_tenant: dict[int, Decimal] = defaultdict(Decimal)
        for (tenant_id, _key), total in per_key.items():
            per_tenant[tenant_id] += total
        for b, period in entries:
            if b.scope == BudgetScope.KEY:
                spent = per_key.get((b.tenant_id, b.api_key_id), Decimal(0))
            else:
                spent = per_tenant.get(b.tenant_id, Decimal(0))
            thresholds = b.thresholds if isinstance(b.thresholds, list) else []
            for threshold in thresholds_crossed(thresholds=thresholds, spent=spent, amount=b.amount):
                candidates.append(_Candidate(b.tenant_id, b.id, AlertKind.BUDGET, period.start, threshold,
                                             spent, b.amount))
    return _without_existing(candidates, rolling={b.id for b in budgets if b.period == BudgetPeriod.ROLLING_30D})


def _without_existing(candidates: list[_Candidate], *, rolling: set[int]) -> list[_Candidate]:
    """Drop crossings that already have their alert. A rolling window starts anew every day, so
    a rolling budget alerts once per threshold per 30 days, not once per day it stays over."""
    if not candidates:
        return []
    earliest = min(c.period_start for c in candidates) - timedelta(days=ROLLING_DAYS - 1)
    existing = BudgetAlert.objects.filter(kind=AlertKind.BUDGET, period_start__gte=earliest)
    budget_ids = {c.budget_id for c in candidates}
    if len(budget_ids) <= 500:
        existing = existing.filter(budget_id__in=budget_ids)
    seen: dict[tuple[int, int], list[date]] = defaultdict(list)
    for budget_id, period_start, threshold in existing.values_list("budget_id", "period_start", "threshold"):
        seen[(budget_id, threshold)].append(period_start)
    kept = []
    for c in candidates:
        starts = seen.get((c.budget_id, c.threshold), [])
        if c.budget_id in rolling:
            if any(s >= c.period_start - timedelta(days=ROLLING_DAYS - 1) for s in starts):
                continue
        elif c.period_start in starts:
            continue
        kept.append(c)
    return kept


def _daily_cost_candidates(now: datetime, threshold: Decimal) -> list[_Candidate]:
    """Tenants whose known cost today (their local day) reached COST_ALERT_THRESHOLD: one
    query per local date in use (at most three at any instant)."""
    zones = Tenant.objects.filter(is_active=True).values_list("timezone", flat=True).distinct().order_by()
    by_day: dict[date, list[str]] = defaultdict(list)
    for zone in zones:
        by_day[local_today(zone, now)].append(zone)
    candidates = []
    for day, names in by_day.items():
        rows = (
            UsageDaily.objects.filter(day=day, tenant__timezone__in=names, tenant__is_active=True)
            .values("tenant_id").annotate(total=Sum("cost")).filter(total__gte=threshold).order_by()
        )
        for row in rows:
            candidates.append(_Candidate(row["tenant_id"], None, AlertKind.DAILY_COST, day, 100,
                                         row["total"], threshold))
    if not candidates:
        return []
    existing = set(
        BudgetAlert.objects.filter(kind=AlertKind.DAILY_COST, budget__isnull=True,
                                   period_start__in={c.period_start for c in candidates})
        .values_list("tenant_id", "period_start")
    )
    return [c for c in candidates if (c.tenant_id, c.period_start) not in existing]


_ALERT_COLUMNS = ("tenant_id", "budget_id", "kind", "period_start", "threshold", "spent", "limit",
                  "created_at", "webhook_attempts", "last_error")


def _alerts_insert(candidates: list[_Candidate], now: datetime) -> list[int]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the unique constraints decide, and only
    the rows this call inserted come back, so a crossing seen by two workers at once is created
    (and delivered) once. PostgreSQL and SQLite (3.35+) both speak this."""
    if not candidates:
        return []
    meta = BudgetAlert._meta
    fields = [meta.get_field(name.removesuffix("_id")) for name in _ALERT_COLUMNS]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = max(1, (connection.features.max_query_params or 10_000) // len(fields))
    ids: list[int] = []
    with connection.cursor() as cursor:
        for i in range(0, len(candidates), per_statement):
            chunk = candidates[i:i + per_statement]
            params: list[Any] = []
            for c in chunk:
                values = (c.tenant_id, c.budget_id, c.kind, c.period_start, c.threshold, c.spent, c.limit,
                          now, 0, "")
                params.extend(f.get_db_prep_save(v, connection) for f, v in zip(fields, values))
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row_sql] * len(chunk))} "
                f"ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}",
                params,
            )
            ids.extend(row[0] for row in cursor.fetchall())
    return ids


def _queue_delivery(alert_id: int) -> None:
    from billing.tasks import alert_deliver

    alert_deliver.delay(alert_id)


def alerts_check(*, now: datetime | None = None) -> list[int]:
    """Create a BudgetAlert for every threshold crossed in the current period of every enabled
    budget (and for every tenant over COST_ALERT_THRESHOLD today) that has none yet, and queue
    its delivery after commit. Returns the ids of the alerts this call created.

    Spend comes from the daily rollups with one aggregate query per distinct window (period ×
    local date; a handful, whatever the number of budgets), never one query per budget."""
    now = now or timezone.now()
    with transaction.atomic():
        candidates = _budget_candidates(now)
        threshold = cost_alert_threshold()
        if threshold is not None:
            candidates += _daily_cost_candidates(now, threshold)
        # One order for every worker, so two inserting the same rows wait on each other
        # instead of deadlocking.
        candidates.sort(key=lambda c: (c.kind, c.tenant_id, c.budget_id or 0, c.period_start, c.threshold))
        ids = _alerts_insert(candidates, now)
        for alert_id in ids:
            transaction.on_commit(functools.partial(_queue_delivery, alert_id))
    if ids:
        log.info("budget check: %d new alert(s)", len(ids))
    return ids
