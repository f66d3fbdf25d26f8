"""Console pages for providers, models and aliases (``/app/<slug>/providers|models|aliases``),
and the tenant's LLM settings (``/app/<slug>/settings/``), whose default model is one of them.

Platform providers are read-only here (staff manage them in the Django admin) and show only
their name, type, status and models (no base URL, key hint or sync error); a tenant's own
providers show their key as a mask (``sk-…abcd``) only.
"Test connection" and "Sync now" are htmx POSTs answered with a small result partial. The
aliases page adds each deployment's live traffic, read from Redis (selectors.deployment_traffic)."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from core.errors import Forbidden, TollgateError
from core.pages import form_error, is_htmx
from providers import selectors, services
from providers.crypto import mask
from providers.default_models import defaults_dangling
from providers.forms import (
    MAX_TARGETS,
    AliasForm,
    ConnectionTestForm,
    ModelFilterForm,
    ProviderForm,
    TargetFormSet,
    model_facts,
    target_initial,
    targets_from,
)
from providers.models import ModelMode, Provider, ProviderType
from providers.sync import connection_test, provider_sync
from providers.traffic import Traffic
from tenants.access import TenantAccess
from tenants.console import administered_project_ids, console_render, may_change, tenant_page
from tenants.forms import TenantSettingsForm
from tenants.models import Role
from tenants.selectors import project_get, project_list
from tenants.services import tenant_update

CONNECTION_TEST_TIMEOUT = 10.0  # seconds, as the REST API's connection test
MODELS_PER_PAGE = 100


def _own_provider(access: TenantAccess, provider_id: int) -> Provider:
    """A provider of this tenant that the caller may change (platform ones are refused)."""
    provider = selectors.provider_get(tenant=access.tenant, provider_id=provider_id)
    if provider.owner_id is None:
        raise Forbidden("Platform providers are managed by Tollgate staff; they are read-only here.")
    return provider


def _provider_row(provider: Provider) -> dict:
    return {"provider": provider, "own": provider.owner_id is not None,
            "key_hint": mask(provider.api_key) if provider.owner_id is not None else "",
            "header_names": sorted(provider.extra_headers or {}) if provider.owner_id is not None else []}


# --- the tenant's LLM settings --------------------------------------------------------------------


@tenant_page
def settings_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    """The tenant's name, time zone, default model and limits (``TenantSettingsForm``, saved by
    ``tenant_update``). It lives here, not in tenants, because the default model is chosen
    from this app's models and aliases; tenants imports nothing above core."""
    tenant = access.tenant
    models = list(selectors.models_available(tenant=tenant))
    # The tenant's default model is every key's: a project's alias would be unknown to the others.
    aliases = list(selectors.alias_list(tenant=tenant).filter(project__isnull=True).order_by("name"))
    embedding_models = [m for m in models if m.mode == ModelMode.EMBEDDING]
    if request.method == "POST":
        form = TenantSettingsForm(request.POST, tenant=tenant, models=models, aliases=aliases,
                                  embedding_models=embedding_models)
        if form.is_valid():
            try:
                tenant_update(tenant=tenant, changes=form.changes(), actor=access.principal)
            except TollgateError as exc:
                form_error(form, exc)
            else:
                messages.success(request, "Settings saved.")
                return redirect("console-settings", tenant.slug)
    else:
        form = TenantSettingsForm(tenant=tenant, models=models, aliases=aliases, embedding_models=embedding_models)
    selected = form["default_model"].value() or ""
    options = [model_facts(m) for m in models]
    return console_render(request, access, "app/settings.html", {
        "form": form, "model_options": options, "aliases": aliases, "selected_model": selected,
        "missing_current": form.missing_current, "dangling": defaults_dangling(tenant=tenant),
    }, section="settings", status=400 if form.errors else 200)


# --- providers ------------------------------------------------------------------------------------


@tenant_page
def providers_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    rows = [_provider_row(p) for p in selectors.provider_list(tenant=access.tenant)]
    return console_render(request, access, "app/providers/list.html", {"rows": rows}, section="providers")


