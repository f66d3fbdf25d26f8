"""Helpers every server-rendered page shares, with no tenant in them: is this an htmx request,
the login redirect (also from an htmx partial), the 403 page, and a service error shown on
the form field it names. The tenant console's own plumbing is ``tenants.console``."""

from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from core.errors import TollgateError


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def login_redirect(request: HttpRequest) -> HttpResponse:
    if is_htmx(request):  # a partial must not swap the login page into the page: reload into it
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        page = f"{current.path}?{current.query}" if current.query else (current.path or request.get_full_path())
        response = HttpResponse(status=204)
        response["HX-Redirect"] = redirect_to_login(page, login_url=reverse("login"))["Location"]
        return response
    return redirect_to_login(request.get_full_path(), login_url=reverse("login"))


def forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "403.html", {"message": message}, status=403)


def form_error(form, exc: TollgateError, *, fields: dict[str, str] | None = None) -> None:
    """Attach a service's error to the form field it names (or to the form as a whole)."""
    field = (fields or {}).get(exc.field or "", exc.field)
    form.add_error(field if field in form.fields else None, exc.message)
