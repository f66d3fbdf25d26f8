"""The console's projects pages (``/app/<slug>/projects/``) and a key's settings page
(``/app/<slug>/keys/<id>/``). The same services and permissions as the REST API
(``/api/projects``, ``/api/projects/{p}/members``, ``PATCH /api/keys/{id}``): tenant admins create,
change and delete projects, tenant owners manage project roles, every member reads; a project
member reads their projects (others are 404s) and a project admin changes their projects' keys'
limits. Views parse, authorize, call a service or selector, and render."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from core.errors import TollgateError
from core.pages import form_error
from tenants import selectors, services
from tenants.access import TenantAccess
from tenants.console import console_render, tenant_page
from tenants.forms import ApiKeyLimitsForm, ProjectForm, ProjectMemberAddForm, ProjectMemberRoleForm
from tenants.models import Role


@tenant_page(projects=True)
def projects_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    """The projects the caller sees, with their limits and keys; tenant admins create them here."""
    tenant = access.tenant
    form = ProjectForm(request.POST or None)
    if request.method == "POST":
        access.require(Role.ADMIN, doing="creating projects")
        if form.is_valid():
            changes = form.changes()
            try:
                project = services.project_create(tenant=tenant, slug=form.cleaned_data["slug"],
                                                  name=changes.pop("name"), actor=access.principal, **changes)
            except TollgateError as exc:
                form_error(form, exc)
            else:
                messages.success(request, f"Project '{project.slug}' created.")
                return redirect("console-project", tenant.slug, project.slug)
    projects = selectors.project_list_with_key_counts(tenant=tenant, project_ids=access.project_ids)
    rows = [(p, _role_on(access, p.pk)) for p in projects]
    return console_render(request, access, "app/projects/list.html", {"form": form, "rows": rows},
                          section="projects", status=400 if form.errors else 200)


def _role_on(access: TenantAccess, project_id: int) -> str:
    """The caller's role on a project, as the REST API's ``role``."""
    return access.role if access.project_roles is None else access.project_roles.get(project_id, "")


@tenant_page(projects=True)
def project_page(request: HttpRequest, access: TenantAccess, project_slug: str) -> HttpResponse:
    """One project: its settings (tenant admins change them) and its members (tenant owners manage them)."""
    tenant = access.tenant
    project = selectors.project_get(tenant=tenant, project=project_slug, project_ids=access.project_ids)
    form = ProjectForm(request.POST or None, project=project)
    if request.method == "POST":
        access.require(Role.ADMIN, doing="changing projects")
        if form.is_valid():
            try:
                services.project_update(project=project, changes=form.changes(), actor=access.principal)
            except TollgateError as exc:
                form_error(form, exc)
            else:
                messages.success(request, f"Project '{project.slug}' saved.")
                return redirect("console-project", tenant.slug, project.slug)
    return _project_render(request, access, project, form=form, member_form=ProjectMemberAddForm())


def _project_render(request, access: TenantAccess, project, *, form, member_form) -> HttpResponse:
    counted = selectors.project_list_with_key_counts(tenant=access.tenant).get(pk=project.pk)
    members = [(m, ProjectMemberRoleForm(initial={"role": m.role}, prefix=f"m{m.pk}"))
               for m in selectors.project_membership_list(project=project)]
    return console_render(request, access, "app/projects/detail.html", {
        "project": counted, "form": form, "member_form": member_form, "members": members,
        "role": _role_on(access, project.pk), "can_edit": access.can(Role.ADMIN), "is_owner": access.can(Role.OWNER),
    }, section="projects", status=400 if form.errors or member_form.errors else 200)


@tenant_page(projects=True)
def project_delete(request: HttpRequest, access: TenantAccess, project_slug: str) -> HttpResponse:
    project = selectors.project_get(tenant=access.tenant, project=project_slug, project_ids=access.project_ids)
    if request.method != "POST":
        return redirect("console-project", access.tenant.slug, project.slug)
    access.require(Role.ADMIN, doing="deleting projects")
    try:
        services.project_delete(project=project, actor=access.principal)
    except TollgateError as exc:
        messages.error(request, exc.message)
        return redirect("console-project", access.tenant.slug, project.slug)
    messages.success(request, f"Project '{project.slug}' deleted.")
    return redirect("console-projects", access.tenant.slug)


@tenant_page(change=Role.OWNER, projects=True)
def project_member_add(request: HttpRequest, access: TenantAccess, project_slug: str) -> HttpResponse:
    project = selectors.project_get(tenant=access.tenant, project=project_slug, project_ids=access.project_ids)
    if request.method != "POST":
        return redirect("console-project", access.tenant.slug, project.slug)
    access.require(Role.OWNER, doing="managing members")
    member_form = ProjectMemberAddForm(request.POST)
    if member_form.is_valid():
        try:
            membership = services.project_member_add(project=project, email=member_form.cleaned_data["email"],
                                                     role=member_form.cleaned_data["role"], actor=access.principal)
        except TollgateError as exc:
            form_error(member_form, exc)
        else:
            messages.success(request, f"{membership.user.get_username()} is now {membership.role} of project "
                                      f"'{project.slug}'.")
            return redirect("console-project", access.tenant.slug, project.slug)
    return _project_render(request, access, project, form=ProjectForm(project=project), member_form=member_form)


@tenant_page(change=Role.OWNER, projects=True)
def project_member_role(request: HttpRequest, access: TenantAccess, project_slug: str,
                        member_id: int) -> HttpResponse:
    project = selectors.project_get(tenant=access.tenant, project=project_slug, project_ids=access.project_ids)
    membership = selectors.project_membership_get(project=project, membership_id=member_id)
    if request.method == "POST":
        access.require(Role.OWNER, doing="managing members")
        form = ProjectMemberRoleForm(request.POST, prefix=f"m{membership.pk}")
        if form.is_valid():
            try:
                services.project_member_set_role(membership=membership, role=form.cleaned_data["role"],
                                                 actor=access.principal)
            except TollgateError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"{membership.user.get_username()} is now {form.cleaned_data['role']} "
                                          f"of project '{project.slug}'.")
        else:
            messages.error(request, "Choose a project role: admin or viewer.")
    return redirect("console-project", access.tenant.slug, project.slug)


@tenant_page(change=Role.OWNER, projects=True)
def project_member_remove(request: HttpRequest, access: TenantAccess, project_slug: str,
                          member_id: int) -> HttpResponse:
    project = selectors.project_get(tenant=access.tenant, project=project_slug, project_ids=access.project_ids)
    membership = selectors.project_membership_get(project=project, membership_id=member_id)
    if request.method == "POST":
        access.require(Role.OWNER, doing="managing members")
        services.project_member_remove(membership=membership, actor=access.principal)
        messages.success(request, f"{membership.user.get_username()} no longer has a role on project "
                                  f"'{project.slug}'.")
    return redirect("console-project", access.tenant.slug, project.slug)


# --- one key's settings ---------------------------------------------------------------------------


@tenant_page(projects=True)
def key_page(request: HttpRequest, access: TenantAccess, key_id: int) -> HttpResponse:
    """A key's facts and its own limits; those change as ``PATCH /api/keys/{id}`` changes them (tenant
    admins, or a project admin of the key's project)."""
    key = selectors.api_key_get(tenant=access.tenant, key_id=key_id, project_ids=access.project_ids)
    form = ApiKeyLimitsForm(request.POST or None, key=key)
    if request.method == "POST":
        access.require_in_project(key.project, Role.ADMIN, doing="changing API keys")
        if form.is_valid():
            try:
                services.api_key_limits_update(key=key, changes=form.changes(), actor=access.principal)
            except TollgateError as exc:
                form_error(form, exc)
            else:
                messages.success(request, f"Limits of key '{key.name}' ({key.masked}) saved.")
                return redirect("console-key", access.tenant.slug, key.pk)
    return console_render(request, access, "app/keys/detail.html", {
        "key": key, "form": form, "can_edit": access.can_in_project(key.project_id, Role.ADMIN),
    }, section="keys", status=400 if form.errors else 200)
