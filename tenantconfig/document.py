"""A tenant's configuration as a document: :func:`config_export` reads it from the database,
:func:`document_normalize` fills in a parsed document's defaults so the two compare field by
field, and :func:`secret_resolve` turns ``env:NAME`` into the variable's value.

Secrets are never written: a provider's key is exported as ``env:<NAME>_API_KEY`` and each extra
header as ``env:<NAME>_HEADER_<HEADER>`` (the provider's and the header's names upper-cased,
other characters as ``_``), a budget's webhook URL not at all. Applying the file reads those
variables (or takes a value written in their place)."""

import os
import re
from decimal import Decimal
from typing import Any

import yaml
from django.db.models import F

from billing.models import Budget, BudgetAction, BudgetPeriod, BudgetScope, LimitRule, default_thresholds
from core.errors import InvalidInput
from providers.models import ModelAlias, PriceSource, Provider, ProviderModel, RoutingStrategy, TenantModel
from tenantconfig.schema import VERSION
from tenants.models import ApiKey, Project, Tenant

PRICE_KEYS = ("input_price", "output_price", "cached_input_price", "cache_write_price")
PROVIDER_DEFAULTS = {"priority": 0, "timeout_seconds": 60.0, "max_retries": 2, "enabled": True, "auto_sync": True,
                     "sync_interval_minutes": 1440}
ALIAS_DEFAULTS = {"description": "", "strategy": RoutingStrategy.WEIGHTED.value, "session_affinity": False,
                  "retries": 1, "timeout_seconds": None, "allowed_fails": 3, "cooldown_seconds": 60,
                  "context_window_fallbacks": [], "content_policy_fallbacks": []}
DEPLOYMENT_LIMITS = ("rpm_limit", "tpm_limit")
BUDGET_DEFAULTS = {"period": BudgetPeriod.MONTH.value, "thresholds": default_thresholds(),
                   "action": BudgetAction.ALERT.value, "downgrade_alias": "", "enabled": True}
KEY_DEFAULTS = {"allowed_models": [], "requests_per_minute": None, "tokens_per_minute": None, "tokens_per_day": None}
LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "tokens_per_day")
ENV_PREFIX = "env:"


def env_name(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_").upper() for p in parts)


def secret_resolve(value: str, *, path: str, allow_env: bool) -> str:
    """``env:NAME`` as the variable's value (InvalidInput naming it when it is unset); any other
    value as it is. ``allow_env`` False (the REST API) refuses references: the server's
    environment is the platform's, not a tenant's to read into a key sent to its own URL."""
    if not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX):]
    if not allow_env:
        raise InvalidInput(
            f"{path}: '{value}' refers to an environment variable, which only `manage.py tenant_config apply` "
            "reads (the server's environment is not a tenant's to read); send the value itself, or leave the field "
            "out to keep the saved one.", field=path)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise InvalidInput(f"{path}: '{name}' is not an environment variable name.", field=path)
    found = os.environ.get(name)
    if found is None or found == "":
        raise InvalidInput(f"{path}: environment variable {name} is not set (it holds the secret for this field; "
                           "export it, or write the value itself).", field=path)
    return found


def price_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")


def money_text(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")) if value == value.quantize(Decimal("0.01")) else value.normalize(),
                  "f")


# --- export ------------------------------------------------------------------------------------


def _model_entry(model: ProviderModel) -> dict[str, Any] | None:
    entry: dict[str, Any] = {"id": model.model_id}
    if not model.enabled:
        entry["enabled"] = False
    if model.price_source == PriceSource.MANUAL:
        for key in PRICE_KEYS:
            text = price_text(getattr(model, key))
            if text is not None:
                entry[key] = text
    return entry if len(entry) > 1 else None


def _provider_entry(provider: Provider) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": provider.name, "type": provider.provider_type}
    if provider.display_name and provider.display_name != provider.name:
        entry["display_name"] = provider.display_name
    entry["base_url"] = provider.base_url
    if provider.api_key:
        entry["api_key"] = ENV_PREFIX + env_name(provider.name, "API_KEY")
    if provider.extra_headers:
        entry["extra_headers"] = {h: ENV_PREFIX + env_name(provider.name, "HEADER", h)
                                  for h in sorted(provider.extra_headers)}
    if provider.options:
        entry["options"] = provider.options
    for field in PROVIDER_DEFAULTS:
        entry[field] = getattr(provider, field)
    models = ProviderModel.objects.filter(provider=provider, stale=False).order_by("model_id")
    entry["models"] = [e for e in (_model_entry(m) for m in models) if e is not None]
    return entry


