"""A tenant's routing table, loaded from the database into each worker and kept until the
tenant's configuration changes (tenants/config_version.py; the admission script tells):
defaults, limits, budgets, the models it may use, its aliases and its projects' aliases and
default models. Resolving a request's ``model`` against it costs a few dict lookups and no I/O.

A key of project P sees P's aliases, which win over tenant-wide aliases of the same name, and
the tenant-wide ones; other projects' aliases are unknown to it. A request without ``model``
gets P's default model when P has one, else the tenant's (embeddings: the tenant's default
embeddings model), looked up the same way. An alias's fallbacks are resolved where the alias
lives: a project alias's may name its project's aliases, a tenant-wide alias's mean tenant-wide
names for every key."""

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from billing.models import Budget, BudgetAction, EndUserBlock, LimitRule
from billing.spend import BudgetInfo
from core.timezones import zone_of
from gateway.db import run_db
from gateway.deployments import Candidate
from gateway.errors import GatewayError, bad_request, not_found_model
from gateway.scopes import LimitInfo, ProjectInfo
from providers.adapters.types import Deployment
from providers.models import ModelAlias, ModelMode, ProviderModel, RoutingStrategy
from providers.selectors import models_available
from tenants.models import Project, Tenant

PARAMS = ("temperature", "max_tokens", "top_p")


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment of a route: a provider model, its priority group and weight, the
    provider account's rpm / tpm limits (0: none), and parameter overrides."""

    deployment: Deployment
    overrides: dict[str, Any]
    group: int = 0
    weight: int = 1
    rpm: int = 0
    tpm: int = 0

    def candidate(self) -> Candidate:
        d = self.deployment
        price = d.input_price + d.output_price if d.input_price is not None and d.output_price is not None else None
        return Candidate(d.provider_model_id, self.group, self.weight, self.rpm, self.tpm, price)


@dataclass(frozen=True, slots=True)
class Route:
    requested: str  # what the client sent (or the default it got)
    alias: str  # the alias name, "" when not an alias
    targets: tuple[Target, ...]
    retries: int | None  # None: each provider's own max_retries
    timeout: float | None  # None: each provider's own timeout
    allowed_fails: int
    cooldown_seconds: int
    strategy: str = RoutingStrategy.WEIGHTED
    affinity: bool = False  # session affinity
    candidates: tuple[Candidate, ...] = ()  # the targets' Candidates, in order (filled by ``route_make``)
    # Routes tried after every target failed with a context-window / content-policy error.
    context_fallbacks: tuple["Route", ...] = ()
    policy_fallbacks: tuple["Route", ...] = ()

    def narrowed(self, keep: tuple[Target, ...]) -> "Route":
        """The route with only the targets ``keep`` (a key's allowed models, a mode)."""
        return replace(self, targets=keep, candidates=tuple(t.candidate() for t in keep))

    def fallbacks(self, kind: str) -> tuple["Route", ...]:
        if kind == "context_window":
            return self.context_fallbacks
        if kind == "content_policy":
            return self.policy_fallbacks
        return ()


def route_make(**fields) -> Route:
    route = Route(**fields)
    return replace(route, candidates=tuple(t.candidate() for t in route.targets))


