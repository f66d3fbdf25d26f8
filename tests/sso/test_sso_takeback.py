"""The identity provider stays the source of truth: what the SSO rules granted they take back
at the next login where no rule gives it (tenant and project memberships), manual memberships
stay, the last owner stays, project roles come from rules, and an SSO session ends
OIDC_SESSION_SECONDS after its login."""

import importlib
import logging
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from sso.models import Identity
from tenants.access import SYSTEM
from tenants.models import AuditEvent, Membership, MembershipSource, ProjectMembership, Role
from tenants.services import api_key_create, project_create, tenant_create
from tests.sso.conftest import sso_login

pytestmark = pytest.mark.django_db

User = get_user_model()


def _roles(user) -> dict[str, tuple[str, str]]:
    return {m.tenant.slug: (m.role, m.source) for m in Membership.objects.filter(user=user).select_related("tenant")}


def _project_roles(user) -> dict[str, tuple[str, str]]:
    return {
        f"{pm.project.tenant.slug}/{pm.project.slug}": (pm.role, pm.source)
        for pm in ProjectMembership.objects.filter(user=user).select_related("project__tenant")
    }


@pytest.fixture
def support_project(world):
    """acme's ``support`` and ``labs`` projects, each with a chat key."""
    support = project_create(tenant=world.tenant, slug="support", name="Support", actor=SYSTEM)
    labs = project_create(tenant=world.tenant, slug="labs", name="Labs", actor=SYSTEM)
    api_key_create(tenant=world.tenant, name="support key", project=support, actor=SYSTEM)
    api_key_create(tenant=world.tenant, name="labs key", project=labs, actor=SYSTEM)
    return support


# ---------------------------------------------------------------- tenant memberships
def test_leaving_the_group_takes_back_the_membership_the_rule_granted(world, sso):
    # given: Bo signed in as an llm-admin of acme and a user of other
    issuer = sso(group_rules="llm-admins=acme:admin,other-users=other:viewer")
    issuer.claims = {"sub": "u-bo", "email": "bo@acme.com", "email_verified": True,
                     "groups": ["llm-admins", "other-users"]}
    first = sso_login()
    bo = User.objects.get(email="bo@acme.com")
    assert _roles(bo) == {"acme": ("admin", "sso"), "other": ("viewer", "sso")}
    assert first.client.get("/app/acme/").status_code == 200
    # when: the provider removes Bo from llm-admins, and Bo signs in again in another browser
    issuer.claims["groups"] = ["other-users"]
    second = sso_login()
    # then: the acme membership is gone, through the members service (audited, actor system)
    assert second.response.status_code == 302
    assert _roles(bo) == {"other": ("viewer", "sso")}
    event = AuditEvent.objects.get(action="membership.delete", target="user:bo@acme.com")
    assert event.tenant == world.tenant and event.actor == "system" and event.before == {"role": "admin"}
    # the new session lacks acme, and so does the first browser's, on its next request
    for client in (second.client, first.client):
        assert client.get("/app/acme/").status_code == 404
        assert client.get("/api/members", {"tenant": "acme"}).status_code == 404
        assert client.get("/app/other/").status_code == 200


def test_leaving_every_group_takes_everything_back_and_refuses_the_sign_in(world, sso):
    issuer = sso(group_rules="llm-users=acme:viewer")
    issuer.claims = {"sub": "u-cy", "email": "cy@acme.com", "email_verified": True, "groups": ["llm-users"]}
    first = sso_login()
    assert first.client.get("/app/acme/").status_code == 200
    issuer.claims["groups"] = []
    out = sso_login()
    assert out.response.status_code == 403
    assert "no Tollgate tenant is set up" in out.response.content.decode()
    cy = User.objects.get(email="cy@acme.com")
    assert not Membership.objects.filter(user=cy).exists()  # taken back although the sign-in was refused
    assert AuditEvent.objects.filter(action="membership.delete", target="user:cy@acme.com", actor="system").exists()
    assert first.client.get("/app/acme/").status_code == 404


def test_manual_memberships_stay_and_follow_a_rule_while_it_applies(world, sso):
    # given: acme's viewer, added by an owner, and acme's owner; both also in the rules' group
    issuer = sso(group_rules="llm-admins=acme:admin")
    issuer.claims = {"sub": "u-viewer", "email": "viewer@acme.test", "email_verified": True, "groups": ["llm-admins"]}
    sso_login()
    # the rule re-roles the manual membership, which stays manual
    assert _roles(world.viewer) == {"acme": ("admin", "manual")}
    # when: the group goes
    issuer.claims["groups"] = []
    out = sso_login()
    # then: the manual membership stays (with the role it has), and the viewer is let in
    assert out.response.status_code == 302
    assert _roles(world.viewer) == {"acme": ("admin", "manual")}
    assert not AuditEvent.objects.filter(action="membership.delete").exists()
    assert out.client.get("/app/acme/").status_code == 200


