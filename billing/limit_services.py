"""Writes for limit rules (requests per minute, tokens per minute, tokens per day in one scope,
optionally for one model): validation, then create, change and delete, each with its audit event.
A change replaces the tenant's configuration version (billing/apps.py), so every gateway worker
reloads its routing table. Reads are in limit_selectors.py."""

from typing import Any

from django.db import transaction

from billing.models import BudgetScope, LimitRule
from billing.targets import TARGET_FIELDS, target_clean, target_words
from core.errors import Conflict, InvalidInput
from tenants.access import Principal
from tenants.models import Tenant
from tenants.services import audit_record

LIMITS = {  # field -> the most it may be (the REST serializers' bounds)
    "requests_per_minute": 10_000_000,
    "tokens_per_minute": 10**12,
    "tokens_per_day": 10**15,
}
LIMIT_RULE_FIELDS = (*TARGET_FIELDS, *LIMITS, "enabled")


def _clean_limit(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMITS[field]:
        raise InvalidInput(f"{field} must be a whole number from 1 to {LIMITS[field]:,}, or null for no limit "
                           f"(got {value!r}).", field=field)
    return value


def _limit_rule_clean(*, tenant: Tenant, data: dict[str, Any], current: LimitRule | None,
                      projects: frozenset[int] | None) -> dict[str, Any]:
    """The full, valid field set of a limit rule after applying ``data`` (only the fields given
    change). ``projects``: the caller manages these projects' rules only."""
    unknown = sorted(set(data) - set(LIMIT_RULE_FIELDS))
    if unknown:
        raise InvalidInput(f"Unknown limit rule field(s): {', '.join(unknown)}. Allowed: "
                           f"{', '.join(LIMIT_RULE_FIELDS)}.", field=unknown[0])
    if current is None:
        state: dict[str, Any] = {"scope": BudgetScope.TENANT, "project": None, "api_key": None, "model": "",
                                 **dict.fromkeys(LIMITS), "enabled": True}
    else:
        state = {f: getattr(current, f) for f in LIMIT_RULE_FIELDS}
    for field in LIMITS:
        if field in data:
            state[field] = _clean_limit(field, data[field])
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise InvalidInput("enabled must be true or false.", field="enabled")
        state["enabled"] = data["enabled"]
    if all(state[f] is None for f in LIMITS):
        raise InvalidInput("A limit rule needs at least one limit: set requests_per_minute, tokens_per_minute or "
                           "tokens_per_day (delete the rule to lift its limits).", field="requests_per_minute")
    target_clean(tenant=tenant, data=data, state=state, current=current, what="limit rule", projects=projects)
    return state


def _same_target(tenant: Tenant, state: dict[str, Any], current: LimitRule | None) -> LimitRule | None:
    rules = LimitRule.objects.filter(tenant=tenant, scope=state["scope"], project=state["project"],
                                     api_key=state["api_key"], model=state["model"])
    if current is not None:
        rules = rules.exclude(pk=current.pk)
    return rules.first()


def _refuse_twin(tenant: Tenant, state: dict[str, Any], current: LimitRule | None) -> None:
    """One rule per target and model: two would leave which one counts to chance."""
    twin = _same_target(tenant, state, current)
    if twin is not None:
        raise Conflict(f"Limit rule {twin.pk} already sets the limits of {target_words(twin)}; change that rule "
                       f"(PUT /api/limits/{twin.pk}) instead of adding another.", field="scope")


def limit_rule_audit_view(rule: LimitRule) -> dict[str, Any]:
    return {"scope": rule.scope, "project": rule.project_id, "api_key": rule.api_key_id, "model": rule.model,
            **{f: getattr(rule, f) for f in LIMITS}, "enabled": rule.enabled}


def limit_rule_validate(*, tenant: Tenant, data: dict[str, Any], rule: LimitRule | None = None) -> dict[str, Any]:
    """Check ``data`` as limit_rule_create / limit_rule_update would, without writing (the admin form)."""
    state = _limit_rule_clean(tenant=tenant, data=data, current=rule, projects=None)
    _refuse_twin(tenant, state, rule)
    return state


def limit_rule_create(*, tenant: Tenant, data: dict[str, Any], actor: Principal,
                      projects: frozenset[int] | None = None) -> LimitRule:
    state = _limit_rule_clean(tenant=tenant, data=data, current=None, projects=projects)
    with transaction.atomic():
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()  # one writer per tenant: no twin slips in
        _refuse_twin(tenant, state, None)
        rule = LimitRule.objects.create(tenant=tenant, **state)
        audit_record(actor=actor, action="limit_rule.create", tenant=tenant, target=f"limit_rule:{rule.pk}",
                     after=limit_rule_audit_view(rule))
    return rule


def limit_rule_update(*, rule: LimitRule, data: dict[str, Any], actor: Principal,
                      projects: frozenset[int] | None = None) -> LimitRule:
    """Change the fields given in ``data``; the others keep their value."""
    with transaction.atomic():
        Tenant.objects.select_for_update().filter(pk=rule.tenant_id).first()
        locked = (LimitRule.objects.select_for_update(of=("self",)).select_related("tenant", "api_key", "project")
                  .get(pk=rule.pk))
        state = _limit_rule_clean(tenant=locked.tenant, data=data, current=locked, projects=projects)
        _refuse_twin(locked.tenant, state, locked)
        before = limit_rule_audit_view(locked)
        for field, value in state.items():
            setattr(locked, field, value)
        after = limit_rule_audit_view(locked)
        changed = [k for k in after if before[k] != after[k]]
        if changed:
            locked.save()
            audit_record(actor=actor, action="limit_rule.update", tenant=locked.tenant,
                         target=f"limit_rule:{locked.pk}", before={k: before[k] for k in changed},
                         after={k: after[k] for k in changed})
    return locked


def limit_rule_delete(*, rule: LimitRule, actor: Principal) -> None:
    with transaction.atomic():
        audit_record(actor=actor, action="limit_rule.delete", tenant=rule.tenant, target=f"limit_rule:{rule.pk}",
                     before=limit_rule_audit_view(rule))
        rule.delete()
