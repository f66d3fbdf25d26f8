"""Template context: the provider name of the login pages' "Sign in with ..." button (absent
when SSO is off)."""

from django.conf import settings


def sso(request) -> dict[str, str]:
    return {"sso_provider_name": settings.OIDC_PROVIDER_NAME} if settings.OIDC_ENABLED else {}
