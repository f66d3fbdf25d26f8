"""OpenID Connect login against a loopback issuer (tests/fakes/oidc.py): the mapping rules,
staff and support roles, refusals, the ID-token checks, and SSO off when unset."""

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from support.groups import SUPPORT_GROUP
from tenants.models import AuditEvent, Membership, Role
from tests.sso.conftest import CLIENT_ID, sso_login

pytestmark = pytest.mark.django_db

User = get_user_model()


def _session_user(client: Client):
    return client.get("/app/").wsgi_request.user


# ---------------------------------------------------------------- the happy paths
def test_domain_rule_makes_a_verified_user_member_of_the_tenant(world, sso):
    # given: acme.com's verified emails map to acme as admin
    issuer = sso(domain_rules="acme.com=acme:admin,other.org=other:viewer")
    issuer.claims = {"sub": "u-ann", "email": "Ann@Acme.com", "email_verified": True, "name": "Ann"}
    # when
    out = sso_login()
    # then: signed in, sent to the console, an admin of acme and of nothing else
    assert out.response.status_code == 302 and out.response["Location"] == "/app/"
    user = User.objects.get(email="ann@acme.com")
    assert _session_user(out.client) == user
    assert not user.has_usable_password() and not user.is_staff
    assert list(Membership.objects.filter(user=user).values_list("tenant__slug", "role")) == [("acme", "admin")]
    event = AuditEvent.objects.get(action="membership.create", target="user:ann@acme.com")
    assert event.tenant == world.tenant and event.after == {"role": "admin"}
    # the console opens
    assert out.client.get("/app/acme/").status_code == 200


def test_the_request_carries_state_nonce_and_pkce_and_the_issuer_gets_the_secret(world, sso):
    issuer = sso(domain_rules="acme.com=acme:viewer")
    out = sso_login()
    query = parse_qs(urlsplit(out.authorize_url).query)
    assert query["client_id"] == [CLIENT_ID] and query["response_type"] == ["code"]
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["code_challenge_method"] == ["S256"]
    token_call = issuer.requests_to("/token")[-1]
    assert "code_verifier=" in token_call.raw.decode()
    assert out.response.status_code == 302


def test_group_claim_gives_the_highest_role_and_rules_reapply_on_each_login(world, sso):
    issuer = sso(group_rules="llm-viewers=acme:viewer,llm-admins=acme:admin,other-team=other:viewer")
    issuer.claims = {"sub": "u-bo", "email": "bo@contractor.net", "email_verified": False,
                     "groups": ["llm-viewers", "llm-admins"]}
    assert sso_login().response.status_code == 302
    bo = User.objects.get(email="bo@contractor.net")
    assert Membership.objects.get(user=bo, tenant=world.tenant).role == Role.ADMIN
    # when: the provider moves Bo to the viewers only and adds the other team
    issuer.claims["groups"] = ["llm-viewers", "other-team"]
    assert sso_login().response.status_code == 302
    # then: the role follows (audited), and the new tenant is joined
    assert Membership.objects.get(user=bo, tenant=world.tenant).role == Role.VIEWER
    assert Membership.objects.get(user=bo, tenant=world.other).role == Role.VIEWER
    change = AuditEvent.objects.get(action="membership.update", target="user:bo@contractor.net")
    assert change.before == {"role": "admin"} and change.after == {"role": "viewer"}


def test_unverified_email_gets_no_domain_rule(world, sso):
    issuer = sso(domain_rules="acme.com=acme:admin")
    issuer.claims = {"sub": "u-eve", "email": "eve@acme.com", "email_verified": False}
    out = sso_login()
    assert out.response.status_code == 403
    assert "not verified your email" in out.response.content.decode()
    assert not User.objects.filter(email="eve@acme.com").exists()