@tenant_page
def provider_new(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    form = ProviderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            provider = services.provider_create(owner=access.tenant, data=form.service_data(), actor=access.principal)
        except TollgateError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"Provider '{provider.name}' added. Sync it to load its models.")
            return redirect("console-providers", access.tenant.slug)
    return console_render(request, access, "app/providers/form.html", {"form": form, "provider": None},
                          section="providers", status=400 if form.errors else 200)


@tenant_page
def provider_edit(request: HttpRequest, access: TenantAccess, provider_id: int) -> HttpResponse:
    provider = selectors.provider_get(tenant=access.tenant, provider_id=provider_id)
    if provider.owner_id is None:
        if request.method != "GET":
            raise Forbidden("Platform providers are managed by Tollgate staff; they are read-only here.")
        return console_render(request, access, "app/providers/platform.html", {"provider": provider},
                              section="providers")
    form = ProviderForm(request.POST or None, provider=provider)
    if request.method == "POST" and form.is_valid():
        try:
            services.provider_update(provider=provider, data=form.service_data(), actor=access.principal)
        except TollgateError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"Provider '{form.cleaned_data['name']}' saved.")
            return redirect("console-providers", access.tenant.slug)
    return console_render(request, access, "app/providers/form.html", {
        "form": form, "provider": provider, **_provider_row(provider),
    }, section="providers", status=400 if form.errors else 200)


@tenant_page
def provider_delete(request: HttpRequest, access: TenantAccess, provider_id: int) -> HttpResponse:
    provider = _own_provider(access, provider_id)
    if request.method == "POST":
        try:
            services.provider_delete(provider=provider, actor=access.principal)
        except TollgateError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Provider '{provider.name}' and its models deleted.")
    return redirect("console-providers", access.tenant.slug)


@tenant_page
def provider_sync_now(request: HttpRequest, access: TenantAccess, provider_id: int) -> HttpResponse:
    """Sync the catalog now; answers the result partial (htmx) or goes back to the list."""
    provider = _own_provider(access, provider_id)
    if request.method != "POST":
        return redirect("console-providers", access.tenant.slug)
    result, error = None, ""
    try:
        result = provider_sync(provider=provider)
    except TollgateError as exc:
        error = exc.message
    except Exception as exc:  # recorded on the provider by provider_sync; said in words here
        error = f"The sync failed unexpectedly ({type(exc).__name__}); see the provider's last error."
    provider = selectors.provider_get(tenant=access.tenant, provider_id=provider_id)
    if not is_htmx(request):
        if error:
            messages.error(request, f"Sync of '{provider.name}' failed: {error}")
        else:
            messages.success(request, f"Synced '{provider.name}': {result.added} added, {result.updated} updated, "
                                      f"{result.stale} stale, {result.unchanged} unchanged.")
        return redirect("console-providers", access.tenant.slug)
    return console_render(request, access, "app/providers/_sync_result.html",
                          {"provider": provider, "result": result, "error": error}, section="providers")


@tenant_page
def provider_test(request: HttpRequest, access: TenantAccess, provider_id: int | None = None) -> HttpResponse:
    """Try the URL and key in the form without saving. On an existing provider an empty key
    field means "the saved key" (and the saved headers), for the saved base URL only."""
    saved = _own_provider(access, provider_id) if provider_id is not None else None
    form = ConnectionTestForm(request.POST or None)
    report, error = None, ""
    if request.method != "POST":
        error = "Send the form to test the connection."
    elif not form.is_valid():
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
    else:
        data = form.cleaned_data
        try:
            probe = services.provider_probe(
                saved=saved, base_url=data["base_url"], provider_type=data["provider_type"], preset=data["preset"],
                api_key=data["api_key"], extra_headers=data["extra_headers"],
                timeout_seconds=CONNECTION_TEST_TIMEOUT, options=data["options"],
            )
            report = connection_test(provider=probe)
        except TollgateError as exc:
            error = exc.message
    type_label = ""
    if report is not None and report.provider_type in ProviderType.values:
        type_label = ProviderType(report.provider_type).label
    return console_render(request, access, "app/providers/_test_result.html",
                          {"report": report, "error": error, "type_label": type_label}, section="providers")


