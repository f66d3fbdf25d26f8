"""Reads for limit rules: a tenant's rules (a project-scoped caller's: those inside its projects),
one rule, and a rule in words."""

from django.db.models import QuerySet

from billing.models import LimitRule
from billing.selectors import in_projects
from billing.targets import target_words
from core.errors import NotFound
from tenants.models import Tenant

LIMIT_WORDS = (("requests_per_minute", "requests a minute"), ("tokens_per_minute", "tokens a minute"),
               ("tokens_per_day", "tokens a day"))


def limit_rule_list(*, tenant: Tenant, project_ids: frozenset[int] | None = None) -> QuerySet[LimitRule]:
    rules = LimitRule.objects.filter(tenant=tenant).select_related("api_key", "project")
    return rules if project_ids is None else rules.filter(in_projects(project_ids))


def limit_rule_get(*, tenant: Tenant, rule_id: int, project_ids: frozenset[int] | None = None) -> LimitRule:
    rule = limit_rule_list(tenant=tenant, project_ids=project_ids).filter(pk=rule_id).first()
    if rule is None:
        raise NotFound(f"Limit rule {rule_id} not found in tenant '{tenant.slug}'.")
    return rule


def limit_rule_text(rule: LimitRule) -> str:
    """"each end user of project support: 30 requests a minute, 10,000 tokens a day"."""
    limits = ", ".join(f"{getattr(rule, f):,} {words}" for f, words in LIMIT_WORDS if getattr(rule, f) is not None)
    return f"{target_words(rule)}: {limits}"
