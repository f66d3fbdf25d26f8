"""Console pages for costs: the overview, budgets and alerts, limit rules, and the usage explorer
(``/app/<slug>/``, ``…/budgets/``, ``…/limits/``, ``…/usage/``). The support pages are in support/views.py.

Every page here also serves members with roles on some projects only, as the REST API does: they
see their projects' budgets, rules and usage, and a project admin changes budgets and rules in
the projects they administer (``target_change_projects``, the services' ``projects``)."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from billing import dashboards, limit_selectors, limit_services, selectors, services
from billing.forms import BudgetForm, LimitRuleForm, UsageFilterForm
from billing.targets import target_change_projects, target_project
from billing.usage_api import usage_csv_response
from billing.usage_selectors import (
    usage_filters_build,
    usage_rows,
    usage_summary,
)
from core.errors import TollgateError
from core.pages import form_error
from providers.selectors import alias_list, models_available, provider_list
from tenants.console import administered_project_ids, console_render, may_change, tenant_page
from tenants.models import Role
from tenants.selectors import api_key_list, project_list

RECENT_ROWS = 25
BREAKDOWN_LIMIT = 100


# --- overview -------------------------------------------------------------------------------------


@tenant_page(projects=True)
def overview_page(request: HttpRequest, access) -> HttpResponse:
    """The tenant's spend and budgets; a project member: their projects, their roles and those
    projects' budgets (the tenant's spend is not theirs to see)."""
    tenant = access.tenant
    if access.project_roles is not None:
        projects = [(p, access.project_roles[p.pk])
                    for p in project_list(tenant=tenant, project_ids=access.project_ids)]
        return console_render(request, access, "app/projects_overview.html", {
            "projects": projects, "bars": dashboards.budget_bars(tenant=tenant, project_ids=access.project_ids),
        }, section="overview")
    return console_render(request, access, "app/overview.html", {
        "overview": dashboards.overview_get(tenant=tenant),
        "bars": dashboards.budget_bars(tenant=tenant),
    }, section="overview")


# --- budgets ----------------------------------------------------------------------------------------


MODEL_CHOICES = 500


def _model_names(access) -> list[str]:
    """What a budget's or limit rule's model field suggests: the aliases the caller sees, then the tenant's
    models."""
    tenant = access.tenant
    names = list(alias_list(tenant=tenant, project_ids=access.project_ids).order_by("name")
                 .values_list("name", flat=True)[:MODEL_CHOICES])
    names += [f"{pm.provider.name}:{pm.model_id}" for pm in models_available(tenant=tenant)[:MODEL_CHOICES]]
    return list(dict.fromkeys(names))[:MODEL_CHOICES]


@tenant_page(projects=True)
def budgets_page(request: HttpRequest, access) -> HttpResponse:
    tenant = access.tenant
    return console_render(request, access, "app/budgets/list.html", {
        "bars": dashboards.budget_bars(tenant=tenant, project_ids=access.project_ids),
        "alerts": dashboards.alerts_recent(tenant=tenant, project_ids=access.project_ids),
    }, section="budgets")


def _budget_form(request, access, budget=None) -> BudgetForm:
    """The form offers the keys and projects the caller administers (a tenant admin: all). The
    downgrade aliases are the tenant-wide ones for everyone: a budget downgrades to one of those
    only (the service refuses a project's alias, naming the tenant-wide ones, over the API too)."""
    administered = administered_project_ids(access)
    keys = list(api_key_list(tenant=access.tenant, project_ids=administered))
    aliases = list(alias_list(tenant=access.tenant).filter(project__isnull=True).order_by("name"))
    return BudgetForm(request.POST if request.method == "POST" else None, keys=keys, aliases=aliases,
                      projects=list(project_list(tenant=access.tenant, project_ids=administered)), budget=budget)


@tenant_page(projects=True)
def budget_new(request: HttpRequest, access) -> HttpResponse:
    form = _budget_form(request, access)
    if request.method == "POST" and form.is_valid():
        projects = access.administered_projects(doing="creating budgets")
        try:
            budget = services.budget_create(tenant=access.tenant, data=form.service_data(), actor=access.principal,
                                            projects=projects)
        except TollgateError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"Budget '{budget.name}' created.")
            return redirect("console-budgets", access.tenant.slug)
    return console_render(request, access, "app/budgets/form.html", {
        "form": form, "budget": None, "can_edit": may_change(access), "model_names": _model_names(access),
    }, section="budgets", status=400 if form.errors else 200)