def test_the_last_owner_is_kept_even_when_no_rule_gives_it(world, sso, caplog):
    # given: a tenant with no owner, whose owner comes from the llm-owners group
    labs = tenant_create(slug="labs", name="Labs").tenant
    issuer = sso(group_rules="llm-owners=labs:owner,llm-users=acme:viewer")
    issuer.claims = {"sub": "u-dee", "email": "dee@acme.com", "email_verified": True,
                     "groups": ["llm-owners", "llm-users"]}
    sso_login()
    dee = User.objects.get(email="dee@acme.com")
    assert _roles(dee) == {"labs": ("owner", "sso"), "acme": ("viewer", "sso")}
    # when: Dee leaves both groups
    issuer.claims["groups"] = []
    with caplog.at_level(logging.WARNING, logger="tollgate.sso"):
        out = sso_login()
    # then: acme is taken back, labs keeps its only owner (logged), so Dee still gets in
    assert _roles(dee) == {"labs": ("owner", "sso")}
    assert "dee@acme.com kept in labs although no rule gives it" in caplog.text
    assert "must keep at least one owner" in caplog.text
    assert out.response.status_code == 302
    assert not AuditEvent.objects.filter(action="membership.delete", tenant=labs).exists()
    # with a second owner, the next login takes it back
    Membership.objects.create(tenant=labs, user=world.owner, role=Role.OWNER)
    assert sso_login().response.status_code == 403
    assert not Membership.objects.filter(user=dee).exists()


def test_a_first_sign_in_that_is_refused_changes_nothing_of_the_account(world, sso):
    # given: a password superuser who has no tenant, with OIDC_STAFF_GROUP set
    root = User.objects.create_superuser("root@acme.com", "root@acme.com", "pw")
    issuer = sso(staff_group="tollgate-ops")
    issuer.claims = {"sub": "u-root", "email": "root@acme.com", "email_verified": True, "groups": []}
    # when: they try SSO without the ops group
    out = sso_login()
    # then: refused, not linked, and still a superuser (nothing is decided for an account not signed in)
    assert out.response.status_code == 403
    root.refresh_from_db()
    assert root.is_superuser and not Identity.objects.filter(user=root).exists()


def test_an_owner_removing_an_sso_member_in_the_console_is_undone_by_the_rule(world, sso, client_for):
    issuer = sso(group_rules="llm-users=acme:viewer")
    issuer.claims = {"sub": "u-ed", "email": "ed@acme.com", "email_verified": True, "groups": ["llm-users"]}
    sso_login()
    ed = User.objects.get(email="ed@acme.com")
    listed = client_for(user=world.owner).get("/api/members").json()["results"]
    assert {m["email"]: m["source"] for m in listed} == {"ed@acme.com": "sso", "owner@acme.test": "manual",
                                                          "admin@acme.test": "manual", "viewer@acme.test": "manual"}
    page = client_for(user=world.owner).get("/app/acme/members/").content.decode()
    assert page.count(">SSO</small>") == 1
    membership = Membership.objects.get(user=ed)
    assert client_for(user=world.owner).delete(f"/api/members/{membership.pk}").status_code == 204
    sso_login()
    assert _roles(ed) == {"acme": ("viewer", "sso")}


# ---------------------------------------------------------------- project roles
def test_project_roles_are_granted_re_roled_and_taken_back(world, sso, support_project):
    issuer = sso(group_rules="llm-support=acme/support:admin,support-readers=acme/support:viewer")
    issuer.claims = {"sub": "u-fay", "email": "fay@acme.com", "email_verified": True,
                     "groups": ["llm-support", "support-readers"]}
    # granted (the highest role of two rules)
    assert sso_login().response.status_code == 302
    fay = User.objects.get(email="fay@acme.com")
    assert _project_roles(fay) == {"acme/support": ("admin", "sso")} and _roles(fay) == {}
    created = AuditEvent.objects.get(action="project_member.create", target="project:support:user:fay@acme.com")
    assert created.actor == "system" and created.after == {"role": "admin"}
    # re-roled
    issuer.claims["groups"] = ["support-readers"]
    assert sso_login().response.status_code == 302
    assert _project_roles(fay) == {"acme/support": ("viewer", "sso")}
    updated = AuditEvent.objects.get(action="project_member.update")
    assert updated.before == {"role": "admin"} and updated.after == {"role": "viewer"} and updated.actor == "system"
    # taken back: nothing is left, so the sign-in is refused
    issuer.claims["groups"] = []
    assert sso_login().response.status_code == 403
    assert _project_roles(fay) == {}
    deleted = AuditEvent.objects.get(action="project_member.delete")
    assert deleted.actor == "system" and deleted.tenant == world.tenant