# --- models -----------------------------------------------------------------------------------------


@tenant_page
def models_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    """Every model of the providers this tenant can see, with search and capability filters.
    One query per provider (a tenant has a handful)."""
    providers = list(selectors.provider_list(tenant=access.tenant))
    form = ModelFilterForm(request.GET or None, providers=providers)
    filters = form.cleaned_data if form.is_valid() else {}
    rows = []
    for provider in providers:
        if filters.get("provider") and provider.name != filters["provider"]:
            continue
        models = selectors.provider_model_list(provider=provider, tenant=access.tenant)
        if filters.get("q"):
            models = models.filter(Q(model_id__icontains=filters["q"]) | Q(display_name__icontains=filters["q"]))
        if filters.get("tools"):
            models = models.filter(supports_tools=True)
        if filters.get("vision"):
            models = models.filter(supports_vision=True)
        if filters.get("embedding"):
            models = models.filter(mode=ModelMode.EMBEDDING)
        if not filters.get("stale"):
            models = models.filter(stale=False)
        if filters.get("enabled") == "on":
            models = models.filter(tenant_enabled=True)
        elif filters.get("enabled") == "off":
            models = models.filter(tenant_enabled=False)
        for model in models:
            model.provider = provider
            rows.append(_model_row(model))
    page = Paginator(rows, MODELS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return console_render(request, access, "app/models/list.html", {
        "form": form, "page": page, "total": len(rows), "query": query.urlencode(),
    }, section="models")


def _model_row(model) -> dict:
    provider = model.provider
    return {**model_facts(model), "provider": provider, "platform": provider.owner_id is None,
            "usable": bool(model.tenant_enabled) and model.enabled and not model.stale and provider.enabled}


@tenant_page
def model_toggle(request: HttpRequest, access: TenantAccess, provider_id: int, model_id: str) -> HttpResponse:
    """Enable or disable a model for this tenant (a platform model: the tenant's own choice)."""
    provider = selectors.provider_get(tenant=access.tenant, provider_id=provider_id)
    model = selectors.provider_model_get(provider=provider, tenant=access.tenant, model_id=model_id)
    if request.method != "POST":
        return redirect("console-models", access.tenant.slug)
    enabled = request.POST.get("enabled") == "1"
    error = ""
    try:
        services.provider_model_set_enabled(provider_model=model, tenant=access.tenant, enabled=enabled,
                                            actor=access.principal)
    except TollgateError as exc:
        error = exc.message
    model = selectors.provider_model_get(provider=provider, tenant=access.tenant, model_id=model_id)
    model.provider = provider
    if is_htmx(request):
        return console_render(request, access, "app/models/_row.html", {"row": _model_row(model), "error": error},
                              section="models")
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"{provider.name}:{model_id} {'enabled' if enabled else 'disabled'}.")
    back = request.POST.get("next", "")
    models_url = reverse("console-models", args=[access.tenant.slug])
    return redirect(back if back.startswith(models_url) else models_url)


# --- aliases ----------------------------------------------------------------------------------------


TRAFFIC_UNKNOWN = {
    "no-redis": "Live traffic is not shown: without Redis (REDIS_URL unset) each gateway worker keeps its own "
                "counters.",
    "redis-down": "Live traffic is not shown: Redis cannot be reached right now.",
}