@tenant_page(projects=True)
def budget_edit(request: HttpRequest, access, budget_id: int) -> HttpResponse:
    budget = selectors.budget_get(tenant=access.tenant, budget_id=budget_id, project_ids=access.project_ids)
    form = _budget_form(request, access, budget)
    if request.method == "POST":
        projects = target_change_projects(access, budget, doing="changing budgets", what="Budget")
    if request.method == "POST" and form.is_valid():
        try:
            services.budget_update(budget=budget, data=form.service_data(), actor=access.principal, projects=projects)
        except TollgateError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"Budget '{form.cleaned_data['name']}' saved.")
            return redirect("console-budgets", access.tenant.slug)
    budget.tenant = access.tenant
    return console_render(request, access, "app/budgets/form.html", {
        "form": form, "budget": budget, "status": selectors.budget_status(tenant=access.tenant, budget=budget),
        "can_edit": access.can_in_project(target_project(budget), Role.ADMIN),
        "alerts": dashboards.alerts_recent(tenant=access.tenant, budget=budget),
        "model_names": _model_names(access),
    }, section="budgets", status=400 if form.errors else 200)


@tenant_page(projects=True)
def budget_delete(request: HttpRequest, access, budget_id: int) -> HttpResponse:
    budget = selectors.budget_get(tenant=access.tenant, budget_id=budget_id, project_ids=access.project_ids)
    if request.method == "POST":
        target_change_projects(access, budget, doing="deleting budgets", what="Budget")
        budget.tenant = access.tenant
        services.budget_delete(budget=budget, actor=access.principal)
        messages.success(request, f"Budget '{budget.name}' and its alert history deleted.")
    return redirect("console-budgets", access.tenant.slug)


# --- limit rules ------------------------------------------------------------------------------------


@tenant_page(projects=True)
def limits_page(request: HttpRequest, access) -> HttpResponse:
    tenant = access.tenant
    rules = [(rule, limit_selectors.limit_rule_text(rule))
             for rule in limit_selectors.limit_rule_list(tenant=tenant, project_ids=access.project_ids)
             .order_by("scope", "pk")]
    return console_render(request, access, "app/limits/list.html", {"rules": rules}, section="limits")


def _limit_form(request, access, rule=None) -> LimitRuleForm:
    """The form offers the keys and projects the caller administers (a tenant admin: all)."""
    tenant, administered = access.tenant, administered_project_ids(access)
    return LimitRuleForm(request.POST if request.method == "POST" else None,
                         keys=list(api_key_list(tenant=tenant, project_ids=administered)),
                         projects=list(project_list(tenant=tenant, project_ids=administered)), rule=rule)


@tenant_page(projects=True)
def limit_new(request: HttpRequest, access) -> HttpResponse:
    form = _limit_form(request, access)
    if request.method == "POST" and form.is_valid():
        projects = access.administered_projects(doing="creating limit rules")
        try:
            rule = limit_services.limit_rule_create(tenant=access.tenant, data=form.service_data(),
                                                    actor=access.principal, projects=projects)
        except TollgateError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"Limit rule for {limit_selectors.limit_rule_text(rule)} created.")
            return redirect("console-limits", access.tenant.slug)
    return console_render(request, access, "app/limits/form.html", {
        "form": form, "rule": None, "can_edit": may_change(access), "model_names": _model_names(access),
    }, section="limits", status=400 if form.errors else 200)


@tenant_page(projects=True)
def limit_edit(request: HttpRequest, access, rule_id: int) -> HttpResponse:
    rule = limit_selectors.limit_rule_get(tenant=access.tenant, rule_id=rule_id, project_ids=access.project_ids)
    form = _limit_form(request, access, rule)
    if request.method == "POST":
        projects = target_change_projects(access, rule, doing="changing limit rules", what="Limit rule")
    if request.method == "POST" and form.is_valid():
        try:
            rule = limit_services.limit_rule_update(rule=rule, data=form.service_data(), actor=access.principal,
                                                    projects=projects)
        except TollgateError as exc:
            form_error(form, exc)
        else:
            messages.success(request, "Limit rule saved.")
            return redirect("console-limits", access.tenant.slug)
    return console_render(request, access, "app/limits/form.html", {
        "form": form, "rule": rule, "text": limit_selectors.limit_rule_text(rule),
        "can_edit": access.can_in_project(target_project(rule), Role.ADMIN),
        "model_names": _model_names(access),
    }, section="limits", status=400 if form.errors else 200)


