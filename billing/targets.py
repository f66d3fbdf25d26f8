"""What a budget or a limit rule applies to — its scope (tenant, project, key, end user), the
project or key that scope names, and its optional model filter — shared by the budget and the
limit-rule services: validation (``target_clean``), the words that describe it
(``target_words``).

A caller with roles on some projects only manages targets inside the projects it administers:
``projects`` (their ids) narrows every lookup, and a target outside them is refused."""

from typing import Any

from billing.models import BudgetScope
from core.errors import Forbidden, InvalidInput, NotFound
from providers.selectors import model_name_check
from tenants.access import TenantAccess
from tenants.models import ApiKey, Project, Tenant
from tenants.selectors import api_key_get, project_get

TARGET_FIELDS = ("scope", "project", "api_key", "model")


def _choices(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _where(tenant: Tenant, projects: frozenset[int] | None) -> str:
    return f"tenant '{tenant.slug}'" if projects is None else "the projects you administer"


def key_of(tenant: Tenant, value: Any, *, projects: frozenset[int] | None = None) -> ApiKey:
    key_id = value.pk if isinstance(value, ApiKey) else value
    if isinstance(key_id, bool) or not isinstance(key_id, int):
        raise InvalidInput(f"api_key must be the id of one of the tenant's API keys (got {value!r}).",
                           field="api_key")
    try:  # through the tenant: another tenant's key reads exactly like a missing one
        return api_key_get(tenant=tenant, key_id=key_id, project_ids=projects)
    except NotFound:
        raise InvalidInput(f"api_key {key_id} is not an API key of {_where(tenant, projects)}; list the keys with "
                           "GET /api/keys.", field="api_key") from None


def project_of(tenant: Tenant, value: Any, *, projects: frozenset[int] | None = None) -> Project:
    """A project of ``tenant`` by id, slug or row; another tenant's reads like a missing one."""
    if isinstance(value, Project):
        value = value.pk
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip())):
        raise InvalidInput(f"project must be a project's id or slug (got {value!r}).", field="project")
    try:
        return project_get(tenant=tenant, project=value, project_ids=projects)
    except NotFound:
        raise InvalidInput(f"No such project {value!r} in {_where(tenant, projects)}; GET /api/projects lists them.",
                           field="project") from None


def target_project_id(state: dict[str, Any]) -> int | None:
    """The project a target lies in (a key's: the key's project); None: the whole tenant."""
    if state["scope"] == BudgetScope.KEY:
        return state["api_key"].project_id if state["api_key"] is not None else None
    project = state.get("project")
    return project.pk if project is not None else None


def target_project(obj) -> int | None:
    """The project a saved budget or limit rule lies in; None: the whole tenant."""
    if obj.scope == BudgetScope.KEY:
        return obj.api_key.project_id if obj.api_key_id else None
    return obj.project_id


def target_change_projects(access: TenantAccess, obj, *, doing: str, what: str) -> frozenset[int] | None:
    """Before changing the saved budget or limit rule ``obj`` (``what``: "Budget", "Limit rule"):
    the projects the caller administers (None: every project), Forbidden when it may change
    nothing or ``obj`` lies outside them. The REST API and the console both ask here."""
    projects = access.administered_projects(doing=doing)
    if projects is not None and target_project(obj) not in projects:
        raise Forbidden(f"{what} {obj.pk} is in a project you do not administer; {doing} needs the admin role "
                        "on it.")
    return projects