def _deployment_entry(target) -> dict[str, Any]:
    pm = target.provider_model
    entry: dict[str, Any] = {"model": f"{pm.provider.name}:{pm.model_id}", "priority": target.priority,
                             "weight": target.weight}
    for field in DEPLOYMENT_LIMITS:
        if getattr(target, field) is not None:
            entry[field] = getattr(target, field)
    overrides = {k: v for k, v in (target.overrides or {}).items() if v is not None}
    if overrides:
        entry["overrides"] = overrides
    return entry


def alias_key(entry: dict[str, Any]) -> tuple[str, str]:
    """What identifies an alias of a document: its project's slug ("" tenant-wide) and its name."""
    return entry.get("project") or "", entry["name"]


def alias_label(entry: dict[str, Any]) -> str:
    """An alias as plans and errors name it: ``name``, or ``project/name`` for a project's."""
    return f"{entry['project']}/{entry['name']}" if entry.get("project") else entry["name"]


def _alias_entry(alias: ModelAlias) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": alias.name}
    if alias.project_id:
        entry["project"] = alias.project.slug
    for field in ALIAS_DEFAULTS:
        entry[field] = getattr(alias, field)
    entry["deployments"] = [_deployment_entry(t) for t in
                            alias.targets.select_related("provider_model__provider").order_by("position")]
    return entry


def _target_entry(obj: Budget | LimitRule) -> dict[str, Any]:
    """A budget's or limit rule's scope, project (slug), key (name) and model, as the document has
    them: what is not empty."""
    entry: dict[str, Any] = {"scope": obj.scope}
    if obj.project_id:
        entry["project"] = obj.project.slug
    if obj.api_key_id:
        entry["key"] = obj.api_key.name
    if obj.model:
        entry["model"] = obj.model
    return entry


def _budget_entry(budget: Budget) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": budget.name, **_target_entry(budget)}
    entry["amount"] = money_text(budget.amount)
    entry.update(period=budget.period, thresholds=list(budget.thresholds), action=budget.action)
    if budget.downgrade_alias:
        entry["downgrade_alias"] = budget.downgrade_alias
    entry["enabled"] = budget.enabled
    return entry


def settings_entry(tenant: Tenant) -> dict[str, Any]:
    return {
        "timezone": tenant.timezone, "default_model": tenant.default_model or None,
        "default_embedding_model": tenant.default_embedding_model or None,
        "temperature": tenant.temperature, "max_tokens": tenant.max_tokens, "top_p": tenant.top_p,
        "requests_per_minute": tenant.requests_per_minute, "tokens_per_minute": tenant.tokens_per_minute,
        "tokens_per_day": tenant.tokens_per_day,
        "redis_outage": tenant.redis_outage, "usage_retention_days": tenant.usage_retention_days,
        "cache": {"enabled": tenant.cache_enabled, "ttl_seconds": tenant.cache_ttl_seconds},
    }


def active_keys(tenant: Tenant) -> list[ApiKey]:
    return [k for k in ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).order_by("name", "pk")
            if k.status == "active"]


def config_export(*, tenant: Tenant) -> dict[str, Any]:
    """Everything ``tenant`` configures, as a document (no secret in it)."""
    providers = Provider.objects.filter(owner=tenant).order_by("name")
    choices = (TenantModel.objects.filter(tenant=tenant, enabled=True)
               .select_related("provider_model__provider").order_by("provider_model__provider__name",
                                                                     "provider_model__model_id"))
    keys = []
    for key in active_keys(tenant):
        entry: dict[str, Any] = {"name": key.name}
        entry.update({f: getattr(key, f) for f in KEY_DEFAULTS if getattr(key, f) != KEY_DEFAULTS[f]})
        if len(entry) > 1:
            keys.append(entry)
    return {
        "version": VERSION,
        "tenant": {"slug": tenant.slug, "name": tenant.name},
        "settings": settings_entry(tenant),
        "providers": [_provider_entry(p) for p in providers],
        "platform_models": [{"model": f"{c.provider_model.provider.name}:{c.provider_model.model_id}",
                             "enabled": True} for c in choices],
        # tenant-wide first, then each project's, by slug
        "aliases": [_alias_entry(a) for a in ModelAlias.objects.filter(tenant=tenant).select_related("project")
                    .order_by(F("project__slug").asc(nulls_first=True), "name")],
        "budgets": [_budget_entry(b) for b in
                    Budget.objects.filter(tenant=tenant).select_related("api_key", "project").order_by("name", "pk")],
        "limits": sorted((limit_entry(r) for r in limit_rules_of(tenant)), key=limit_identity_text),
        "keys": keys,
        "projects": [project_entry(p) for p in Project.objects.filter(tenant=tenant).order_by("slug")],
    }


