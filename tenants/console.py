"""The tenant console's plumbing (/app/<slug>/…), shared by the console pages of every app:
the ``tenant_page`` decorator that turns the URL's slug into the caller's access, and
``console_render``, which renders a page inside the tenant layout (``Console``, the nav).

Every console URL names its tenant by slug, so links can be shared. The slug is resolved
through the caller's visible tenants and ``tenant_access_get``: a tenant the caller may not see
is a 404, whatever it holds. Reading needs any role (support staff read every tenant); an
unsafe method needs admin (members: owner) and is refused with 403 before the view runs."""

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
from tenants.models import Membership, Role

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def tenant_access_for_slug(request: HttpRequest, slug: str) -> TenantAccess:
    """The caller's access to the tenant named ``slug``; Http404 when they may not see it."""
    principal = Principal(user=request.user)
    tenant_id = selectors.tenants_visible(principal=principal).filter(slug=slug).values_list("pk", flat=True).first()
    if tenant_id is None:
        raise Http404(f"Tenant '{slug}' not found.")
    try:
        return selectors.tenant_access_get(principal=principal, tenant_id=tenant_id)
    except (NotFound, Forbidden) as exc:
        raise Http404(exc.message) from None


def tenant_page(view: Callable | None = None, *, change: Role = Role.ADMIN):
    """Decorate a console view ``view(request, access, **kwargs)``: anonymous callers go to
    the login page, another tenant's slug is a 404, an unsafe method needs ``change``
    (403 otherwise), a NotFound from a selector is a 404 and a Forbidden a 403."""

    def decorate(func):
        @wraps(func)
        def wrapper(request, tenant_slug: str, *args, **kwargs):
            if not request.user.is_authenticated:
                return login_redirect(request)
            access = tenant_access_for_slug(request, tenant_slug)
            request.access = access
            if request.method not in SAFE_METHODS and not access.can(change):
                return forbidden(request, _refusal(access, change))
            try:
                with timezone.override(zone_of(access.tenant.timezone)):
                    return func(request, access, *args, **kwargs)
            except NotFound as exc:
                raise Http404(exc.message) from None
            except Forbidden as exc:
                return forbidden(request, exc.message)

        return wrapper

    return decorate(view) if view is not None else decorate


def _refusal(access: TenantAccess, needed: Role) -> str:
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
        return self.access.can(Role.ADMIN)

    @property
    def is_owner(self) -> bool:
        return self.access.can(Role.OWNER)

    @property
    def is_support(self) -> bool:
        return self.access.role == SUPPORT

    @property
    def role(self) -> str:
        return self.access.role


NAV = (
    ("overview", "Overview", "console-overview"),
    ("settings", "LLM settings", "console-settings"),
    ("providers", "Providers", "console-providers"),
    ("models", "Models", "console-models"),
    ("aliases", "Aliases", "console-aliases"),
    ("keys", "API keys", "console-keys"),
    ("budgets", "Budgets", "console-budgets"),
    ("limits", "Limits", "console-limits"),
    ("usage", "Usage", "console-usage"),
    ("end_users", "End users", "console-end-users"),
    ("members", "Members", "console-members"),
)


def console_render(
    request: HttpRequest, access: TenantAccess, template: str, context: dict[str, Any] | None = None, *,
    section: str, status: int = 200,
) -> HttpResponse:
    """Render a console page inside the tenant layout."""
    tenants: list[tuple[str, str]] = []
    if not is_htmx(request):
        tenants = list(
            Membership.objects.filter(user=request.user).exclude(tenant=access.tenant)
            .order_by("tenant__slug").values_list("tenant__slug", "tenant__name")[:50]
        )
    console = Console(access=access, section=section, tenants=tenants)
    nav = [(key, label, reverse(name, args=[access.tenant.slug])) for key, label, name in NAV]
    return render(request, template, {"console": console, "nav": nav, "tenant": access.tenant, **(context or {})},
                  status=status)
