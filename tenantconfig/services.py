"""Applying a configuration document to a tenant: :func:`config_plan` says what would change
(create, change with each field's before → after, delete), :func:`config_apply` makes the
tenant match the document in one transaction, through the services the REST API uses
(tenants, providers, billing), so validation, configuration-version bumps and their audit
events are the same; the apply itself is one more audit event with the plan's summary.

Providers, aliases (with their project), budgets and keys are matched by name, projects by slug,
limit rules by their scope, project, key and model. An entry is complete: a field it leaves out
takes its default, except secrets (``api_key``, ``extra_headers``, ``webhook_url``), which keep
the saved value, and a provider's ``models``, which (left out) leave the models alone. A
``settings`` key left out keeps its value. With ``prune``, the providers, aliases, budgets, limit
rules and projects (never the default one) the document does not name are deleted; keys are
never created or deleted."""

import json
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.db import transaction

from billing.limit_services import limit_rule_create, limit_rule_delete, limit_rule_update
from billing.models import Budget, LimitRule
from billing.services import budget_create, budget_delete, budget_update
from core.errors import TollgateError
from providers.default_models import defaults_lost
from providers.models import ModelAlias, Provider, ProviderModel
from providers.services import (
    alias_create,
    alias_delete,
    alias_dependents,
    alias_update,
    provider_create,
    provider_delete,
    provider_model_set_enabled,
    provider_model_set_price,
    provider_models_declare,
    provider_settings_normalized,
    provider_update,
)
from tenantconfig.document import (
    ENV_PREFIX,
    LIMIT_FIELDS,
    PRICE_KEYS,
    PROVIDER_DEFAULTS,
    active_keys,
    alias_key,
    alias_label,
    config_export,
    document_normalize,
    duplicates_check,
    limit_entry,
    limit_identity,
    limit_identity_text,
    limit_rules_of,
    secret_resolve,
)
from tenantconfig.schema import ConfigInvalid, document_check
from tenants.access import Principal
from tenants.models import DEFAULT_PROJECT_SLUG, ApiKey, Project, Tenant
from tenants.services import (
    api_key_limits_update,
    audit_record,
    project_create,
    project_delete,
    project_update,
    tenant_update,
)

KINDS = ("settings", "project", "provider", "model", "platform_model", "alias", "budget", "limit", "key")
SYMBOL = {"create": "+", "change": "~", "delete": "-"}
SETTING_FIELDS = {"timezone": "timezone", "default_model": "default_model",
                  "default_embedding_model": "default_embedding_model", "temperature": "temperature",
                  "max_tokens": "max_tokens", "top_p": "top_p", "requests_per_minute": "requests_per_minute",
                  "tokens_per_minute": "tokens_per_minute", "tokens_per_day": "tokens_per_day",
                  "redis_outage": "redis_outage",
                  "usage_retention_days": "usage_retention_days", "cache.enabled": "cache_enabled",
                  "cache.ttl_seconds": "cache_ttl_seconds", "name": "name"}


