"""Writes for budgets: validation, then create, change and delete, each with its audit event.
Budget reads (status included) are in selectors.py; the scheduled alert check is in alerts.py."""

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from billing.models import Budget, BudgetAction, BudgetPeriod, BudgetScope, default_thresholds
from billing.targets import target_clean
from core.errors import InvalidInput
from core.net import UnsafeURL, UpstreamUnreachable, check_url
from core.validation import text_check
from providers.models import ModelAlias
from tenants.access import Principal
from tenants.models import Tenant
from tenants.services import audit_record

BUDGET_FIELDS = (
    "name", "scope", "project", "api_key", "model", "amount", "period", "thresholds", "action", "downgrade_alias",
    "webhook_url", "enabled",
)
MAX_AMOUNT = Decimal(10) ** 14  # Budget.amount: 20 digits, 6 of them decimals
MAX_THRESHOLDS = 10


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
    if isinstance(value, (bool, float)):
        raise InvalidInput('amount must be a decimal USD amount such as "100.00" (not a float).', field="amount")
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise InvalidInput(f'amount must be a USD amount such as "100.00" (got {value!r}).', field="amount") from None
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
        ) from None
    try:
        check_url(value)
    except UnsafeURL as exc:
        raise InvalidInput(f"webhook_url cannot be used: {exc.message}", field="webhook_url") from None
    except UpstreamUnreachable:
        pass  # the name may resolve later; every send is vetted again when it connects
    return value


def _aliases_hint(tenant: Tenant) -> str:
    names = list(ModelAlias.objects.filter(tenant=tenant, project__isnull=True).order_by("name")
                 .values_list("name", flat=True)[:50])
    if not names:
        return f"tenant '{tenant.slug}' has no aliases yet; create one with POST /api/aliases."
    return f"tenant-wide aliases of tenant '{tenant.slug}': {', '.join(names)}."


def _budget_clean(*, tenant: Tenant, data: dict[str, Any], current: Budget | None,
                  projects: frozenset[int] | None = None) -> dict[str, Any]:
    """The full, valid field set of a budget after applying ``data`` (only the fields that are
    given change; on create, missing optional fields take their defaults). ``projects``: the
    caller manages budgets of these projects only (billing/targets.py)."""
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
            "scope": BudgetScope.TENANT, "project": None, "api_key": None, "model": "",
            "period": BudgetPeriod.MONTH,
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

    target_clean(tenant=tenant, data=data, state=state, current=current, what="budget", projects=projects)

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
        # A tenant-wide alias (what the gateway's downgrade looks for); a downgraded request of a project's
        # key resolves the name as that key sees it (its project's alias of that name, if it has one).
        if rechecked and not ModelAlias.objects.filter(tenant=tenant, project__isnull=True,
                                                       name=state["downgrade_alias"]).exists():
            raise InvalidInput(
                f"downgrade_alias '{state['downgrade_alias']}' is not an alias of this tenant (a tenant-wide one: a "
                "project's alias cannot be a budget's downgrade); "
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
        "name": budget.name, "scope": budget.scope, "project": budget.project_id, "api_key": budget.api_key_id,
        "model": budget.model,
        "amount": str(budget.amount), "period": budget.period, "thresholds": budget.thresholds,
        "action": budget.action, "downgrade_alias": budget.downgrade_alias,
        "webhook_url": mask_url(budget.webhook_url), "enabled": budget.enabled,
    }


def budget_validate(*, tenant: Tenant, data: dict[str, Any], budget: Budget | None = None) -> dict[str, Any]:
    """Check ``data`` as budget_create / budget_update would, without writing (the admin form)."""
    return _budget_clean(tenant=tenant, data=data, current=budget)


# --- budgets: writes -------------------------------------------------------------------------


def budget_create(*, tenant: Tenant, data: dict[str, Any], actor: Principal,
                  projects: frozenset[int] | None = None) -> Budget:
    """``projects``: a caller with roles on some projects only may create budgets in these."""
    state = _budget_clean(tenant=tenant, data=data, current=None, projects=projects)
    with transaction.atomic():
        budget = Budget.objects.create(tenant=tenant, **state)
        audit_record(actor=actor, action="budget.create", tenant=tenant, target=f"budget:{budget.pk}",
                     after=budget_audit_view(budget))
    return budget


def budget_update(*, budget: Budget, data: dict[str, Any], actor: Principal,
                  projects: frozenset[int] | None = None) -> Budget:
    """Change the fields given in ``data``; the others keep their value. ``projects``: the
    caller manages budgets of these projects only (the budget must stay in one of them)."""
    with transaction.atomic():
        locked = (Budget.objects.select_for_update(of=("self",)).select_related("tenant", "api_key", "project")
                  .get(pk=budget.pk))
        state = _budget_clean(tenant=locked.tenant, data=data, current=locked, projects=projects)
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