@tenant_page(projects=True)
def limit_delete(request: HttpRequest, access, rule_id: int) -> HttpResponse:
    rule = limit_selectors.limit_rule_get(tenant=access.tenant, rule_id=rule_id, project_ids=access.project_ids)
    if request.method == "POST":
        target_change_projects(access, rule, doing="deleting limit rules", what="Limit rule")
        text = limit_selectors.limit_rule_text(rule)
        rule.tenant = access.tenant
        limit_services.limit_rule_delete(rule=rule, actor=access.principal)
        messages.success(request, f"Limit rule for {text} deleted.")
    return redirect("console-limits", access.tenant.slug)


# --- usage explorer -----------------------------------------------------------------------------------


def _usage_filters(request, access):
    """The bound filter form and the resolved filters (None when the form has errors)."""
    tenant = access.tenant
    form = UsageFilterForm(request.GET, providers=provider_list(tenant=tenant),
                           keys=api_key_list(tenant=tenant, project_ids=access.project_ids),
                           projects=project_list(tenant=tenant, project_ids=access.project_ids))
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    try:
        filters = usage_filters_build(
            tenant=tenant, since=data["since"], until=data["until"], model=data["model"],
            provider=data["provider"], key_id=data["key"], statuses=tuple(data["status"]),
            conversation=data["conversation"].strip(), apis=tuple(data["api"]), project=data["project"],
            visible_projects=access.project_ids,
        )
    except TollgateError as exc:
        form_error(form, exc, fields={"status": "status", "key": "key", "since": "since", "api": "api",
                                      "project": "project"})
        return form, None
    return form, filters


@tenant_page(projects=True)
def usage_page(request: HttpRequest, access) -> HttpResponse:
    tenant = access.tenant
    form, filters = _usage_filters(request, access)
    context = {"form": form, "filters": filters}
    if filters is not None:
        view, by = form.cleaned_data["view"], form.cleaned_data["by"]
        series = usage_summary(tenant=tenant, group_by=view, filters=filters)
        breakdown = usage_summary(tenant=tenant, group_by=by, filters=filters, limit=BREAKDOWN_LIMIT)
        for metrics in (series.totals, *series.groups, *breakdown.groups):
            metrics.error_percent = f"{metrics.error_rate * 100:.1f} %"
        context.update({
            "view": view, "by": by, "series": series,
            "breakdown": breakdown,
            "token_chart": _token_chart(series),
            "recent": usage_rows(tenant=tenant, filters=filters)
            .select_related("provider_model__provider", "api_key")[:RECENT_ROWS],
            "query": request.GET.urlencode(),
            "breakdown_tabs": [(value, label, _with(request, by=value))
                               for value, label in form.fields["by"].choices],
            "view_tabs": [(value, label, _with(request, view=value)) for value, label in form.fields["view"].choices],
        })
    return console_render(request, access, "app/usage.html", context, section="usage",
                          status=400 if form.errors else 200)


def _with(request, **changes) -> str:
    query = request.GET.copy()
    for name, value in changes.items():
        query[name] = value
    return query.urlencode()


def _token_chart(series) -> dict:
    groups = series.groups
    return {
        "labels": [g.label for g in groups],
        "datasets": [
            {"label": "Input (not cached)", "data": [max(g.input_tokens - g.cached_input_tokens, 0) for g in groups]},
            {"label": "Cached input", "data": [g.cached_input_tokens for g in groups]},
            {"label": "Output", "data": [g.output_tokens for g in groups]},
        ],
        "unit": "tokens",
    }


@tenant_page(projects=True)
def usage_export(request: HttpRequest, access) -> HttpResponse:
    form, filters = _usage_filters(request, access)
    if filters is None:
        return console_render(request, access, "app/usage.html", {"form": form, "filters": None},
                              section="usage", status=400)
    return usage_csv_response(request, tenant=access.tenant, filters=filters)  # streams under ASGI too
