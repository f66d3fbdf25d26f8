"""The tenant console's plumbing (/app/<slug>/…), shared by the console pages of every app:
the ``tenant_page`` decorator that turns the URL's slug into the caller's access, and
``console_render``, which renders a page inside the tenant layout (``Console``, the nav).

Every console URL names its tenant by slug, so links can be shared. The slug is resolved
through the caller's visible tenants and ``tenant_access_get``: a tenant the caller may not see
is a 404, whatever it holds. Reading needs any role (support staff read every tenant); an
unsafe method needs admin (members: owner) and is refused with 403 before the view runs.

A user with roles on some projects only (``TenantAccess.project_roles``) uses the pages that
serve them, as the REST API's views do: those ask for it (``tenant_page(projects=True)``), keep
to the caller's projects and check each change with ``require_in_project`` /
``administered_projects``; a change needs the admin role on at least one project before the view
runs. Every other page is a 403 for them, and the nav shows them only ``PROJECT_SECTIONS``."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from core.errors import Forbidden, NotFound
from core.pages import forbidden, is_htmx, login_redirect
from core.timezones import zone_of
from tenants import selectors
from tenants.access import SUPPORT, Principal, TenantAccess, suspended_message
from tenants.models import Role

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def tenant_access_for_slug(request: HttpRequest, slug: str, *, projects: bool = False) -> TenantAccess:
    """The caller's access to the tenant named ``slug``; Http404 when they may not see it,
    Forbidden when their roles there are on some projects only and the page is not for them
    (``projects`` False)."""
    principal = Principal(user=request.user)
    tenant_id = (selectors.tenants_visible(principal=principal, projects=True).filter(slug=slug)
                 .values_list("pk", flat=True).first())
    if tenant_id is None:
        raise Http404(f"Tenant '{slug}' not found.")
    try:
        return selectors.tenant_access_get(principal=principal, tenant_id=tenant_id, projects=projects)
    except NotFound as exc:
        raise Http404(exc.message) from None


def tenant_page(view: Callable | None = None, *, change: Role = Role.ADMIN, projects: bool = False):
    """Decorate a console view ``view(request, access, **kwargs)``: anonymous callers go to
    the login page, another tenant's slug is a 404, an unsafe method needs ``change``
    (403 otherwise), a NotFound from a selector is a 404 and a Forbidden a 403.

    ``projects``: the page also serves users with roles on some projects only; the view keeps
    to ``access.project_ids`` and checks each change in its project. Their unsafe methods need
    the admin role on some project here; without ``projects`` they get a 403 page."""

    def decorate(func):
        @wraps(func)
        def wrapper(request, tenant_slug: str, *args, **kwargs):
            if not request.user.is_authenticated:
                return login_redirect(request)
            try:
                access = tenant_access_for_slug(request, tenant_slug, projects=projects)
            except Forbidden as exc:
                return forbidden(request, exc.message)
            request.access = access
            if request.method not in SAFE_METHODS:
                refusal = _change_refusal(access, change)
                if refusal:
                    return forbidden(request, refusal)
            try:
                with timezone.override(zone_of(access.tenant.timezone)):
                    return func(request, access, *args, **kwargs)
            except NotFound as exc:
                raise Http404(exc.message) from None
            except Forbidden as exc:
                return forbidden(request, exc.message)

        return wrapper

    return decorate(view) if view is not None else decorate


def _change_refusal(access: TenantAccess, needed: Role) -> str:
    """Why ``access`` may make no change on this page ("" when it may make some)."""
    if access.project_roles is not None:
        try:
            access.administered_projects(doing="this change")
        except Forbidden as exc:
            return exc.message
        return ""
    if access.can(needed):
        return ""
    if access.suspended and access.role != SUPPORT:
        return suspended_message(access.tenant, doing="this change")
    if access.role == SUPPORT:
        return f"Support access to '{access.tenant.slug}' is read-only."
    return (
        f"Your role in '{access.tenant.slug}' is {access.role}; this change needs the "
        f"{needed.value} role or higher. Ask an owner of the tenant."
    )


@dataclass(frozen=True)
class Console:
    """What the console layout needs on every page."""

    access: TenantAccess
    section: str
    tenants: list[tuple[str, str]]  # (slug, name) of the caller's other tenants, for switching

    @property
    def tenant(self):
        return self.access.tenant

    @property
    def can_change(self) -> bool:
        return may_change(self.access)

    @property
    def is_owner(self) -> bool:
        return self.access.can(Role.OWNER)

    @property
    def is_support(self) -> bool:
        return self.access.role == SUPPORT

    @property
    def is_project_member(self) -> bool:
        return self.access.project_roles is not None

    @property
    def role(self) -> str:
        if self.access.project_roles is not None:
            return project_role_label(self.access.project_roles)
        return self.access.role

    def admins_project(self, project_id: int | None) -> bool:
        """May the caller change what lies in this project (None: tenant-wide)?"""
        return self.access.can_in_project(project_id, Role.ADMIN)


def may_change(access: TenantAccess) -> bool:
    """Whether the caller may change anything on the console's pages: a tenant admin, or a
    project admin (in their projects; each object asks ``Console.admins_project`` for itself)."""
    if access.project_roles is not None:
        return not access.suspended and Role.ADMIN in access.project_roles.values()
    return access.can(Role.ADMIN)


def administered_project_ids(access: TenantAccess) -> frozenset[int] | None:
    """The projects whose objects a form may offer for a change: None (every project) for a
    tenant role, else the projects the caller administers (maybe none: their forms are hidden)."""
    if access.project_roles is None:
        return None
    return frozenset(p for p, role in access.project_roles.items() if role == Role.ADMIN)


def project_role_label(project_roles) -> str:
    """How the console names a role on some projects only: project admin (of at least one) or viewer."""
    return "project admin" if Role.ADMIN in project_roles.values() else "project viewer"


NAV = (
    ("overview", "Overview", "console-overview"),
    ("settings", "LLM settings", "console-settings"),
    ("providers", "Providers", "console-providers"),
    ("models", "Models", "console-models"),
    ("aliases", "Aliases", "console-aliases"),
    ("projects", "Projects", "console-projects"),
    ("keys", "API keys", "console-keys"),
    ("budgets", "Budgets", "console-budgets"),
    ("limits", "Limits", "console-limits"),
    ("usage", "Usage", "console-usage"),
    ("end_users", "End users", "console-end-users"),
    ("members", "Members", "console-members"),
)
# The pages a user with roles on some projects only can use (as over the REST API).
PROJECT_SECTIONS = frozenset({"overview", "projects", "aliases", "keys", "budgets", "limits", "usage", "end_users"})


def console_render(
    request: HttpRequest, access: TenantAccess, template: str, context: dict[str, Any] | None = None, *,
    section: str, status: int = 200,
) -> HttpResponse:
    """Render a console page inside the tenant layout."""
    tenants: list[tuple[str, str]] = []
    if not is_htmx(request):
        tenants = list(
            selectors.tenants_joined(user=request.user).exclude(pk=access.tenant.pk)
            .order_by("slug").values_list("slug", "name")[:50]
        )
    console = Console(access=access, section=section, tenants=tenants)
    nav = [(key, label, reverse(name, args=[access.tenant.slug])) for key, label, name in NAV
           if access.project_roles is None or key in PROJECT_SECTIONS]
    return render(request, template, {"console": console, "nav": nav, "tenant": access.tenant, **(context or {})},
                  status=status)