def test_staff_and_support_roles_come_from_the_groups_claim(world, sso):
    issuer = sso(staff_group="tollgate-ops", support_group="tollgate-support")
    issuer.claims = {"sub": "u-sam", "email": "sam@tollgate.example", "email_verified": True,
                     "groups": ["tollgate-support"]}
    out = sso_login(next_url="/admin/")
    assert out.response.status_code == 302 and out.response["Location"] == "/admin/"
    sam = User.objects.get(email="sam@tollgate.example")
    assert sam.is_staff and not sam.is_superuser
    assert sam.groups.filter(name=SUPPORT_GROUP).exists()
    assert sam.has_perm("support.view_all_tenants")
    assert out.client.get("/admin/").status_code == 200
    # promoted to ops, out of support
    issuer.claims["groups"] = ["tollgate-ops"]
    out = sso_login()
    sam.refresh_from_db()
    assert sam.is_staff and sam.is_superuser and not sam.groups.filter(name=SUPPORT_GROUP).exists()
    identities = out.client.get("/admin/sso/identity/")
    assert identities.status_code == 200 and "u-sam" in identities.content.decode()
    # out of both: no staff role, no tenant -> refused, and the flags are taken away all the same
    # (the session of another browser loses the admin on its next request)
    issuer.claims["groups"] = []
    ops_browser, out = out.client, sso_login()
    assert out.response.status_code == 403
    sam.refresh_from_db()
    assert not sam.is_staff and not sam.is_superuser
    assert AuditEvent.objects.filter(action="user.sso_roles", target="user:sam@tollgate.example").count() == 3
    assert ops_browser.get("/admin/").status_code == 302  # to the admin's login page


def test_staff_flags_are_removed_when_the_claim_goes_but_a_tenant_remains(world, sso):
    issuer = sso(domain_rules="acme.com=acme:viewer", staff_group="tollgate-ops")
    issuer.claims = {"sub": "u-al", "email": "al@acme.com", "email_verified": True, "groups": ["tollgate-ops"]}
    sso_login()
    al = User.objects.get(email="al@acme.com")
    assert al.is_superuser and al.is_staff
    issuer.claims["groups"] = []
    sso_login()
    al.refresh_from_db()
    assert not al.is_superuser and not al.is_staff
    assert Membership.objects.get(user=al).role == Role.VIEWER


def test_an_existing_user_is_linked_by_verified_email_and_keeps_other_memberships(world, sso):
    # given: acme's owner (created with a password elsewhere), and a rule that would make them viewer of other
    issuer = sso(domain_rules="acme.test=other:viewer")
    issuer.claims = {"sub": "u-owner", "email": "owner@acme.test", "email_verified": True}
    out = sso_login()
    assert out.response.status_code == 302
    assert _session_user(out.client) == world.owner
    roles = dict(Membership.objects.filter(user=world.owner).values_list("tenant__slug", "role"))
    assert roles == {"acme": "owner", "other": "viewer"}


def test_the_subject_is_the_identity_when_the_email_changes(world, sso):
    issuer = sso(domain_rules="acme.com=acme:viewer", group_rules="labs=other:admin")
    issuer.claims = {"sub": "u-kim", "email": "kim@acme.com", "email_verified": True}
    sso_login()
    kim = User.objects.get(email="kim@acme.com")
    # the provider renames Kim (not verified yet) and puts them in the labs group
    issuer.claims = {"sub": "u-kim", "email": "kim.lee@acme.org", "email_verified": False, "groups": ["labs"]}
    out = sso_login()
    assert out.response.status_code == 302 and _session_user(out.client) == kim
    # the same user; acme.com's rule no longer applies, so the membership it granted is taken back
    assert dict(Membership.objects.filter(user=kim).values_list("tenant__slug", "role")) == {"other": "admin"}
    assert not User.objects.filter(email="kim.lee@acme.org").exists()


def test_a_deactivated_user_loses_the_sso_session(world, sso):
    sso(domain_rules="acme.com=acme:viewer")
    out = sso_login()
    assert _session_user(out.client).is_authenticated
    User.objects.filter(email="ann@acme.com").update(is_active=False)
    assert not _session_user(out.client).is_authenticated
    assert sso_login().response.status_code == 403  # and cannot sign in again


# ---------------------------------------------------------------- refusals
def test_a_user_matched_to_nothing_is_refused_with_a_clear_page(world, sso):
    issuer = sso(domain_rules="acme.com=acme:viewer")
    issuer.claims = {"sub": "u-x", "email": "x@elsewhere.io", "email_verified": True, "groups": ["random"]}
    out = sso_login()
    assert out.response.status_code == 403
    page = out.response.content.decode()
    assert "Sign-in refused" in page and "no Tollgate tenant is set up for your email domain" in page
    assert not User.objects.filter(email="x@elsewhere.io").exists()
    assert not _session_user(out.client).is_authenticated


