"""The SSO pages: start (redirect to the issuer with state, nonce and PKCE) and callback
(mozilla-django-oidc's views with the discovered endpoints; the session ends
OIDC_SESSION_SECONDS after the login); a refused sign-in gets a page that says why and what to do."""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from sso.discovery import DiscoveryError, endpoints


def _refused(request, message: str, *, status: int = 403):
    return render(request, "registration/sso_refused.html", {"reason": message}, status=status)


class SSOStart(OIDCAuthenticationRequestView):
    def __init__(self, **kwargs):  # the endpoint is discovered on the first request, not here
        View.__init__(self, **kwargs)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = endpoints().authorization
        except DiscoveryError as exc:
            return _refused(request, exc.message, status=502)
        return super().get(request)


class SSOCallback(OIDCAuthenticationCallbackView):
    def get(self, request):
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        try:
            return super().get(request)
        except SuspiciousOperation:  # a state this browser never started
            return _refused(
                request,
                "This sign-in was not started from this browser (unknown state); start again "
                "from the login page.",
                status=400,
            )

    def login_success(self):
        response = super().login_success()
        # A fixed end (not renewed by activity): then the person signs in again and the rules
        # apply again (OIDC_SESSION_SECONDS).
        self.request.session.set_expiry(timezone.now() + timedelta(seconds=settings.OIDC_SESSION_SECONDS))
        return response

    def login_failure(self):
        reason = getattr(self.request, "sso_refusal", None)
        if reason is None and self.request.GET.get("error"):
            error = self.request.GET.get("error_description") or self.request.GET["error"]
            reason = f"The identity provider refused the sign-in: {error[:200]}"
        return _refused(self.request, reason or "The sign-in did not complete; start again from the login page.")