def test_a_project_only_user_signs_in_and_sees_only_their_project(world, sso, support_project):
    issuer = sso(group_rules="llm-support=acme/support:viewer")
    issuer.claims = {"sub": "u-gus", "email": "gus@elsewhere.io", "email_verified": False, "groups": ["llm-support"]}
    out = sso_login()
    assert out.response.status_code == 302
    client = out.client
    assert client.get("/app/")["Location"] == "/app/acme/"
    keys = client.get("/app/acme/keys/")
    assert keys.status_code == 200
    assert "support key" in keys.content.decode() and "labs key" not in keys.content.decode()
    assert "project viewer" in keys.content.decode()
    assert client.get("/app/acme/settings/").status_code == 403
    assert client.get("/app/acme/members/").status_code == 403
    assert client.get("/app/other/").status_code == 404


def test_a_project_rule_in_a_tenant_the_user_is_member_of_is_covered_and_missing_projects_are_skipped(
    world, sso, support_project, caplog
):
    issuer = sso(group_rules="llm-support=acme/support:admin,llm-users=acme:viewer,ghosts=acme/nowhere:admin")
    issuer.claims = {"sub": "u-hal", "email": "hal@acme.com", "email_verified": True,
                     "groups": ["llm-support", "ghosts"]}
    with caplog.at_level(logging.WARNING, logger="tollgate.sso"):
        assert sso_login().response.status_code == 302
    assert "SSO rule names project 'acme/nowhere', which does not exist; rule skipped" in caplog.text
    hal = User.objects.get(email="hal@acme.com")
    assert _project_roles(hal) == {"acme/support": ("admin", "sso")}
    # a tenant role covers every project: the project role the rules granted goes
    issuer.claims["groups"] = ["llm-support", "llm-users"]
    assert sso_login().response.status_code == 302
    assert _roles(hal) == {"acme": ("viewer", "sso")} and _project_roles(hal) == {}
    # and comes back when the tenant role goes
    issuer.claims["groups"] = ["llm-support"]
    assert sso_login().response.status_code == 302
    assert _roles(hal) == {} and _project_roles(hal) == {"acme/support": ("admin", "sso")}


def test_a_manual_project_role_stays_when_the_rule_goes(world, sso, support_project):
    iris = User.objects.create_user("iris@acme.com", "iris@acme.com", "pw")
    ProjectMembership.objects.create(project=support_project, user=iris, role=Role.VIEWER)
    issuer = sso(group_rules="llm-support=acme/support:admin")
    issuer.claims = {"sub": "u-iris", "email": "iris@acme.com", "email_verified": True, "groups": ["llm-support"]}
    sso_login()
    assert _project_roles(iris) == {"acme/support": ("admin", "manual")}
    issuer.claims["groups"] = []
    assert sso_login().response.status_code == 302
    assert _project_roles(iris) == {"acme/support": ("admin", "manual")}


# ---------------------------------------------------------------- sessions
def test_an_sso_session_ends_a_fixed_time_after_the_login(world, sso, settings):
    settings.OIDC_SESSION_SECONDS = 600
    sso(domain_rules="acme.com=acme:viewer")
    before = timezone.now()
    out = sso_login()
    assert out.response.cookies["sessionid"]["max-age"] in range(595, 601)
    session = Session.objects.get(session_key=out.client.session.session_key)
    assert before + timedelta(seconds=599) <= session.expire_date <= timezone.now() + timedelta(seconds=600)
    # activity does not push the end further (the end is a date, not an idle time)
    assert out.client.get("/app/acme/").status_code == 200
    touched = out.client.session
    touched["seen"] = True
    touched.save()
    assert Session.objects.get(pk=session.pk).expire_date == session.expire_date
    # once it has passed, the console sends the person to sign in again
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert out.client.get("/app/acme/").status_code == 302
    # a password login keeps Django's session age
    world.owner.set_password("pw-for-the-owner-123")
    world.owner.save()
    client = Client()
    client.post("/accounts/login/", {"username": world.owner.username, "password": "pw-for-the-owner-123"})
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE


# ---------------------------------------------------------------- upgrading
def test_the_migration_recognises_memberships_sso_granted_before_it(world, sso, client_for):
    issuer = sso(group_rules="llm-users=acme:viewer")
    issuer.claims = {"sub": "u-jo", "email": "jo@acme.com", "email_verified": True, "groups": ["llm-users"]}
    sso_login()
    # an owner adds a member by hand; everything reads "manual", as right after adding the column
    client_for(user=world.owner).post("/api/members", {"email": "staff@tollgate.test", "role": "viewer"},
                                      format="json")
    Membership.objects.update(source=MembershipSource.MANUAL)
    migration = importlib.import_module("tenants.migrations.0009_membership_source")
    migration.sso_memberships_mark(django_apps, None)
    sso_rows = set(Membership.objects.filter(source="sso").values_list("user__username", flat=True))
    assert sso_rows == {"jo@acme.com"}