@dataclass(slots=True)
class TenantConfig:
    tenant_id: int
    slug: str
    active: bool
    default_model: str
    defaults: dict[str, Any]
    requests_per_minute: int | None
    tokens_per_day: int | None
    cache_enabled: bool
    cache_ttl_seconds: int
    by_public_id: dict[str, Deployment]  # "provider:model"
    provider_names: frozenset[str]
    plain: dict[str, Route] = field(default_factory=dict)  # "provider:model" -> its one-target route
    bare: dict[str, Route] = field(default_factory=dict)  # bare model id -> its providers' deployments
    aliases: dict[str, Route] = field(default_factory=dict)
    zone: ZoneInfo = ZoneInfo("UTC")
    budgets: list[BudgetInfo] = field(default_factory=list)
    version: tuple[str, str] = ("", "")  # the tenant's and the platform's, read before loading
    redis_outage: str = "inherit"  # Tenant.redis_outage: inherit, closed or open
    default_embedding_model: str = ""  # what /v1/embeddings uses when the request names no model
    tokens_per_minute: int | None = None
    projects: dict[int, ProjectInfo] = field(default_factory=dict)
    limit_rules: list[LimitInfo] = field(default_factory=list)
    # The provider models each model or alias a limit rule or budget names stands for.
    filter_models: dict[str, frozenset[int]] = field(default_factory=dict)
    blocked: dict[str, frozenset[int]] = field(default_factory=dict)  # end user -> projects (0: all)
    # project id -> that project's aliases (for its keys they win over ``aliases``)
    project_aliases: dict[int, dict[str, Route]] = field(default_factory=dict)

    def covering(self, route: "Route"):
        """``covers(name)`` for a request on ``route``: the provider models a limit rule's or
        budget's model or alias stands for when the request is to it — it asked for that name,
        or one of its deployments is one of them — else None."""
        targets = route.targets

        def covers(name: str) -> frozenset[int] | None:
            models = self.filter_models.get(name, frozenset())
            if route.requested == name or any(t.deployment.provider_model_id in models for t in targets):
                return models
            return None

        return covers

    def end_user_blocked(self, end_user: str, project_id: int | None) -> bool:
        projects = self.blocked.get(end_user) if end_user else None
        return projects is not None and (0 in projects or (project_id or 0) in projects)

    def fails_open(self) -> bool:
        """Whether this tenant is served, without rate limits, while Redis is unreachable: its
        own choice or the platform's (GATEWAY_REDIS_OUTAGE), and never with a block budget
        (nothing could stop it at the budget)."""
        policy = settings.GATEWAY_REDIS_OUTAGE if self.redis_outage == "inherit" else self.redis_outage
        return policy == "open" and not any(b.action == BudgetAction.BLOCK for b in self.budgets)

    def resolve(self, requested: str | None, *, mode: str = ModelMode.CHAT,
                allowed: frozenset[str] = frozenset(), project_id: int | None = None) -> Route:
        """The route for a request's ``model`` (alias, provider:model, bare id, or the default when
        omitted: the key's project's default model, else the tenant's; its default embeddings model
        for ``mode`` embedding) as a key of ``project_id`` sees them; a GatewayError that lists what
        is available to it otherwise."""
        embedding = mode == ModelMode.EMBEDDING
        if requested is not None:
            name = requested
        else:
            name = self.default_embedding_model if embedding else (
                self._project_default(project_id) or self.default_model)
        if not isinstance(name, str):
            raise bad_request("'model' must be a string.", param="model")
        name = name.strip()
        if not name and embedding:
            raise bad_request(
                "No model given and this tenant has no default embeddings model. Send 'model' (one of: "
                f"{self.available_text(mode, project_id=project_id)}) or set the default: PUT /api/tenants/"
                f'{self.tenant_id} {{"settings": {{"embeddings": {{"model": "<provider>:<model>"}}}}}} (or '
                '{"provider", "model", "apiKey"}).',
                param="model",
            )
        if not name:
            raise bad_request(
                "No model given and this tenant has no default model. Send 'model' (GET /v1/models "
                "lists them) or set a default in the tenant settings (or the key's project's default_model).",
                param="model",
            )
        route = self._lookup(name, project_id)
        if route is None:
            raise not_found_model(
                f"Model '{name}' is not enabled for this tenant; available: "
                f"{self.available_text(mode, project_id=project_id)}."
            )
        if allowed and name not in allowed:
            permitted = tuple(
                t for t in route.targets
                if not route.alias and (t.deployment.public_id in allowed or t.deployment.model_id in allowed)
            )
            if not permitted:
                raise GatewayError(
                    403, f"This API key may not use '{name}'; it is limited to: {', '.join(sorted(allowed))}.",
                    type="permission_error", code="model_not_allowed", param="model",
                )
            route = route.narrowed(permitted)
        usable = tuple(t for t in route.targets if t.deployment.mode == mode)
        if not usable:
            kind = "an embeddings" if mode == ModelMode.EMBEDDING else "a chat"
            raise bad_request(
                f"'{name}' is not {kind} model; use one of: {self.available_text(mode, project_id=project_id)}.",
                param="model",
            )
        if len(usable) != len(route.targets):
            route = route.narrowed(usable)
        return route

    def _project_default(self, project_id: int | None) -> str:
        project = self.projects.get(project_id) if project_id is not None else None
        return project.default_model if project is not None else ""

    def aliases_of(self, project_id: int | None) -> dict[str, Route]:
        """The aliases a key of ``project_id`` may send: the tenant-wide ones, and its project's
        in their place where the names are the same."""
        own = self.project_aliases.get(project_id) if project_id is not None else None
        return {**self.aliases, **own} if own else self.aliases

    def _lookup(self, name: str, project_id: int | None = None) -> Route | None:
        if project_id is not None:
            own = self.project_aliases.get(project_id)
            if own is not None and name in own:
                return own[name]
        alias = self.aliases.get(name)
        if alias is not None:
            return alias
        provider, sep, model = name.partition(":")
        if sep and provider in self.provider_names:
            return self.plain.get(name)
        return self.bare.get(name)

    def available_text(self, mode: str = ModelMode.CHAT, limit: int = 20, *, project_id: int | None = None) -> str:
        names = sorted(a for a, r in self.aliases_of(project_id).items()
                       if any(t.deployment.mode == mode for t in r.targets))
        names += sorted(p for p, d in self.by_public_id.items() if d.mode == mode)
        if not names:
            return "none (enable models with PUT /api/providers/{id}/models/{model_id}/enable)"
        more = f" and {len(names) - limit} more (GET /v1/models)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    def model_list(self, allowed: frozenset[str] = frozenset(), *,
                   project_id: int | None = None) -> list[tuple[str, str]]:
        """(id, owner) pairs for GET /v1/models as a key of ``project_id`` sees them: aliases (its
        project's and the tenant-wide ones), then provider:model ids."""
        out = [(name, "alias") for name in sorted(self.aliases_of(project_id))]
        out += [(pid, d.provider_name) for pid, d in sorted(self.by_public_id.items())]
        if allowed:
            out = [item for item in out if item[0] in allowed]
        return out