def test_an_existing_account_is_not_taken_over_through_an_unverified_email(world, sso):
    issuer = sso(group_rules="llm=acme:viewer")
    issuer.claims = {"sub": "u-mallory", "email": "owner@acme.test", "email_verified": False, "groups": ["llm"]}
    out = sso_login()
    assert out.response.status_code == 403
    assert "has not verified the email" in out.response.content.decode()
    assert not _session_user(out.client).is_authenticated


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("bad_signature", "signature does not verify"),
        ("wrong_audience", "issued to another client"),
        ("expired", "has expired"),
        ("wrong_nonce", "Nonce verification failed"),
        ("wrong_issuer", "another issuer"),
        ("hs256", "could not be verified"),
    ],
)
def test_a_spoiled_id_token_is_refused(world, sso, caplog, fault, message):
    issuer = sso(domain_rules="acme.com=acme:admin")
    issuer.id_token_fault = fault
    out = sso_login()
    assert out.response.status_code == 403
    assert message in out.response.content.decode()
    assert not _session_user(out.client).is_authenticated
    assert not User.objects.filter(email="ann@acme.com").exists()
    # tokens are never logged
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert issuer.issued_tokens and not any(token in logged for token in issuer.issued_tokens)


def test_a_callback_with_an_unknown_state_is_refused(world, sso):
    sso(domain_rules="acme.com=acme:admin")
    client = Client()
    client.get("/accounts/oidc/authenticate/")  # a real login started in this browser
    response = client.get("/accounts/oidc/callback/?code=abc&state=forged-state")
    assert response.status_code == 400
    assert "unknown state" in response.content.decode()


def test_a_code_is_single_use(world, sso):
    sso(domain_rules="acme.com=acme:admin")
    client = Client()
    start = client.get("/accounts/oidc/authenticate/")
    back = httpx.URL(httpx.get(start["Location"]).headers["location"])
    issuer_code = dict(back.params)["code"]
    # another browser replays the code with a state of its own
    thief = Client()
    thief_start = thief.get("/accounts/oidc/authenticate/")
    thief_state = parse_qs(urlsplit(thief_start["Location"]).query)["state"][0]
    assert client.get(f"/accounts/oidc/callback/?{back.query.decode()}").status_code == 302
    replay = thief.get(f"/accounts/oidc/callback/?code={issuer_code}&state={thief_state}")
    assert replay.status_code == 403 and "answered 400" in replay.content.decode()


def test_the_provider_refusing_is_shown(world, sso):
    issuer = sso(domain_rules="acme.com=acme:admin")
    issuer.authorize_error = "access_denied"
    client = Client()
    start = client.get("/accounts/oidc/authenticate/")
    back = httpx.URL(httpx.get(start["Location"]).headers["location"])
    response = client.get(f"/accounts/oidc/callback/?{back.query.decode()}")
    assert response.status_code == 403 and "The user denied access" in response.content.decode()


def test_an_unreachable_issuer_is_a_clear_page(settings, world, sso, issuer):
    sso()
    issuer.set_fault("status", status=500, path="/.well-known/openid-configuration")
    response = Client().get("/accounts/oidc/authenticate/")
    assert response.status_code == 502
    assert "discovery document" in response.content.decode()


def test_refused_sign_ins_do_not_lock_out_the_next_good_one(world, settings, sso):
    issuer = sso(domain_rules="acme.com=acme:viewer")
    issuer.claims = {"sub": "u-x", "email": "x@elsewhere.io", "email_verified": True}
    for _ in range(settings.LOGIN_FAILURE_LIMIT + 1):
        assert sso_login().response.status_code in (403, 429)
    issuer.claims = {"sub": "u-ann", "email": "ann@acme.com", "email_verified": True}
    out = sso_login(Client(REMOTE_ADDR="10.1.2.3"))
    assert out.response.status_code == 302 and _session_user(out.client).email == "ann@acme.com"


# ---------------------------------------------------------------- the login pages
def test_login_pages_offer_the_provider_and_the_password_login_still_works(world, sso):
    sso()
    client = Client()
    for page in ("/accounts/login/", "/admin/login/"):
        body = client.get(page).content.decode()
        assert "Sign in with Acme ID" in body and 'name="password"' in body
    world.owner.set_password("pw-for-the-owner-123")
    world.owner.save()
    response = client.post("/accounts/login/", {"username": world.owner.username, "password": "pw-for-the-owner-123"})
    assert response.status_code == 302
    assert _session_user(client) == world.owner


def test_sso_is_off_when_unset(world, issuer):
    # no OIDC_ISSUER in the test settings
    client = Client()
    for page in ("/accounts/login/", "/admin/login/"):
        assert "Sign in with" not in client.get(page).content.decode()
    assert client.get("/accounts/oidc/authenticate/").status_code == 404
    assert client.get("/accounts/oidc/callback/?code=a&state=b").status_code == 404
    assert issuer.requests == []  # nothing was asked of any issuer
