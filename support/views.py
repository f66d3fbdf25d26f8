"""The support dashboards (/support/): every tenant's spend and budgets, and provider health
across the platform. Only for support staff (active Django staff with
``support.view_all_tenants``): anonymous callers go to the login page, everyone else (tenant
owners included, and staff without the permission) gets 403. Read-only: each tenant links to
its console (/app/<slug>/), which support staff read but cannot change."""

from functools import wraps
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.pages import forbidden, login_redirect
from support.selectors import (
    DEFAULT_SORT,
    SORTS,
    SPARK_HEIGHT,
    SPARK_WIDTH,
    WINDOWS,
    platform_health,
    tenants_dashboard,
    top_spenders,
    trends_fill,
)
from tenants.access import Principal

PAGE_SIZE = 50


def support_page(view):
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return login_redirect(request)
        if not Principal(user=request.user).is_support:
            return forbidden(request, "This page is for Tollgate support staff.")
        return view(request, *args, **kwargs)

    return wrapper


def _link(params: dict, **changes) -> str:
    merged = {**params, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v not in ("", None)})


@support_page
def support_home(request: HttpRequest) -> HttpResponse:
    """``/support/``: one row per tenant, sortable (``?sort=``, "-" for descending),
    searchable (``?q=`` on slug or name), 50 per page, and the top spenders this month."""
    query = request.GET.get("q", "").strip()[:100]
    sort = request.GET.get("sort", DEFAULT_SORT)
    if sort.lstrip("-") not in SORTS:
        sort = DEFAULT_SORT
    rows = tenants_dashboard(query=query, sort=sort)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    trends_fill(page.object_list)
    params = {"q": query, "sort": sort if sort != DEFAULT_SORT else ""}
    columns = []
    for key, (_, label) in SORTS.items():
        current = sort.lstrip("-") == key
        descending = sort.startswith("-")
        if not current:  # first click: text ascending, numbers highest first
            target = key if key == "tenant" else f"-{key}"
        elif descending:  # a second click flips it
            target = key
        else:
            target = f"-{key}"
        columns.append({"key": key, "label": label, "url": _link(params, sort=target, page=""),
                        "aria": ("descending" if descending else "ascending") if current else ""})
    return render(request, "support/home.html", {
        "query": query, "sort": sort, "page": page, "rows": page.object_list, "columns": columns,
        "total": len(rows), "top": top_spenders(rows),
        "prev_url": _link(params, page=page.previous_page_number()) if page.has_previous() else "",
        "next_url": _link(params, page=page.next_page_number()) if page.has_next() else "",
        "spark_w": SPARK_WIDTH, "spark_h": SPARK_HEIGHT, "section": "tenants",
    })


@support_page
def support_providers(request: HttpRequest) -> HttpResponse:
    """``/support/providers/``: provider and model health over the last hour or day
    (``?window=hour|day``), cooldowns active now, last catalog sync."""
    window = request.GET.get("window", "hour")
    health = platform_health(window=window if window in WINDOWS else "hour")
    tabs = [(w, label, f"?window={w}") for w, label in (("hour", "Last hour"), ("day", "Last 24 hours"))]
    return render(request, "support/providers.html", {"health": health, "tabs": tabs, "section": "providers"})