PROJECT_DEFAULTS: dict[str, Any] = {"default_model": None, "requests_per_minute": None, "tokens_per_minute": None,
                                    "tokens_per_day": None}


def project_entry(project: Project) -> dict[str, Any]:
    """A project as the document has it: its slug and name, and what differs from the defaults."""
    entry: dict[str, Any] = {"slug": project.slug, "name": project.name}
    values = {"default_model": project.default_model or None, "requests_per_minute": project.requests_per_minute,
              "tokens_per_minute": project.tokens_per_minute, "tokens_per_day": project.tokens_per_day}
    entry.update({k: v for k, v in values.items() if v != PROJECT_DEFAULTS[k]})
    return entry


HEADER = """\
# Tollgate tenant configuration (version 1). Apply with:
#   manage.py tenant_config apply <this file> [--prune] [--dry-run]   or   POST /api/config/apply
# Secrets are not in this file: env:NAME is read from the environment when it is applied (manage.py only).
"""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Decimal, lambda dumper, value: dumper.represent_str(price_text(value) or "0"))


def document_yaml(document: dict[str, Any]) -> str:
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


# --- normalize ---------------------------------------------------------------------------------


def _provider_wanted(entry: dict[str, Any]) -> dict[str, Any]:
    wanted = {"name": entry["name"], **PROVIDER_DEFAULTS, **{k: entry[k] for k in PROVIDER_DEFAULTS if k in entry}}
    wanted["display_name"] = entry.get("display_name") or entry["name"]
    for key in ("type", "base_url", "options", "api_key", "extra_headers", "models"):
        if key in entry:
            wanted[key] = entry[key]
    if "timeout_seconds" in wanted:
        wanted["timeout_seconds"] = float(wanted["timeout_seconds"])
    if "models" in wanted:
        wanted["models"] = [_model_wanted(m) for m in wanted["models"]]
    return wanted


def _model_wanted(entry: dict[str, Any]) -> dict[str, Any]:
    wanted: dict[str, Any] = {"id": entry["id"]}
    if entry.get("enabled", True) is False:
        wanted["enabled"] = False
    for key in PRICE_KEYS:
        if entry.get(key) is not None:
            wanted[key] = price_text(Decimal(entry[key]))
    return wanted


def _alias_wanted(entry: dict[str, Any]) -> dict[str, Any]:
    wanted: dict[str, Any] = {"name": entry["name"]}
    if entry.get("project"):
        wanted["project"] = entry["project"]
    wanted.update({**ALIAS_DEFAULTS, **{k: entry[k] for k in ALIAS_DEFAULTS if k in entry}})
    if wanted["timeout_seconds"] is not None:
        wanted["timeout_seconds"] = float(wanted["timeout_seconds"])
    deployments = []
    for index, d in enumerate(entry["deployments"]):
        one = {"model": d["model"], "priority": d.get("priority", index), "weight": d.get("weight", 1)}
        one.update({f: d[f] for f in DEPLOYMENT_LIMITS if d.get(f) is not None})
        overrides = {k: v for k, v in (d.get("overrides") or {}).items() if v is not None}
        if overrides:
            one["overrides"] = overrides
        deployments.append(one)
    wanted["deployments"] = deployments
    return wanted


def _target_wanted(entry: dict[str, Any]) -> dict[str, Any]:
    """scope (given, or key when a key is named, project when a project is, else tenant),
    project, key and model, in the order _target_entry writes them."""
    scope = entry.get("scope") or (BudgetScope.KEY.value if entry.get("key") else
                                   BudgetScope.PROJECT.value if entry.get("project") else BudgetScope.TENANT.value)
    wanted: dict[str, Any] = {"scope": scope}
    for key in ("project", "key", "model"):
        value = (entry.get(key) or "").strip() if isinstance(entry.get(key), str) else entry.get(key)
        if value:
            wanted[key] = value
    return wanted


def limit_rules_of(tenant: Tenant) -> list[LimitRule]:
    """The tenant's limit rules a document holds: a rule of a revoked or expired key limits nothing
    (and its key could not be named in a file), so it is left out."""
    rules = LimitRule.objects.filter(tenant=tenant).select_related("api_key", "project").order_by("pk")
    return [r for r in rules if r.api_key_id is None or r.api_key.status == "active"]


def limit_entry(rule: LimitRule) -> dict[str, Any]:
    entry = _target_entry(rule)
    entry.update({f: getattr(rule, f) for f in LIMIT_FIELDS if getattr(rule, f) is not None})
    entry["enabled"] = rule.enabled
    return entry