def _deployment(pm: ProviderModel) -> Deployment:
    p = pm.provider
    return Deployment(
        provider_id=p.pk,
        provider_name=p.name,
        provider_type=p.provider_type,
        base_url=p.base_url.rstrip("/"),
        api_key=p.api_key,
        extra_headers=p.upstream_extra_headers(),
        provider_model_id=pm.pk,
        model_id=pm.model_id,
        timeout=p.timeout_seconds,
        max_retries=p.max_retries,
        input_price=pm.input_price,
        output_price=pm.output_price,
        cached_input_price=pm.cached_input_price,
        cache_write_price=pm.cache_write_price,
        mode=pm.mode,
        context_length=pm.context_length,
        options=tuple(sorted((k, v) for k, v in (p.options or {}).items() if isinstance(v, str))),
    )


def tenant_config_load(tenant_id: int, version: tuple[str, str] = ("", "")) -> TenantConfig | None:
    """Read a tenant's routing table (a handful of queries; runs in a worker thread).
    ``version``: the configuration versions read before this read began."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return None
    by_public: dict[str, Deployment] = {}
    by_model: dict[str, list[Deployment]] = {}
    by_pk: dict[int, Deployment] = {}
    priority: dict[int, int] = {}  # provider model -> its provider's priority
    # models_available orders by provider priority (highest first), so lists stay best-first.
    for pm in models_available(tenant=tenant):
        d = _deployment(pm)
        by_pk[pm.pk] = d
        priority[pm.pk] = pm.provider.priority
        # A tenant's own provider shadows a platform one of the same name.
        if d.public_id not in by_public or pm.provider.owner_id == tenant.pk:
            by_public[d.public_id] = d
        by_model.setdefault(pm.model_id, []).append(d)
    plain_settings = {"retries": None, "timeout": None, "allowed_fails": settings.GATEWAY_ALLOWED_FAILS,
                      "cooldown_seconds": settings.GATEWAY_COOLDOWN_SECONDS}
    plain = {pid: route_make(requested=pid, alias="", targets=(Target(d, {}),), **plain_settings)
             for pid, d in by_public.items()}
    # A bare model id served by several providers: one group per provider priority (highest
    # first), equal shares inside a group.
    bare = {
        model_id: route_make(requested=model_id, alias="", targets=tuple(
            Target(d, {}, group=-priority[d.provider_model_id]) for d in deployments), **plain_settings)
        for model_id, deployments in by_model.items()
    }
    aliases: dict[str, Route] = {}  # tenant-wide
    project_aliases: dict[int, dict[str, Route]] = {}
    wanted: dict[tuple[int | None, str], tuple[list[str], list[str]]] = {}
    for alias in ModelAlias.objects.filter(tenant=tenant).prefetch_related("targets"):
        targets = tuple(
            Target(by_pk[t.provider_model_id], dict(t.overrides or {}), group=t.priority, weight=t.weight,
                   rpm=t.rpm_limit or 0, tpm=t.tpm_limit or 0)
            for t in sorted(alias.targets.all(), key=lambda t: t.position)
            if t.provider_model_id in by_pk
        )
        if targets:
            home = aliases if alias.project_id is None else project_aliases.setdefault(alias.project_id, {})
            home[alias.name] = route_make(
                requested=alias.name,
                alias=alias.name,
                targets=targets,
                retries=alias.retries,
                timeout=alias.timeout_seconds,
                allowed_fails=alias.allowed_fails,
                cooldown_seconds=alias.cooldown_seconds,
                strategy=alias.strategy,
                affinity=alias.session_affinity,
            )
            wanted[(alias.project_id, alias.name)] = (list(alias.context_window_fallbacks or []),
                                                      list(alias.content_policy_fallbacks or []))

    provider_names = frozenset(d.provider_name for d in by_public.values())

    def found(names: list[str], own: str, project_id: int | None) -> tuple[Route, ...]:
        """The routes ``names`` name where the alias lives (its project's aliases, tenant-wide
        aliases, provider:model ids, bare ids); ones gone since are skipped. One level: a fallback
        route's own fallbacks are not followed."""
        mine = project_aliases.get(project_id, {}) if project_id is not None else {}
        out = []
        for name in names:
            prefix, sep, _ = name.partition(":")
            route = mine.get(name) or aliases.get(name) or (
                plain.get(name) if sep and prefix in provider_names else bare.get(name))
            if route is not None and name != own:
                out.append(route)
        return tuple(out)

    resolved: dict[tuple[int | None, str], Route] = {}
    for (project_id, name), (context_names, policy_names) in wanted.items():
        home = aliases if project_id is None else project_aliases[project_id]
        if context_names or policy_names:
            resolved[(project_id, name)] = replace(home[name],
                                                   context_fallbacks=found(context_names, name, project_id),
                                                   policy_fallbacks=found(policy_names, name, project_id))
    for (project_id, name), route in resolved.items():  # once all are found: a fallback is one level deep
        (aliases if project_id is None else project_aliases[project_id])[name] = route
    defaults = {"temperature": tenant.temperature, "max_tokens": tenant.max_tokens, "top_p": tenant.top_p}
    budgets = [
        BudgetInfo(budget_id=b.pk, name=b.name, scope=b.scope, key_id=b.api_key_id, amount=b.amount,
                   period=b.period, action=b.action, downgrade_alias=b.downgrade_alias, project_id=b.project_id,
                   model=b.model)
        for b in Budget.objects.filter(tenant=tenant, enabled=True).order_by("pk")
    ]
    projects = {
        p.pk: ProjectInfo(project_id=p.pk, slug=p.slug, rpm=p.requests_per_minute or 0, tpm=p.tokens_per_minute or 0,
                          tpd=p.tokens_per_day or 0, default_model=p.default_model)
        for p in Project.objects.filter(tenant=tenant)
    }
    rules = [
        LimitInfo(scope=r.scope, project_id=r.project_id, key_id=r.api_key_id, model=r.model,
                  rpm=r.requests_per_minute or 0, tpm=r.tokens_per_minute or 0, tpd=r.tokens_per_day or 0)
        for r in LimitRule.objects.filter(tenant=tenant, enabled=True).order_by("pk")
    ]
    filter_models: dict[str, frozenset[int]] = {}
    for name in {b.model for b in budgets if b.model} | {r.model for r in rules if r.model}:
        # the name as any key may see it: a tenant-wide alias, the projects' aliases of that name
        # (a rule or budget of one project only meets that project's requests), a model
        routes = [aliases.get(name) or plain.get(name) or bare.get(name),
                  *(own.get(name) for own in project_aliases.values())]
        filter_models[name] = frozenset(t.deployment.provider_model_id for r in routes if r for t in r.targets)
    blocked: dict[str, set[int]] = {}
    for end_user, project_id in EndUserBlock.objects.filter(tenant=tenant).values_list("end_user", "project_id"):
        blocked.setdefault(end_user, set()).add(project_id or 0)
    return TenantConfig(
        tenant_id=tenant.pk,
        slug=tenant.slug,
        active=tenant.is_active,
        default_model=tenant.default_model,
        defaults={k: v for k, v in defaults.items() if v is not None},
        requests_per_minute=tenant.requests_per_minute,
        tokens_per_day=tenant.tokens_per_day,
        cache_enabled=tenant.cache_enabled,
        cache_ttl_seconds=tenant.cache_ttl_seconds,
        by_public_id=by_public,
        plain=plain,
        bare=bare,
        provider_names=provider_names,
        aliases=aliases,
        zone=zone_of(tenant.timezone),
        budgets=budgets,
        version=version,
        redis_outage=tenant.redis_outage,
        default_embedding_model=tenant.default_embedding_model,
        tokens_per_minute=tenant.tokens_per_minute,
        projects=projects,
        limit_rules=rules,
        filter_models=filter_models,
        blocked={end_user: frozenset(ids) for end_user, ids in blocked.items()},
        project_aliases=project_aliases,
    )


