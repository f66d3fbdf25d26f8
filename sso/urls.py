"""/accounts/oidc/: the SSO start and callback (404 while SSO is off)."""

from django.urls import path

from sso.views import SSOCallback, SSOStart

urlpatterns = [
    path("authenticate/", SSOStart.as_view(), name="oidc_authentication_init"),
    path("callback/", SSOCallback.as_view(), name="oidc_authentication_callback"),
]