def limit_identity(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    """What names a limit rule in a document (rules have no name): one rule per target and model."""
    return (entry["scope"], entry.get("project", ""), entry.get("key", ""), entry.get("model", ""))


def limit_identity_text(entry: dict[str, Any]) -> str:
    scope, project, key, model = limit_identity(entry)
    return " ".join(p for p in (scope, project and f"project={project}", key and f"key={key}",
                                model and f"model={model}") if p)


def _limit_wanted(entry: dict[str, Any]) -> dict[str, Any]:
    wanted = _target_wanted(entry)
    wanted.update({f: entry[f] for f in LIMIT_FIELDS if entry.get(f) is not None})
    wanted["enabled"] = entry.get("enabled", True)
    return wanted


def _budget_wanted(entry: dict[str, Any]) -> dict[str, Any]:
    wanted = {"name": entry["name"], **_target_wanted(entry)}
    wanted["amount"] = money_text(Decimal(entry["amount"]))
    wanted.update({k: entry.get(k, v) for k, v in BUDGET_DEFAULTS.items()})
    wanted["thresholds"] = sorted(wanted["thresholds"])
    if not wanted["downgrade_alias"]:
        wanted.pop("downgrade_alias")
    if "webhook_url" in entry:
        wanted["webhook_url"] = entry["webhook_url"]
    return wanted


def document_normalize(document: dict[str, Any]) -> dict[str, Any]:
    """A schema-valid document with every default filled in, in the form config_export writes,
    so a wanted entry and a saved one compare equal exactly when applying would change nothing.
    Sections left out stay out (they are left as they are)."""
    out: dict[str, Any] = {"version": document["version"]}
    if "tenant" in document:
        out["tenant"] = dict(document["tenant"])
    if "settings" in document:
        out["settings"] = dict(document["settings"])
        for name in ("default_model", "default_embedding_model"):
            if name in out["settings"]:
                out["settings"][name] = (out["settings"][name] or "").strip() or None
        for key in ("temperature", "top_p"):
            if out["settings"].get(key) is not None:
                out["settings"][key] = float(out["settings"][key])
    for section, normalize in (("providers", _provider_wanted), ("aliases", _alias_wanted),
                               ("budgets", _budget_wanted), ("limits", _limit_wanted)):
        if section in document:
            out[section] = [normalize(e) for e in document[section]]
    if "platform_models" in document:
        out["platform_models"] = [{"model": e["model"], "enabled": e.get("enabled", True)}
                                  for e in document["platform_models"]]
    if "keys" in document:
        out["keys"] = [{"name": e["name"], **KEY_DEFAULTS, **{k: e[k] for k in KEY_DEFAULTS if k in e}}
                       for e in document["keys"]]
    if "projects" in document:
        out["projects"] = [{"slug": e["slug"], "name": e["name"], **PROJECT_DEFAULTS,
                            **{k: e[k] for k in PROJECT_DEFAULTS if k in e}} for e in document["projects"]]
        for entry in out["projects"]:
            entry["default_model"] = (entry["default_model"] or "").strip() or None
    return out


def duplicates_check(document: dict[str, Any]) -> list[str]:
    """Two entries of one section with the same name: which one is meant cannot be told."""
    errors = []
    for section, key in (("providers", "name"), ("aliases", "name"), ("budgets", "name"), ("keys", "name"),
                         ("platform_models", "model"), ("projects", "slug")):
        seen: dict[Any, int] = {}
        for index, entry in enumerate(document.get(section) or []):
            if not isinstance(entry, dict) or not isinstance(entry.get(key), str):
                continue
            # an alias is one name among the tenant-wide aliases or among one project's
            same = alias_key(entry) if section == "aliases" else entry[key]
            if same in seen:
                where = f" of project '{entry['project']}'" if section == "aliases" and entry.get("project") else ""
                errors.append(f"{section}[{index}].{key}: '{entry[key]}'{where} is already {section}[{seen[same]}]")
            seen.setdefault(same, index)
    seen_limits: dict[tuple, int] = {}
    for index, entry in enumerate(document.get("limits") or []):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k, ""), str) for k in ("project", "key",
                                                                                             "model", "scope")):
            continue
        identity = limit_identity(_target_wanted(entry))
        if identity in seen_limits:
            errors.append(f"limits[{index}]: the same scope, project, key and model as limits[{seen_limits[identity]}] "
                          "(one rule per target and model)")
        seen_limits.setdefault(identity, index)
    for index, entry in enumerate(document.get("providers") or []):
        ids: set[str] = set()
        for m_index, model in enumerate((entry.get("models") or []) if isinstance(entry, dict) else []):
            if isinstance(model, dict) and isinstance(model.get("id"), str):
                if model["id"] in ids:
                    errors.append(f"providers[{index}].models[{m_index}].id: '{model['id']}' is listed twice")
                ids.add(model["id"])
    return errors
