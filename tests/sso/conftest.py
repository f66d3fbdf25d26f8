"""The fake issuer and the settings that point Tollgate's SSO at it, and a driver of the whole
browser round trip with Django's test client: login page → /accounts/oidc/authenticate/ →
the issuer's /authorize (a real HTTP request) → /accounts/oidc/callback/."""

from dataclasses import dataclass

import httpx
import pytest
from django.test import Client

from sso.discovery import endpoints_forget
from sso.rules import rules_parse
from tests.fakes.oidc import FakeOIDC

CLIENT_ID = "tollgate-console"
CLIENT_SECRET = "very-secret-client-secret-of-the-console"


@pytest.fixture
def issuer():
    with FakeOIDC(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as fake:
        yield fake


def sso_settings(settings, issuer, *, domain_rules: str = "", group_rules: str = "",
                 staff_group: str = "", support_group: str = "") -> None:
    settings.OIDC_ISSUER = issuer.issuer
    settings.OIDC_ENABLED = True
    settings.OIDC_PROVIDER_NAME = "Acme ID"
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_DOMAIN_RULES = rules_parse("OIDC_DOMAIN_RULES", domain_rules, domains=True)
    settings.OIDC_GROUP_RULES = rules_parse("OIDC_GROUP_RULES", group_rules)
    settings.OIDC_STAFF_GROUP = staff_group
    settings.OIDC_SUPPORT_GROUP = support_group
    endpoints_forget()


@pytest.fixture
def sso(settings, issuer):
    """SSO on against the fake issuer; call the result to set rules."""

    def configure(**rules):
        sso_settings(settings, issuer, **rules)
        return issuer

    configure()
    yield configure
    endpoints_forget()


@dataclass
class Outcome:
    response: object  # the callback's answer
    client: Client
    authorize_url: str


def sso_login(client: Client | None = None, *, next_url: str = "") -> Outcome:
    """Click "Sign in with …", let the issuer answer, and bring its redirect back."""
    client = client or Client()
    start = client.get("/accounts/oidc/authenticate/" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302, start.content
    authorize_url = start["Location"]
    back = httpx.get(authorize_url, follow_redirects=False)
    assert back.status_code == 302, back.text
    callback = httpx.URL(back.headers["location"])
    assert callback.host == "testserver" and callback.path == "/accounts/oidc/callback/"
    response = client.get(callback.path + "?" + callback.query.decode())
    return Outcome(response=response, client=client, authorize_url=authorize_url)