@dataclass
class Change:
    action: str  # create, change, delete
    kind: str  # one of KINDS
    name: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (before, after)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "name": self.name,
                "fields": {k: {"before": b, "after": a} for k, (b, a) in self.fields.items()}}

    def line(self) -> str:
        head = f"{SYMBOL[self.action]} {self.action} {self.kind} {self.name}"
        if not self.fields:
            return head
        if self.action == "create":
            return head + ": " + ", ".join(f"{k} {_show(a)}" for k, (_, a) in self.fields.items())
        return head + ": " + "; ".join(f"{k} {_show(b)} → {_show(a)}" for k, (b, a) in self.fields.items())


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value.startswith("(") else repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if not isinstance(value, (dict, list)) else _compact(value)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Plan:
    tenant: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a translation could not map (LiteLLM)
    applied: bool = False

    def summary(self) -> dict[str, int]:
        return {action: sum(1 for c in self.changes if c.action == action) for action in ("create", "change",
                                                                                           "delete")}

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "applied": self.applied, "summary": self.summary(),
                "changes": [c.as_dict() for c in self.changes], "notes": self.notes, "text": self.text()}

    def text(self) -> str:
        s = self.summary()
        if not self.changes:
            lines = [f"No changes: tenant '{self.tenant}' already matches the document."]
        else:
            if self.applied:
                lines = [f"Applied to tenant '{self.tenant}': {s['create']} created, {s['change']} changed, "
                         f"{s['delete']} deleted."]
            else:
                lines = [f"Plan for tenant '{self.tenant}': {s['create']} to create, {s['change']} to change, "
                         f"{s['delete']} to delete."]
            lines += ["  " + c.line() for c in self.changes]
        if self.notes:
            lines.append("Not imported:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


class _DryRun(Exception):
    """Raised to roll back a dry run's writes once every service has checked them."""


def _secret_label(value: str | None) -> str | None:
    if value is None:
        return None
    return f"(from env {value[len(ENV_PREFIX):]})" if value.startswith(ENV_PREFIX) else "(new value)"


class _Planner:
    def __init__(self, *, tenant: Tenant, wanted: dict[str, Any], prune: bool, allow_env: bool):
        self.tenant, self.wanted, self.prune, self.allow_env = tenant, wanted, prune, allow_env
        self.current = config_export(tenant=tenant)
        self.changes: list[Change] = []
        self.steps: list[tuple[int, str, Any]] = []  # (order, path, callable)
        self.secrets: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []

    def step(self, order: int, path: str, run) -> None:
        self.steps.append((order, path, run))

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def secret(self, value: str, path: str) -> str | None:
        try:
            return secret_resolve(value, path=path, allow_env=self.allow_env)
        except TollgateError as exc:
            self.errors.append(exc.message)
            return None

    # --- settings ----------------------------------------------------------------------------

    def settings(self) -> None:
        wanted: dict[str, Any] = {}
        for key, value in (self.wanted.get("settings") or {}).items():
            if key == "cache":
                wanted.update({f"cache.{k}": v for k, v in value.items()})
            else:
                wanted[key] = value
        name = (self.wanted.get("tenant") or {}).get("name")
        if name is not None:
            wanted["name"] = name
        if "timezone" in wanted and wanted["timezone"] not in zoneinfo.available_timezones():
            self.errors.append(f"settings.timezone: unknown time zone '{wanted['timezone']}'; use an IANA name "
                               "such as 'Europe/Berlin' or 'UTC'.")
        current = {k: v for k, v in self.current["settings"].items() if k != "cache"}
        current.update({f"cache.{k}": v for k, v in self.current["settings"]["cache"].items()})
        current["name"] = self.tenant.name
        diff = {k: (current.get(k), v) for k, v in wanted.items() if current.get(k) != v}
        if not diff:
            return
        self.add(Change("change", "settings", self.tenant.slug, diff))
        blank_when_none = ("default_model", "default_embedding_model")
        changes = {SETTING_FIELDS[k]: ("" if k in blank_when_none and v is None else v) for k, (_, v) in diff.items()}
        # The default models are set once the aliases and models are (they may name one the file creates or
        # enables); what the file disables, a default may still name, is disabled after them (7.5).
        model = {k: changes.pop(k) for k in ("default_model", "default_embedding_model") if k in changes}
        if changes:
            self.step(0, "settings", lambda actor: tenant_update(tenant=self.tenant, changes=changes, actor=actor))
        if model:
            self.step(7, "settings", lambda actor: tenant_update(tenant=self.tenant, changes=model, actor=actor))

    # --- providers and their models ------------------------------------------------------------

    def providers(self) -> None:
        saved = {p["name"]: p for p in self.current["providers"]}
        rows = {p.name: p for p in Provider.objects.filter(owner=self.tenant)}
        needed = self._models_needed()
        for index, want in enumerate(self.wanted.get("providers", [])):
            path = f"providers[{index}]"
            self._provider(path, want, saved.get(want["name"]), rows.get(want["name"]),
                           needed.get(want["name"], set()))
        if self.prune and "providers" in self.wanted:
            named = {p["name"] for p in self.wanted["providers"]}
            for name, row in rows.items():
                if name not in named:
                    self.add(Change("delete", "provider", name))
                    self.step(9, f"providers: '{name}'",
                              lambda actor, row=row: provider_delete(provider=row, actor=actor))

    def _models_needed(self) -> dict[str, set[str]]:
        """Per provider of the document: the model ids its aliases' deployments name."""
        mine = {p["name"] for p in self.wanted.get("providers", [])}
        needed: dict[str, set[str]] = {}
        for alias in self.wanted.get("aliases", []):
            for d in alias["deployments"]:
                provider, _, model = d["model"].partition(":")
                if provider in mine:
                    needed.setdefault(provider, set()).add(model)
        return needed

    def _provider(self, path: str, want: dict[str, Any], saved: dict[str, Any] | None, row: Provider | None,
                  needed: set[str]) -> None:
        data: dict[str, Any] = {"name": want["name"]}
        ptype = want.get("type") or (row.provider_type if row is not None else None)
        if ptype:
            data["provider_type"] = ptype
        data["base_url"] = want.get("base_url", "")
        if "options" in want:
            data["options"] = want["options"]
        elif row is not None and row.provider_type == ptype:
            data["options"] = {}
        try:
            ptype, base_url, options = provider_settings_normalized(data=data)
        except TollgateError as exc:
            self.errors.append(f"{path}.{exc.field or 'base_url'}: {exc.message}")
            return
        fields: dict[str, tuple[Any, Any]] = {}
        after = {"type": ptype, "base_url": base_url, "options": options, "display_name": want["display_name"],
                 **{f: want[f] for f in PROVIDER_DEFAULTS}}
        before = {} if saved is None else {"type": saved["type"], "base_url": saved["base_url"],
                                           "options": saved.get("options", {}),
                                           "display_name": saved.get("display_name", saved["name"]),
                                           **{f: saved[f] for f in PROVIDER_DEFAULTS}}
        for key, value in after.items():
            if saved is None and (PROVIDER_DEFAULTS.get(key, ...) == value or (key, value) in (
                    ("options", {}), ("display_name", want["name"]))):
                continue  # a create line shows what is not a default
            if before.get(key) != value or saved is None:
                fields[key] = (before.get(key), value)
        update: dict[str, Any] = {}
        if "api_key" in want:
            key = self.secret(want["api_key"], f"{path}.api_key")
            if key is not None and (row is None or row.api_key != key):
                fields["api_key"] = ("(set)" if row is not None and row.api_key else None,
                                     _secret_label(want["api_key"]))
                update["api_key"] = key
        if "extra_headers" in want:
            headers = {h: self.secret(v, f"{path}.extra_headers.{h}") for h, v in want["extra_headers"].items()}
            if None not in headers.values() and (row is None or (row.extra_headers or {}) != headers):
                fields["extra_headers"] = (sorted(row.extra_headers or {}) if row is not None else None,
                                           sorted(headers))
                update["extra_headers"] = headers
        if "base_url" in fields and row is not None:  # the saved secrets never follow a new URL unasked
            for secret in ("api_key", "extra_headers"):
                if secret in want and secret not in update:
                    update[secret] = (self.secret(want[secret], f"{path}.api_key") if secret == "api_key" else
                                      {h: self.secret(v, f"{path}.extra_headers.{h}")
                                       for h, v in want[secret].items()})
        if saved is None:
            self.add(Change("create", "provider", want["name"], fields))
        elif fields:
            self.add(Change("change", "provider", want["name"], fields))
        service_data = {"name": want["name"], "provider_type": ptype, "base_url": base_url, "options": options,
                        "display_name": want["display_name"], **{f: want[f] for f in PROVIDER_DEFAULTS}, **update}

        if row is not None and "options" in fields and row.provider_type == ptype:
            # provider_update merges the options sent into the saved ones: a key the file drops is sent as null
            service_data["options"] = {**{k: None for k in row.options or {} if k not in options}, **options}
        holder: dict[str, Provider | None] = {"row": row}

        def write(actor, service_data=service_data, changed=bool(fields)):
            if holder["row"] is None:
                holder["row"] = provider_create(owner=self.tenant, data=service_data, actor=actor)
            elif changed:
                data = {k: v for k, v in service_data.items() if k in update or k in _service_names(fields)}
                holder["row"] = provider_update(provider=holder["row"], data=data, actor=actor)

        disabling = row is not None and row.enabled and not want["enabled"]
        # Disabled after the default models change (7): one may move off its models in the same file.
        self.step(7.5 if disabling and defaults_lost(models=row.models.all(), tenant=self.tenant) else 2, path, write)
        self._models(path, want, row, needed, holder)

    def _models(self, path: str, want: dict[str, Any], row: Provider | None, needed: set[str],
                holder: dict[str, Provider | None]) -> None:
        existing = {m.model_id: m for m in ProviderModel.objects.filter(provider=row)} if row is not None else {}
        wanted_models = {m["id"]: m for m in want.get("models", [])}
        saved_models = {}
        if row is not None:
            saved_models = {m["id"]: m for m in next(
                p for p in self.current["providers"] if p["name"] == want["name"])["models"]}
        declare = sorted((set(wanted_models) | needed) - set(existing))
        created = {}
        for model_id in declare:
            created[model_id] = Change("create", "model", f"{want['name']}:{model_id}")
            self.add(created[model_id])
        if declare:
            self.step(3, f"{path}.models", lambda actor: provider_models_declare(
                provider=holder["row"], model_ids=declare, actor=actor))
        if "models" not in want:
            return
        for index, model_id in enumerate([*wanted_models, *[m for m in saved_models if m not in wanted_models]]):
            target = wanted_models.get(model_id, {"id": model_id})
            current = saved_models.get(model_id, {"id": model_id})
            if model_id in existing and existing[model_id].stale and model_id in wanted_models:
                self.errors.append(f"{path}.models[{index}].id: '{model_id}' is no longer offered by the provider "
                                   "(stale); remove it from the file.")
                continue
            diff = {}
            if target.get("enabled", True) != current.get("enabled", True):
                diff["enabled"] = (current.get("enabled", True), target.get("enabled", True))
            prices_before = {k: current[k] for k in PRICE_KEYS if k in current}
            prices_after = {k: target[k] for k in PRICE_KEYS if k in target}
            if prices_before != prices_after:
                for k in PRICE_KEYS:
                    if prices_before.get(k) != prices_after.get(k):
                        diff[k] = (prices_before.get(k), prices_after.get(k))
            if not diff:
                continue
            if model_id in created:  # declared above: its settings go on its create line
                created[model_id].fields.update(diff)
            else:
                self.add(Change("change", "model", f"{want['name']}:{model_id}", diff))
            mpath = f"{path}.models[{index}]" if model_id in wanted_models else f"{path}.models ('{model_id}')"

            def write(actor, model_id=model_id, diff=diff, target=target, prices_after=prices_after):
                model = ProviderModel.objects.get(provider=holder["row"], model_id=model_id)
                if "enabled" in diff:
                    provider_model_set_enabled(provider_model=model, tenant=self.tenant,
                                               enabled=target.get("enabled", True), actor=actor)
                if set(diff) & set(PRICE_KEYS):
                    prices = None if not prices_after else {
                        "input": Decimal(prices_after["input_price"]), "output": Decimal(prices_after["output_price"]),
                        "cached_input": _dec(prices_after.get("cached_input_price")),
                        "cache_write": _dec(prices_after.get("cache_write_price"))}
                    provider_model_set_price(provider_model=model, prices=prices, actor=actor, tenant=self.tenant)

            disabling = "enabled" in diff and not target.get("enabled", True) and model_id in existing
            self.step(7.5 if disabling and defaults_lost(models=ProviderModel.objects.filter(
                pk=existing[model_id].pk), tenant=self.tenant) else 4, mpath, write)

    # --- platform models -----------------------------------------------------------------------

    def platform_models(self) -> None:
        if "platform_models" not in self.wanted:
            return
        chosen = {e["model"] for e in self.current["platform_models"]}
        wanted = {e["model"]: e["enabled"] for e in self.wanted["platform_models"]}
        for model in chosen - set(wanted):
            wanted[model] = False
        for index, (ref, enabled) in enumerate(wanted.items()):
            if (ref in chosen) == enabled:
                continue
            provider, _, model_id = ref.partition(":")
            row = ProviderModel.objects.filter(provider__owner__isnull=True, provider__name=provider,
                                               model_id=model_id).first()
            if row is None:
                self.errors.append(f"platform_models[{index}].model: '{ref}' is not a model of a platform provider "
                                   "(GET /api/models lists what the platform offers).")
                continue
            self.add(Change("change", "platform_model", ref, {"enabled": (ref in chosen, enabled)}))
            lost = not enabled and defaults_lost(models=ProviderModel.objects.filter(pk=row.pk), tenant=self.tenant)
            self.step(7.5 if lost else 5, f"platform_models[{index}]", lambda actor, row=row, enabled=enabled:
                      provider_model_set_enabled(provider_model=row, tenant=self.tenant, enabled=enabled, actor=actor))

    # --- aliases ---------------------------------------------------------------------------------

    def aliases(self) -> None:
        """Aliases are matched by project and name: moving one to another project (or making it
        tenant-wide) deletes it there and creates it here."""
        saved = {alias_key(a): a for a in self.current["aliases"]}
        rows = {(a.project.slug if a.project_id else "", a.name): a
                for a in ModelAlias.objects.filter(tenant=self.tenant).select_related("project")}
        if "aliases" not in self.wanted:
            return
        projects = self._project_slugs
        for index, want in enumerate(self.wanted["aliases"]):
            path = f"aliases[{index}]"
            slug = want.get("project") or ""
            if slug and slug not in projects:
                self.errors.append(f"{path}.project: tenant '{self.tenant.slug}' has no project '{slug}'" + (
                    " (and --prune deletes those the file does not name)" if self.prune and "projects" in self.wanted
                    else "") + "; add it under projects, or name one of: " + (", ".join(sorted(projects)) or "none")
                    + ".")
                continue
            label = alias_label(want)
            before = saved.get(alias_key(want))
            data = {k: v for k, v in want.items() if k not in ("deployments", "project")}
            data["targets"] = want["deployments"]
            if before is None:
                self.add(Change("create", "alias", label, {
                    "deployments": (None, [d["model"] for d in want["deployments"]]),
                    "strategy": (None, want["strategy"])}))
                first = {**data, "context_window_fallbacks": [], "content_policy_fallbacks": []}
                self.step(6, path, lambda actor, first=first, slug=slug: alias_create(
                    tenant=self.tenant, data={**first, "project": self._project(slug)}, actor=actor))
                if want["context_window_fallbacks"] or want["content_policy_fallbacks"]:
                    self.step(7, path, lambda actor, data=data, slug=slug: alias_update(
                        alias=self._alias(slug, data["name"]), data=data, actor=actor))
                continue
            diff = {k: (before.get(k), v) for k, v in want.items() if before.get(k) != v}
            if diff:
                self.add(Change("change", "alias", label, diff))
                self.step(7, path, lambda actor, data=data, slug=slug: alias_update(
                    alias=self._alias(slug, data["name"]), data=data, actor=actor))
        if self.prune:
            named = {alias_key(a) for a in self.wanted["aliases"]}
            for key, row in rows.items():
                if key not in named:
                    label = alias_label({"project": key[0], "name": key[1]})
                    self.add(Change("delete", "alias", label))
                    if key[0] and key[0] not in projects:
                        continue  # its project is pruned too, and takes its aliases with it
                    kept = self._defaults_kept(key, named)
                    if kept:
                        self.errors.append(f"aliases: '{label}': --prune would delete it, but it stays " + " and ".join(
                            kept) + "; change that default_model in the file too (or keep the alias).")
                        continue
                    # After the default models change (7): one may move off this alias in the same file.
                    self.step(7.5 if alias_dependents(alias=row) else 1, f"aliases: '{label}'",
                              lambda actor, row=row: alias_delete(alias=row, actor=actor))

    def _defaults_kept(self, key: tuple[str, str], named: set[tuple[str, str]]) -> list[str]:
        """The default models that would still name the alias ``key`` (project slug or "", name)
        once the file is applied, with no alias the file keeps to answer them: what pruning it
        would break (the tenant's default, and each project's the tenant keeps)."""
        slug, name = key
        settings = self.wanted.get("settings") or {}
        kept = []
        if not slug and ("", name) not in named and settings.get("default_model", self.tenant.default_model) == name:
            kept.append("the tenant's default model (settings.default_model)")
        defaults = dict(Project.objects.filter(tenant=self.tenant).values_list("slug", "default_model"))
        defaults.update({p["slug"]: p.get("default_model") or "" for p in self.wanted.get("projects", [])})
        for project in sorted(self._project_slugs):
            if defaults.get(project) != name or ("", name) in named or (project, name) in named:
                continue
            if not slug or slug == project:
                kept.append(f"the default model of project '{project}'")
        return kept

    @cached_property
    def _project_slugs(self) -> set[str]:
        """The projects the tenant has once the document is applied (read once per plan)."""
        slugs = set(Project.objects.filter(tenant=self.tenant).values_list("slug", flat=True))
        if "projects" in self.wanted:
            named = {p["slug"] for p in self.wanted["projects"]}
            if self.prune:
                slugs = {s for s in slugs if s in named or s == DEFAULT_PROJECT_SLUG}
            slugs |= named
        return slugs

    def _project(self, slug: str) -> Project | None:
        return Project.objects.get(tenant=self.tenant, slug=slug) if slug else None

    def _alias(self, slug: str, name: str) -> ModelAlias:
        return ModelAlias.objects.get(tenant=self.tenant, project=self._project(slug), name=name)

    # --- budgets ---------------------------------------------------------------------------------

    def budgets(self) -> None:
        if "budgets" not in self.wanted:
            return
        rows: dict[str, list[Budget]] = {}
        for budget in Budget.objects.filter(tenant=self.tenant).select_related("api_key"):
            rows.setdefault(budget.name, []).append(budget)
        saved = {b["name"]: b for b in self.current["budgets"]}
        keys = _keys_by_name(self.tenant)
        for index, want in enumerate(self.wanted["budgets"]):
            path = f"budgets[{index}]"
            if len(rows.get(want["name"], [])) > 1:
                self.errors.append(f"{path}.name: tenant '{self.tenant.slug}' has {len(rows[want['name']])} budgets "
                                   f"named '{want['name']}'; rename all but one first.")
                continue
            data: dict[str, Any] = {"name": want["name"], "scope": want["scope"], "amount": Decimal(want["amount"]),
                                    "period": want["period"], "thresholds": want["thresholds"],
                                    "action": want["action"], "enabled": want["enabled"],
                                    "downgrade_alias": want.get("downgrade_alias", ""),
                                    "project": want.get("project"), "model": want.get("model", "")}
            if want.get("project") and not self.project_known(want["project"], path):
                continue
            if want.get("key"):
                found = keys.get(want["key"], [])
                if len(found) != 1:
                    self.errors.append(f"{path}.key: " + _key_problem(self.tenant, want["key"], len(found)))
                    continue
                data["api_key"] = found[0].pk
            else:
                data["api_key"] = None
            comparable = {k: v for k, v in want.items() if k != "webhook_url"}
            before = saved.get(want["name"])
            diff = {k: (None if before is None else before.get(k), comparable.get(k))
                    for k in [*comparable, *[k for k in (before or {}) if k not in comparable]]
                    if before is None or before.get(k) != comparable.get(k)}
            if "webhook_url" in want:
                url = self.secret(want["webhook_url"], f"{path}.webhook_url")
                row = rows.get(want["name"], [None])[0]
                if url is not None and (row is None or row.webhook_url != url):
                    diff["webhook_url"] = ("(set)" if row is not None and row.webhook_url else None,
                                           _secret_label(want["webhook_url"]))
                    data["webhook_url"] = url
            if before is None:
                diff.pop("name", None)
                self.add(Change("create", "budget", want["name"], diff))
                self.step(8, path, lambda actor, data=data: budget_create(tenant=self.tenant, data=data, actor=actor))
            elif diff:
                self.add(Change("change", "budget", want["name"], diff))
                row = rows[want["name"]][0]
                self.step(8, path, lambda actor, data=data, row=row: budget_update(budget=row, data=data,
                                                                                    actor=actor))
        if self.prune:
            named = {b["name"] for b in self.wanted["budgets"]}
            for name, budgets in rows.items():
                if name not in named:
                    for budget in budgets:
                        self.add(Change("delete", "budget", name))
                        self.step(1, f"budgets: '{name}'", lambda actor, b=budget: budget_delete(budget=b, actor=actor))

    # --- limit rules ---------------------------------------------------------------------------

    def project_known(self, slug: str, path: str) -> bool:
        """A project a budget or rule names must exist after the apply: in the tenant (and not
        pruned) or in the document."""
        if slug in self._project_slugs:
            return True
        pruned = " (the file prunes it)" if Project.objects.filter(tenant=self.tenant, slug=slug).exists() else ""
        self.errors.append(f"{path}.project: tenant '{self.tenant.slug}' has no project '{slug}'{pruned}; add it "
                           "under projects:, or name one of the tenant's projects.")
        return False

    def limits(self) -> None:
        if "limits" not in self.wanted:
            return
        rows: dict[tuple[str, str, str, str], list[LimitRule]] = {}
        for rule in limit_rules_of(self.tenant):
            rows.setdefault(limit_identity(limit_entry(rule)), []).append(rule)
        keys = _keys_by_name(self.tenant)
        settable = [*LIMIT_FIELDS, "enabled"]
        for index, want in enumerate(self.wanted["limits"]):
            path = f"limits[{index}]"
            name = limit_identity_text(want)
            data: dict[str, Any] = {"scope": want["scope"], "project": want.get("project"),
                                    "model": want.get("model", ""), **{f: want.get(f) for f in settable}}
            if want.get("project") and not self.project_known(want["project"], path):
                continue
            if want.get("key"):
                found = keys.get(want["key"], [])
                if len(found) != 1:
                    self.errors.append(f"{path}.key: " + _key_problem(self.tenant, want["key"], len(found)))
                    continue
                data["api_key"] = found[0].pk
            existing = rows.get(limit_identity(want), [])
            if not existing:
                self.add(Change("create", "limit", name, {f: (None, want[f]) for f in settable if f in want}))
                self.step(8, path, lambda actor, data=data: limit_rule_create(tenant=self.tenant, data=data,
                                                                               actor=actor))
                continue
            before = limit_entry(existing[0])
            diff = {f: (before.get(f), want.get(f)) for f in settable if before.get(f) != want.get(f)}
            if diff:
                self.add(Change("change", "limit", name, diff))
                changes = {f: want.get(f) for f in settable}
                self.step(8, path, lambda actor, rule=existing[0], changes=changes: limit_rule_update(
                    rule=rule, data=changes, actor=actor))
        if self.prune:
            named = {limit_identity(w) for w in self.wanted["limits"]}
            for identity, rules in rows.items():
                if identity not in named:
                    for rule in rules:
                        text = limit_identity_text(limit_entry(rule))
                        self.add(Change("delete", "limit", text))
                        self.step(1, f"limits: '{text}'", lambda actor, rule=rule: limit_rule_delete(rule=rule,
                                                                                                     actor=actor))

    # --- projects --------------------------------------------------------------------------------

    def projects(self) -> None:
        if "projects" not in self.wanted:
            return
        rows = {p.slug: p for p in Project.objects.filter(tenant=self.tenant)}
        current = document_normalize({"version": self.wanted["version"], "projects": self.current["projects"]})
        saved = {p["slug"]: p for p in current["projects"]}
        for index, want in enumerate(self.wanted["projects"]):
            path = f"projects[{index}]"
            before = saved.get(want["slug"])
            fields = {k: v for k, v in want.items() if k != "slug"}
            service = {k: ("" if k == "default_model" and v is None else v) for k, v in fields.items()}
            # The default model is set once the aliases are (it may name one of the project's own).
            model = service.pop("default_model", "")
            if before is None:
                diff = {k: (None, v) for k, v in fields.items() if v is not None}
                self.add(Change("create", "project", want["slug"], diff))
                self.step(0, path, lambda actor, slug=want["slug"], service=service: project_create(
                    tenant=self.tenant, slug=slug, actor=actor, **service))
                if model:
                    self.step(7, path, lambda actor, slug=want["slug"], model=model: project_update(
                        project=self._project(slug), changes={"default_model": model}, actor=actor))
                continue
            diff = {k: (before[k], v) for k, v in fields.items() if before[k] != v}
            if diff:
                self.add(Change("change", "project", want["slug"], diff))
                changes = {k: service[k] for k in diff if k != "default_model"}
                if changes:
                    self.step(0, path, lambda actor, row=rows[want["slug"]], changes=changes: project_update(
                        project=row, changes=changes, actor=actor))
                if "default_model" in diff:
                    self.step(7, path, lambda actor, row=rows[want["slug"]], model=model: project_update(
                        project=row, changes={"default_model": model}, actor=actor))
        if self.prune:
            named = {p["slug"] for p in self.wanted["projects"]}
            for slug, row in rows.items():
                if slug not in named and not row.is_default:
                    self.add(Change("delete", "project", slug))
                    self.step(9, f"projects: '{slug}'", lambda actor, row=row: project_delete(project=row, actor=actor))

    # --- keys ------------------------------------------------------------------------------------

    def keys(self) -> None:
        if "keys" not in self.wanted:
            return
        keys = _keys_by_name(self.tenant)
        for index, want in enumerate(self.wanted["keys"]):
            found = keys.get(want["name"], [])
            if len(found) != 1:
                self.errors.append(f"keys[{index}].name: " + _key_problem(self.tenant, want["name"], len(found)))
                continue
            key = found[0]
            diff = {f: (getattr(key, f), v) for f, v in want.items() if f != "name" and getattr(key, f) != v}
            if diff:
                self.add(Change("change", "key", want["name"], diff))
                changes = {f: v for f, (_, v) in diff.items()}
                self.step(8, f"keys[{index}]", lambda actor, key=key, changes=changes: api_key_limits_update(
                    key=key, changes=changes, actor=actor))

    def build(self) -> None:
        self.settings()
        self.providers()
        self.platform_models()
        self.aliases()
        self.budgets()
        self.limits()
        self.keys()
        self.projects()
        order = {kind: i for i, kind in enumerate(KINDS)}
        self.changes.sort(key=lambda c: order[c.kind])


def _service_names(fields: dict[str, Any]) -> set[str]:
    names = {"type": "provider_type"}
    return {names.get(k, k) for k in fields}


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _keys_by_name(tenant: Tenant) -> dict[str, list[ApiKey]]:
    keys: dict[str, list[ApiKey]] = {}
    for key in active_keys(tenant):
        keys.setdefault(key.name, []).append(key)
    return keys


def _key_problem(tenant: Tenant, name: str, found: int) -> str:
    if found == 0:
        return (f"tenant '{tenant.slug}' has no active API key named '{name}' (a configuration file never creates "
                "keys: create it with POST /api/keys, then apply again).")
    return f"tenant '{tenant.slug}' has {found} active API keys named '{name}'; rename all but one first."


def _path_of(path: str, exc: TollgateError) -> str:
    """A service's error at its place in the document: ``aliases[2]`` and the alias service's
    ``targets[0].weight`` make ``aliases[2].deployments[0].weight``."""
    message = exc.message.replace("targets[", "deployments[")
    if exc.field:
        sub = exc.field.replace("targets", "deployments")
        sub = {"provider_type": "type", "api_key": "api_key" if path.startswith("providers") else "key"}.get(sub, sub)
        return f"{path}.{sub}: {message}"
    return f"{path}: {message}"


def document_tenant_check(*, tenant: Tenant, document: Any) -> None:
    """A document naming another tenant's slug is refused (apply it there, or change the slug)."""
    named = document.get("tenant") if isinstance(document, dict) else None
    slug = named.get("slug") if isinstance(named, dict) else None
    if slug and slug != tenant.slug:
        raise ConfigInvalid([f"tenant.slug: this document is for tenant '{slug}', not '{tenant.slug}'; change "
                             "tenant.slug (or remove it) to apply it here."])


def config_plan(*, tenant: Tenant, document: Any, prune: bool = False, allow_env: bool = True,
                notes: list[str] | None = None) -> tuple[Plan, "_Planner"]:
    """What applying ``document`` to ``tenant`` would change; ConfigInvalid listing every problem
    found before any service runs (schema, duplicates, env variables, unknown keys and models)."""
    document_check(document)
    duplicates = duplicates_check(document)
    if duplicates:
        raise ConfigInvalid(duplicates)
    planner = _Planner(tenant=tenant, wanted=document_normalize(document), prune=prune, allow_env=allow_env)
    planner.build()
    if planner.errors:
        raise ConfigInvalid(list(dict.fromkeys(planner.errors)))
    return Plan(tenant=tenant.slug, changes=planner.changes, notes=list(notes or [])), planner


def config_apply(*, tenant: Tenant, document: Any, actor: Principal, prune: bool = False, dry_run: bool = False,
                 allow_env: bool = True, notes: list[str] | None = None) -> Plan:
    """Make ``tenant`` match ``document`` in one transaction (every step through its service);
    ``dry_run`` runs the same steps and rolls them back, so the services' own checks answer too.
    The plan of what was (or would be) done. Nothing changes when the plan is empty."""
    try:
        with transaction.atomic():
            # One apply at a time per tenant, planned against what it changes: the tenant's row is locked first.
            tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
            plan, planner = config_plan(tenant=tenant, document=document, prune=prune, allow_env=allow_env,
                                        notes=notes)
            if not plan.changes:
                return plan
            for _, path, run in sorted(planner.steps, key=lambda s: s[0]):
                try:
                    run(actor)
                except TollgateError as exc:
                    raise ConfigInvalid([_path_of(path, exc)]) from exc
            audit_record(actor=actor, action="config.apply", tenant=tenant, target=f"tenant:{tenant.slug}",
                         after={"summary": plan.summary(), "prune": prune,
                                "changes": [c.line() for c in plan.changes][:200], "notes": plan.notes[:100]})
            if dry_run:
                raise _DryRun
    except _DryRun:
        return plan
    plan.applied = True
    return plan