def target_clean(*, tenant: Tenant, data: dict[str, Any], state: dict[str, Any], current: Any,
                 what: str, projects: frozenset[int] | None = None) -> None:
    """Fill ``state`` (scope, project, api_key, model) from ``data`` over the current values.
    A key given without a scope means the key scope, a project given without one the project
    scope. A target the new scope does not use is dropped when it was only kept from before,
    refused when it is sent. ``what`` names the thing in messages ("budget", "limit rule")."""
    if "scope" in data:
        if data["scope"] not in BudgetScope.values:
            raise InvalidInput(f"scope must be one of {_choices(BudgetScope.values)}.", field="scope")
        state["scope"] = data["scope"]
    elif data.get("api_key") is not None:
        state["scope"] = BudgetScope.KEY
    elif data.get("project") is not None and state["scope"] in (BudgetScope.TENANT, BudgetScope.KEY):
        state["scope"] = BudgetScope.PROJECT
    scope = state["scope"]

    # The key: the key scope's only target.
    if scope == BudgetScope.KEY:
        if "api_key" in data:
            if data["api_key"] is None:
                raise InvalidInput("api_key is required when scope is 'key': give the id of one of the tenant's "
                                   "API keys.", field="api_key")
            key = key_of(tenant, data["api_key"], projects=projects)
            unchanged = current is not None and current.api_key_id == key.pk
            if key.revoked_at is not None and not unchanged:
                raise InvalidInput(f"api_key {key.pk} ({key.name}, {key.masked}) is revoked, so it can spend "
                                   "nothing; choose an active key.", field="api_key")
            state["api_key"] = key
        elif state.get("api_key") is None:
            raise InvalidInput("api_key is required when scope is 'key': give the id of one of the tenant's "
                               "API keys.", field="api_key")
    else:
        if data.get("api_key") is not None:
            raise InvalidInput(
                f"api_key is only used when scope is 'key' (scope is '{scope}'); leave it out, or set scope to "
                f"'key' to make this {what} about one key.", field="api_key")
        state["api_key"] = None

    # The project: required by the project scope, optional for the end-user scope.
    if scope in (BudgetScope.PROJECT, BudgetScope.END_USER):
        if data.get("project") is not None:
            state["project"] = project_of(tenant, data["project"], projects=projects)
        elif "project" in data:
            state["project"] = None
        if scope == BudgetScope.PROJECT and state.get("project") is None:
            raise InvalidInput("project is required when scope is 'project': give the slug or id of one of the "
                               "tenant's projects (GET /api/projects).", field="project")
    else:
        if data.get("project") is not None:
            hint = ("set scope to 'project' (or 'end_user' for each end user of that project)"
                    if scope == BudgetScope.TENANT else "a key belongs to its own project already")
            raise InvalidInput(f"project is only used when scope is 'project' or 'end_user' (scope is '{scope}'); "
                               f"leave it out, or {hint}.", field="project")
        state["project"] = None

    # The model filter: an alias or a model the tenant has, checked when it is set.
    if "model" in data:
        value = data["model"]
        if value is not None and not isinstance(value, str):
            raise InvalidInput("model must be an alias or model name (a string), or empty for every model.",
                               field="model")
        value = (value or "").strip()
        if value and (current is None or value != current.model):
            value = model_name_check(tenant=tenant, name=value, field="model")
        state["model"] = value
    state.setdefault("model", "")

    if projects is not None and target_project_id(state) not in projects:
        raise Forbidden(
            f"Your roles in tenant '{tenant.slug}' are on some projects only: a {what} you manage must be scope "
            "'project' or 'end_user' with one of your projects as project, or scope 'key' with one of their keys.")


def scope_words(*, scope: str, project: Project | None, api_key: ApiKey | None) -> str:
    """``the whole tenant``, ``project support``, ``key 'bot' (tg_…abcd)``, ``each end user of
    project support`` / ``each end user of the tenant``."""
    if scope == BudgetScope.PROJECT:
        return f"project {project.slug}" if project is not None else "one project"
    if scope == BudgetScope.KEY:
        return f"key '{api_key.name}' ({api_key.masked})" if api_key is not None else "one API key"
    if scope == BudgetScope.END_USER:
        return f"each end user of project {project.slug}" if project is not None else "each end user of the tenant"
    return "the whole tenant"


def target_words(obj) -> str:
    """The scope words of a budget or limit rule, with its model filter."""
    words = scope_words(scope=obj.scope, project=obj.project if obj.project_id else None,
                        api_key=obj.api_key if obj.api_key_id else None)
    return f"{words} on model {obj.model}" if obj.model else words
