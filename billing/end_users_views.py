"""The console's end-users page (``/app/<slug>/end-users/``): the top end users of a period
with their status, the blocks, and blocking / unblocking. Views parse, authorize (the
``tenant_page`` decorator: reading needs any role, a POST needs admin), call a service or
selector, and render. A member with roles on some projects only sees those projects' end users
and blocks, and a project admin blocks and unblocks in their projects only (as the REST API)."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse

from billing.end_users import (
    PERIODS,
    blocked_end_users,
    end_user_block,
    end_user_block_get,
    end_user_unblock,
    top_end_users,
)
from billing.end_users_forms import EndUserBlockForm, EndUserFilterForm
from core.errors import Forbidden, TollgateError
from tenants.console import administered_project_ids, console_render, tenant_page
from tenants.models import Role
from tenants.selectors import project_get, project_list

TOP_ROWS = 100
BLOCKS_SHOWN = 500


def _block_form(access, data=None, visible=None) -> EndUserBlockForm:
    """Offers the projects the caller administers; "every project" for a tenant role only.
    ``visible``: the caller's projects when already read (those it administers are among them)."""
    administered = administered_project_ids(access)
    if visible is None:
        projects = list(project_list(tenant=access.tenant, project_ids=administered))
    else:
        projects = [p for p in visible if administered is None or p.pk in administered]
    return EndUserBlockForm(data, projects=projects, every_project=administered is None)


@tenant_page(projects=True)
def end_users_page(request: HttpRequest, access) -> HttpResponse:
    tenant = access.tenant
    projects = list(project_list(tenant=tenant, project_ids=access.project_ids))
    form = EndUserFilterForm(request.GET, projects=projects)
    context = {"form": form, "block_form": _block_form(access, visible=projects), "projects": projects,
               "query": request.GET.urlencode(),
               "blocks": blocked_end_users(tenant=tenant, project_ids=access.project_ids)[:BLOCKS_SHOWN]}
    if form.is_valid():
        data = form.cleaned_data
        project = (project_get(tenant=tenant, project=data["project"], project_ids=access.project_ids)
                   if data["project"] else None)
        top = top_end_users(tenant=tenant, period=data["period"], project=project, search=data["search"],
                            limit=TOP_ROWS, project_ids=access.project_ids)
        context.update({"top": top, "period_label": PERIODS[top.period], "limit": TOP_ROWS})
    return console_render(request, access, "app/end_users.html", context, section="end_users",
                          status=400 if form.errors else 200)


def _back(request: HttpRequest, slug: str):
    """Back to the page with the filters it was posted from (only a query string is taken)."""
    query = QueryDict(request.POST.get("back", "")).urlencode()
    url = reverse("console-end-users", args=[slug])
    return redirect(f"{url}?{query}" if query else url)


@tenant_page(projects=True)
def end_user_block_add(request: HttpRequest, access) -> HttpResponse:
    tenant = access.tenant
    if request.method == "POST":
        form = _block_form(access, request.POST)
        if not form.is_valid():
            messages.error(request, " ".join(f"{form.fields[name].label if name in form.fields else ''}: "
                                             f"{' '.join(errors)}" for name, errors in form.errors.items()))
            return _back(request, tenant.slug)
        data = form.cleaned_data
        try:
            project = (project_get(tenant=tenant, project=data["project"], project_ids=access.project_ids)
                       if data["project"] else None)
            if project is None:
                access.require(Role.ADMIN, doing="blocking end users in every project")
            else:
                access.require_in_project(project, Role.ADMIN, doing="blocking end users")
            block, created = end_user_block(tenant=tenant, end_user=data["end_user"], project=project,
                                            reason=data["reason"], actor=access.principal)
        except Forbidden:
            raise  # the 403 page (tenant_page)
        except TollgateError as exc:
            messages.error(request, exc.message)
        else:
            where = f"in project '{project.slug}'" if project else "in every project"
            messages.success(request, f"End user '{block.end_user}' {'blocked' if created else 'was already blocked'} "
                                      f"{where}; their requests are refused (403 end_user_blocked).")
    return _back(request, tenant.slug)


@tenant_page(projects=True)
def end_user_block_remove(request: HttpRequest, access, block_id: int) -> HttpResponse:
    block = end_user_block_get(tenant=access.tenant, block_id=block_id, project_ids=access.project_ids)
    if request.method == "POST":
        if block.project is None:
            access.require(Role.ADMIN, doing="unblocking end users")
        else:
            access.require_in_project(block.project, Role.ADMIN, doing="unblocking end users")
        end_user_unblock(block=block, actor=access.principal)
        where = f"in project '{block.project.slug}'" if block.project_id else "in every project"
        messages.success(request, f"End user '{block.end_user}' unblocked {where}.")
    return _back(request, access.tenant.slug)
