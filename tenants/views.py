"""The tenant console (/app/): the plumbing every console page shares, and the tenant pages
(chooser, LLM settings, API keys, members).

Every console URL names its tenant by slug (``/app/<slug>/…``), so links can be shared. The
slug is resolved through the caller's visible tenants and ``tenant_access_get``: a tenant the
caller may not see is a 404, whatever it holds. Reading needs any role (support staff read
every tenant); an unsafe method needs admin (members: owner) and is refused with 403 before
the view runs. Views parse, authorize, call a service or selector, and render.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from core.errors import Forbidden, NotFound, TollgateError
from core.timezones import zone_of
from providers.forms import model_facts
from providers.selectors import alias_list, models_available
from tenants import selectors, services
from tenants.access import SUPPORT, Principal, TenantAccess, suspended_message
from tenants.forms import ApiKeyForm, MemberAddForm, MemberRoleForm, TenantSettingsForm
from tenants.models import Membership, Role

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


# --- plumbing shared by every console page --------------------------------------------------


def login_redirect(request: HttpRequest) -> HttpResponse:
    if is_htmx(request):  # a partial must not swap the login page into the page: reload into it
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        page = f"{current.path}?{current.query}" if current.query else (current.path or request.get_full_path())
        response = HttpResponse(status=204)
        response["HX-Redirect"] = redirect_to_login(page, login_url=reverse("login"))["Location"]
        return response
    return redirect_to_login(request.get_full_path(), login_url=reverse("login"))


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "403.html", {"message": message}, status=403)


def tenant_access_for_slug(request: HttpRequest, slug: str) -> TenantAccess:
    """The caller's access to the tenant named ``slug``; Http404 when they may not see it."""
    principal = Principal(user=request.user)
    tenant_id = selectors.tenants_visible(principal=principal).filter(slug=slug).values_list("pk", flat=True).first()
    if tenant_id is None:
        raise Http404(f"Tenant '{slug}' not found.")
    try:
        return selectors.tenant_access_get(principal=principal, tenant_id=tenant_id)
    except (NotFound, Forbidden) as exc:
        raise Http404(exc.message)


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
                raise Http404(exc.message)
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
    ("usage", "Usage", "console-usage"),
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


def form_error(form, exc: TollgateError, *, fields: dict[str, str] | None = None) -> None:
    """Attach a service's error to the form field it names (or to the form as a whole)."""
    field = (fields or {}).get(exc.field or "", exc.field)
    form.add_error(field if field in form.fields else None, exc.message)


# --- login landing and tenant chooser -------------------------------------------------------


def console_home(request: HttpRequest) -> HttpResponse:
    """``/app/``: the only tenant of the caller, or a chooser."""
    if not request.user.is_authenticated:
        return login_redirect(request)
    principal = Principal(user=request.user)
    roles = dict(Membership.objects.filter(user=request.user).values_list("tenant_id", "role"))
    tenants = selectors.tenants_visible(principal=principal).order_by("slug")
    query = request.GET.get("q", "").strip()
    if principal.is_support:
        if query:
            tenants = tenants.filter(Q(slug__icontains=query) | Q(name__icontains=query))
    elif len(roles) == 1:
        return redirect("console-overview", tenants.get().slug)
    rows = [(t, roles.get(t.pk, SUPPORT)) for t in tenants[:200]]
    return render(request, "app/chooser.html", {"rows": rows, "query": query, "is_support": principal.is_support})


# --- LLM settings ---------------------------------------------------------------------------


@tenant_page
def settings_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    tenant = access.tenant
    models = list(models_available(tenant=tenant))
    aliases = list(alias_list(tenant=tenant).order_by("name"))
    if request.method == "POST":
        form = TenantSettingsForm(request.POST, tenant=tenant, models=models, aliases=aliases)
        if form.is_valid():
            try:
                services.tenant_update(tenant=tenant, changes=form.changes(), actor=access.principal)
            except TollgateError as exc:
                form_error(form, exc)
            else:
                messages.success(request, "Settings saved.")
                return redirect("console-settings", tenant.slug)
    else:
        form = TenantSettingsForm(tenant=tenant, models=models, aliases=aliases)
    selected = form["default_model"].value() or ""
    options = [model_facts(m) for m in models]
    return console_render(request, access, "app/settings.html", {
        "form": form, "model_options": options, "aliases": aliases, "selected_model": selected,
        "missing_current": form.missing_current,
    }, section="settings", status=400 if form.errors else 200)


# --- API keys ---------------------------------------------------------------------------------


@tenant_page
def keys_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    tenant = access.tenant
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key, raw = services.api_key_create(
                tenant=tenant, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"],
                expires_at=form.cleaned_data["expires_at"], actor=access.principal,
            )
        except TollgateError as exc:
            form_error(form, exc)
        else:
            response = console_render(request, access, "app/keys/created.html", {"key": key, "raw": raw},
                                      section="keys", status=201)
            response["Cache-Control"] = "no-store"
            return response
    keys = selectors.api_key_list(tenant=tenant)
    return console_render(request, access, "app/keys/list.html", {"form": form, "keys": keys}, section="keys",
                          status=400 if form.errors else 200)


@tenant_page
def key_revoke(request: HttpRequest, access: TenantAccess, key_id: int) -> HttpResponse:
    if request.method != "POST":
        return redirect("console-keys", access.tenant.slug)
    key = selectors.api_key_get(tenant=access.tenant, key_id=key_id)
    key = services.api_key_revoke(key=key, actor=access.principal)
    if is_htmx(request):
        return console_render(request, access, "app/keys/_row.html", {"key": key, "flash": "Revoked."},
                              section="keys")
    messages.success(request, f"Key '{key.name}' ({key.masked}) revoked; it stops working at once.")
    return redirect("console-keys", access.tenant.slug)


# --- members ----------------------------------------------------------------------------------


@tenant_page(change=Role.OWNER)
def members_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    tenant = access.tenant
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.membership_add(
                tenant=tenant, email=form.cleaned_data["email"], role=form.cleaned_data["role"],
                actor=access.principal,
            )
        except TollgateError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"{membership.user.get_username()} added as {membership.role}.")
            return redirect("console-members", tenant.slug)
    members = [(m, MemberRoleForm(initial={"role": m.role}, prefix=f"m{m.pk}"))
               for m in selectors.membership_list(tenant=tenant)]
    return console_render(request, access, "app/members.html", {"form": form, "members": members},
                          section="members", status=400 if form.errors else 200)


@tenant_page(change=Role.OWNER)
def member_role(request: HttpRequest, access: TenantAccess, member_id: int) -> HttpResponse:
    membership = selectors.membership_get(tenant=access.tenant, membership_id=member_id)
    if request.method == "POST":
        form = MemberRoleForm(request.POST, prefix=f"m{membership.pk}")
        if form.is_valid():
            try:
                services.membership_set_role(membership=membership, role=form.cleaned_data["role"],
                                             actor=access.principal)
            except TollgateError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"{membership.user.get_username()} is now {form.cleaned_data['role']}.")
        else:
            messages.error(request, "Choose a role: owner, admin or viewer.")
    return redirect("console-members", access.tenant.slug)


@tenant_page(change=Role.OWNER)
def member_remove(request: HttpRequest, access: TenantAccess, member_id: int) -> HttpResponse:
    membership = selectors.membership_get(tenant=access.tenant, membership_id=member_id)
    if request.method == "POST":
        try:
            services.membership_remove(membership=membership, actor=access.principal)
        except TollgateError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{membership.user.get_username()} removed from '{access.tenant.slug}'.")
    return redirect("console-members", access.tenant.slug)