class ConfigCache:
    """Per-worker cache of TenantConfig. An entry is used until the admission script says its
    version is no longer current (then ``drop``), or, as a backstop when a change could not be
    published, for GATEWAY_CONFIG_SECONDS; concurrent misses for one tenant share one load."""

    def __init__(self, ttl: float | None = None):
        self.ttl = settings.GATEWAY_CONFIG_SECONDS if ttl is None else ttl
        self._entries: dict[int, tuple[float, TenantConfig | None]] = {}
        self._loading: dict[int, asyncio.Future] = {}

    async def get(self, tenant_id: int, versions) -> TenantConfig | None:
        """The cached table, or one loaded now; ``versions`` is the coroutine function that
        reads the current versions (read before the database, so a change committed during
        the load makes the next admission reload again rather than be missed)."""
        entry = self._entries.get(tenant_id)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._loading.get(tenant_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._loading[tenant_id] = future
        try:
            version = await versions(tenant_id)
            config = await run_db(tenant_config_load, tenant_id, version)
            self._entries[tenant_id] = (time.monotonic() + self.ttl, config)
            future.set_result(config)
            return config
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved when nobody else waits
            raise
        finally:
            del self._loading[tenant_id]

    def drop(self, tenant_id: int) -> None:
        self._entries.pop(tenant_id, None)

    def clear(self) -> None:
        self._entries.clear()


def apply_defaults(body: dict[str, Any], tenant: TenantConfig, target: Target) -> dict[str, Any]:
    """The request with temperature / max_tokens / top_p it left unset filled from the alias
    target's overrides, then the tenant's defaults."""
    missing = [p for p in PARAMS
               if body.get(p) is None and not (p == "max_tokens" and body.get("max_completion_tokens"))]
    if not missing:
        return body
    out = dict(body)
    for param in missing:
        if param in target.overrides and target.overrides[param] is not None:
            out[param] = target.overrides[param]
        elif param in tenant.defaults:
            out[param] = tenant.defaults[param]
    return out
