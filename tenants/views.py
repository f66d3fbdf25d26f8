"""The tenant console's tenant pages: the chooser (/app/), API keys and members. Views parse,
authorize, call a service or selector, and render; the console's plumbing (``tenant_page``,
``console_render``) is ``tenants.console``. (The LLM settings page, which offers the
providers' models, is ``providers.views.settings_page``; the projects pages and a key's settings
page are ``tenants.project_views``.)
"""

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from core.errors import TollgateError
from core.pages import form_error, is_htmx, login_redirect
from tenants import selectors, services
from tenants.access import SUPPORT, Principal, TenantAccess
from tenants.console import administered_project_ids, console_render, tenant_page
from tenants.forms import ApiKeyForm, MemberAddForm, MemberRoleForm
from tenants.models import Membership, Role

# --- login landing and tenant chooser -------------------------------------------------------


def console_home(request: HttpRequest) -> HttpResponse:
    """``/app/``: the only tenant of the caller, or a chooser (tenants where they have a role,
    in the whole tenant or on some of its projects, with that role or those project roles)."""
    if not request.user.is_authenticated:
        return login_redirect(request)
    principal = Principal(user=request.user)
    roles = dict(Membership.objects.filter(user=request.user).values_list("tenant_id", "role"))
    on_projects: dict[int, list[str]] = {}
    for membership in selectors.project_memberships_of(user=request.user):
        on_projects.setdefault(membership.project.tenant_id, []).append(
            f"project {membership.role} of {membership.project.slug}")
    for tenant_id, project_roles in on_projects.items():
        roles.setdefault(tenant_id, ", ".join(project_roles))
    tenants = selectors.tenants_visible(principal=principal, projects=True).order_by("slug")
    query = request.GET.get("q", "").strip()
    if principal.is_support:
        if query:
            tenants = tenants.filter(Q(slug__icontains=query) | Q(name__icontains=query))
    elif len(roles) == 1:
        return redirect("console-overview", tenants.get().slug)
    rows = [(t, roles.get(t.pk, SUPPORT)) for t in tenants[:200]]
    return render(request, "app/chooser.html", {"rows": rows, "query": query, "is_support": principal.is_support})


# --- API keys ---------------------------------------------------------------------------------


@tenant_page(projects=True)
def keys_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    """The tenant's keys; a project member: their projects' keys, and a project admin creates chat
    keys in the projects they administer (as ``POST /api/keys``)."""
    tenant = access.tenant
    projects = list(selectors.project_list(tenant=tenant, project_ids=administered_project_ids(access)))
    form = ApiKeyForm(request.POST or None, projects=projects, project_only=access.project_roles is not None)
    if request.method == "POST" and form.is_valid():
        try:
            project = (selectors.project_get(tenant=tenant, project=form.cleaned_data["project"],
                                             project_ids=access.project_ids)
                       if form.cleaned_data["project"] else None)
            if project is not None:
                access.require_in_project(project, Role.ADMIN, doing="creating API keys")
            key, raw = services.api_key_create(
                tenant=tenant, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"],
                expires_at=form.cleaned_data["expires_at"], project=project, actor=access.principal,
            )
        except TollgateError as exc:
            form_error(form, exc)
        else:
            response = console_render(request, access, "app/keys/created.html", {"key": key, "raw": raw},
                                      section="keys", status=201)
            response["Cache-Control"] = "no-store"
            return response
    keys = selectors.api_key_list(tenant=tenant, project_ids=access.project_ids)
    return console_render(request, access, "app/keys/list.html", {"form": form, "keys": keys}, section="keys",
                          status=400 if form.errors else 200)


@tenant_page(projects=True)
def key_revoke(request: HttpRequest, access: TenantAccess, key_id: int) -> HttpResponse:
    if request.method != "POST":
        return redirect("console-keys", access.tenant.slug)
    key = selectors.api_key_get(tenant=access.tenant, key_id=key_id, project_ids=access.project_ids)
    access.require_in_project(key.project, Role.ADMIN, doing="revoking API keys")
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