def _deployment_rows(targets, traffic: dict[int, Traffic] | None) -> list[dict]:
    """What the aliases page shows of each deployment: its settings, and when the traffic is
    known its share of the alias's requests in the last hour, this minute against its limits,
    in flight, latency and cooldown."""
    if traffic is None:
        return [{"target": t, "traffic": None} for t in targets]
    seen = {t.provider_model_id: traffic.get(t.provider_model_id) for t in targets}
    total = sum(now.requests_hour for now in seen.values() if now is not None)
    rows = []
    for t in targets:
        now = seen[t.provider_model_id]
        if now is None:
            rows.append({"target": t, "traffic": None})
            continue
        rows.append({
            "target": t, "traffic": now,
            "share": 100 * now.requests_hour / total if total else None,
            "at_rpm": bool(t.rpm_limit) and now.requests_minute >= t.rpm_limit,
            "at_tpm": bool(t.tpm_limit) and now.tokens_minute >= t.tpm_limit,
        })
    return rows


@tenant_page(projects=True)
def aliases_page(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    """Every alias with its deployments' traffic; ``?project=<slug>`` one project's, ``?project=-``
    the tenant-wide ones. A project member: their projects' aliases only (as ``GET /api/aliases``)."""
    projects = list(project_list(tenant=access.tenant, project_ids=access.project_ids))
    chosen = request.GET.get("project", "")
    aliases = selectors.alias_list(tenant=access.tenant, project_ids=access.project_ids)
    if chosen == "-":
        aliases = aliases.filter(project__isnull=True)
    elif chosen:
        aliases = aliases.filter(project=project_get(tenant=access.tenant, project=chosen,
                                                     project_ids=access.project_ids))
    aliases = list(aliases.order_by("project__slug", "name"))
    targets = {a.pk: sorted(a.targets.all(), key=lambda t: t.position) for a in aliases}
    traffic = selectors.deployment_traffic(
        tenant=access.tenant, provider_model_ids=[t.provider_model_id for ts in targets.values() for t in ts])
    known = None if traffic.unknown else traffic.by_model
    rows = [{"alias": a, "deployments": _deployment_rows(targets[a.pk], known)} for a in aliases]
    return console_render(request, access, "app/aliases/list.html", {
        "rows": rows, "traffic_note": TRAFFIC_UNKNOWN.get(traffic.unknown, ""), "projects": projects,
        "chosen_project": chosen,
    }, section="aliases")


def _model_choices(access: TenantAccess, alias=None) -> list[tuple[str, str]]:
    choices = [(f"{m.provider.name}:{m.model_id}", f"{m.provider.name}:{m.model_id}")
               for m in selectors.models_available(tenant=access.tenant)]
    known = {value for value, _ in choices}
    if alias is not None:  # targets that are not usable now stay visible (and are reported on save)
        for target in alias.targets.all():
            value = f"{target.provider_model.provider.name}:{target.provider_model.model_id}"
            if value not in known:
                choices.append((value, f"{value} (not available now)"))
                known.add(value)
    return choices


def _alias_form(request, access: TenantAccess, alias=None):
    """The project select offers the projects the caller administers (a tenant admin: all, and
    tenant-wide); an alias's own project stays in it, so its form shows it."""
    choices = _model_choices(access, alias)
    administered = administered_project_ids(access)
    if administered is not None and alias is not None and alias.project_id is not None:
        administered = administered | {alias.project_id}
    projects = list(project_list(tenant=access.tenant, project_ids=administered))
    tenant_wide = administered is None
    if request.method == "POST":
        form = AliasForm(request.POST, projects=projects, tenant_wide=tenant_wide)
        formset = TargetFormSet(request.POST, prefix="targets", form_kwargs={"model_choices": choices})
    else:
        initial = None
        targets = []
        if alias is not None:
            initial = AliasForm.initial_of(alias)
            targets = [target_initial(t) for t in sorted(alias.targets.all(), key=lambda t: t.position)]
        elif request.GET.get("project"):  # "Create an alias" from a project's list
            initial = {"project": request.GET["project"]}
        form = AliasForm(initial=initial, projects=projects, tenant_wide=tenant_wide)
        formset = TargetFormSet(initial=targets, prefix="targets", form_kwargs={"model_choices": choices})
    return form, formset


def _alias_save(request, access: TenantAccess, form, formset, alias=None):
    if not (form.is_valid() and formset.is_valid()):
        return None
    data = {"name": form.cleaned_data["name"], **{f: form.cleaned_data[f] for f in AliasForm.SETTINGS},
            "targets": targets_from(formset)}
    try:
        slug = form.cleaned_data["project"]
        data["project"] = (project_get(tenant=access.tenant, project=slug, project_ids=access.project_ids)
                           if slug else None)
        if alias is None:
            access.require_in_scope(data["project"], Role.ADMIN, doing="creating {}", what="aliases")
            return services.alias_create(tenant=access.tenant, data=data, actor=access.principal)
        access.require_in_scope(alias.project, Role.ADMIN, doing="changing {}", what="aliases")
        access.require_in_scope(data["project"], Role.ADMIN, doing="making an alias one of the {}", what="aliases")
        return services.alias_update(alias=alias, data=data, actor=access.principal)
    except Forbidden:
        raise  # the 403 page (tenant_page)
    except TollgateError as exc:
        _alias_error(form, formset, exc)
        return None


def _alias_error(form, formset, exc: TollgateError) -> None:
    """Show a service's error where it belongs: ``targets[2].model`` on the third saved row
    (in the chosen order), ``targets`` above the deployments, ``context_window_fallbacks[0]``
    on that field, anything else on the form's field or the form."""
    field = exc.field or ""
    if field.startswith("targets["):
        index = int(field[len("targets["):field.index("]")])
        name = field.partition("].")[2]
        ordered = [f for f in formset.ordered_forms if f.cleaned_data.get("model")]
        if index < len(ordered):
            ordered[index].add_error(name if name in ordered[index].fields else None, exc.message)
            return
    if field == "targets":
        formset.non_form_errors().append(exc.message)
        return
    base = field.partition("[")[0]
    if base in AliasForm.FALLBACKS:  # "context_window_fallbacks[1]: an alias …" → "An alias …"
        message = exc.message.removeprefix(f"{field}: ")
        form.add_error(base, message[:1].upper() + message[1:])
        return
    form_error(form, exc)


@tenant_page(projects=True)
def alias_new(request: HttpRequest, access: TenantAccess) -> HttpResponse:
    form, formset = _alias_form(request, access)
    if request.method == "POST":
        alias = _alias_save(request, access, form, formset)
        if alias is not None:
            messages.success(request, f"Alias '{alias.name}' created.")
            return redirect("console-aliases", access.tenant.slug)
    return console_render(request, access, "app/aliases/form.html", {
        "form": form, "formset": formset, "alias": None, "max_targets": MAX_TARGETS, "can_edit": may_change(access),
    }, section="aliases", status=400 if request.method == "POST" else 200)


@tenant_page(projects=True)
def alias_edit(request: HttpRequest, access: TenantAccess, alias_id: int) -> HttpResponse:
    alias = selectors.alias_get(tenant=access.tenant, alias_id=alias_id, project_ids=access.project_ids)
    form, formset = _alias_form(request, access, alias)
    if request.method == "POST":
        saved = _alias_save(request, access, form, formset, alias)
        if saved is not None:
            messages.success(request, f"Alias '{saved.name}' saved.")
            return redirect("console-aliases", access.tenant.slug)
    return console_render(request, access, "app/aliases/form.html", {
        "form": form, "formset": formset, "alias": alias, "max_targets": MAX_TARGETS,
        "can_edit": access.can_in_project(alias.project_id, Role.ADMIN),
    }, section="aliases", status=400 if request.method == "POST" else 200)


@tenant_page(projects=True)
def alias_delete(request: HttpRequest, access: TenantAccess, alias_id: int) -> HttpResponse:
    alias = selectors.alias_get(tenant=access.tenant, alias_id=alias_id, project_ids=access.project_ids)
    if request.method == "POST":
        access.require_in_scope(alias.project, Role.ADMIN, doing="deleting {}", what="aliases")
        try:
            services.alias_delete(alias=alias, actor=access.principal)
        except TollgateError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Alias '{alias.name}' deleted.")
    return redirect("console-aliases", access.tenant.slug)
