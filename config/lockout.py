"""Brute-force protection of the two login pages (/accounts/login/, /admin/login/) with
django-axes: after ``LOGIN_FAILURE_LIMIT`` failed logins a username, and separately a client
address, is locked out for ``LOGIN_LOCKOUT_MINUTES`` (0: until staff unlock it with
``manage.py axes_reset_username`` / ``axes_reset_ip`` / ``axes_reset``, or in the admin's
"Access attempts"). The settings are in config/settings.py.

The client address is ``REMOTE_ADDR``, which the ASGI server sets: uvicorn takes it from
``X-Forwarded-For`` only when the connection comes from a proxy listed in its
``FORWARDED_ALLOW_IPS`` (default: loopback), so a client cannot pick its own address."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render
from django.urls import reverse


def client_address(request) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: the address the server vouches for, never a header."""
    return request.META.get("REMOTE_ADDR")


def lockout_message() -> str:
    cool_off = settings.AXES_COOLOFF_TIME
    if cool_off:
        minutes = max(1, round(cool_off.total_seconds() / 60))
        return (
            f"Too many failed login attempts: logging in is blocked for this account or address; "
            f"try again in {minutes} minutes, or contact support to unlock it sooner."
        )
    return (
        "Too many failed login attempts: logging in is blocked for this account or address "
        "until it is unlocked; contact support."
    )


def lockout_response(request, *args, **kwargs):
    """``AXES_LOCKOUT_CALLABLE``: the login page the client came from, with the lockout message
    and an empty form, as 429. (axes passes the view's response and the credentials, in an
    order that differs between its sync and async paths; neither is needed here.)"""
    username = request.POST.get("username", "")[:150]
    redirect_to = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    status = settings.AXES_HTTP_RESPONSE_CODE
    if request.path == reverse("admin:login"):
        context = {
            **admin.site.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
            "form": AdminAuthenticationForm(request, initial={"username": username}),
            REDIRECT_FIELD_NAME: redirect_to or reverse("admin:index"),
            "lockout": lockout_message(),
        }
        return render(request, "admin/login.html", context, status=status)
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        REDIRECT_FIELD_NAME: redirect_to,
        "lockout": lockout_message(),
    }
    return render(request, "registration/login.html", context, status=status)
