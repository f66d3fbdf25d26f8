"""Projects: every tenant has a default project, keys belong to a project, /api/projects
creates, changes and deletes them (audited; a project with active keys is not deleted), and a
member with a role on one project only manages or reads that project and nothing else."""

import pytest
from django.contrib.auth import get_user_model

from tenants.models import ApiKey, AuditEvent, Project, ProjectMembership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def projects(world):
    """acme has projects ``bot`` and ``web`` besides its default one; ``bot_admin`` administers
    bot only, ``bot_viewer`` reads bot only; each project has one chat key."""
    User = get_user_model()
    bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Support bot")
    web = Project.objects.create(tenant=world.tenant, slug="web", name="Web app")
    world.bot, world.web = bot, web
    world.bot_admin = User.objects.create_user("botadmin@acme.test", "botadmin@acme.test", "pw")
    world.bot_viewer = User.objects.create_user("botviewer@acme.test", "botviewer@acme.test", "pw")
    ProjectMembership.objects.create(project=bot, user=world.bot_admin, role=Role.ADMIN)
    ProjectMembership.objects.create(project=bot, user=world.bot_viewer, role=Role.VIEWER)
    from tenants.access import SYSTEM
    from tenants.services import api_key_create

    world.bot_key, _ = api_key_create(tenant=world.tenant, name="bot key", project=bot, actor=SYSTEM)
    world.web_key, _ = api_key_create(tenant=world.tenant, name="web key", project=web, actor=SYSTEM)
    return world


# --- the default project and keys --------------------------------------------------------------


def test_a_new_tenant_has_a_default_project_holding_its_keys(world):
    default = Project.objects.get(tenant=world.tenant, slug="default")
    assert default.is_default and default.name == "Default"
    assert set(ApiKey.objects.filter(tenant=world.tenant).values_list("project_id", flat=True)) == {default.pk}
    assert AuditEvent.objects.filter(tenant=world.tenant, action="project.create", target="project:default").exists()


def test_a_key_goes_to_the_default_project_unless_one_is_named(projects, client_for):
    client = client_for(user=projects.admin)
    plain = client.post("/api/keys", {"name": "plain"}, format="json").json()
    assert plain["project"]["slug"] == "default"
    by_slug = client.post("/api/keys", {"name": "s", "project": "bot"}, format="json").json()
    by_id = client.post("/api/keys", {"name": "i", "project": projects.web.pk}, format="json").json()
    assert by_slug["project"] == {"id": projects.bot.pk, "slug": "bot", "name": "Support bot"}
    assert by_id["project"]["slug"] == "web"
    assert ApiKey.objects.get(pk=by_slug["id"]).project == projects.bot
    event = AuditEvent.objects.get(action="api_key.create", target=f"api_key:{by_slug['id']}")
    assert event.after["project"] == "bot"
    listed = client.get("/api/keys?project=bot").json()
    assert {k["name"] for k in listed["results"]} == {"bot key", "s"}


def test_another_tenants_project_is_not_found(projects, client_for):
    theirs = Project.objects.get(tenant=projects.other, slug="default")
    client = client_for(user=projects.admin)
    response = client.post("/api/keys", {"name": "x", "project": theirs.pk}, format="json")
    assert response.status_code == 404, response.json()
    assert "not found in tenant 'acme'" in response.json()["error"]["message"]
    for path in (f"/api/projects/{theirs.pk}", f"/api/keys?project={theirs.pk}",
                 f"/api/projects/{theirs.pk}/members"):
        assert client.get(path).status_code == 404, path
    assert client.delete(f"/api/projects/{theirs.pk}").status_code == 404
    assert client.patch(f"/api/projects/{theirs.pk}", {"name": "x"}, format="json").status_code == 404
    outsider = client_for(key=projects.other_admin_key)
    assert outsider.get(f"/api/projects/{projects.bot.pk}").status_code == 404
    assert outsider.get("/api/projects/bot").status_code == 404
    assert Project.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("project", [True, [1], {"id": 1}, "", 1.5, -3, "x" * 51])
def test_a_malformed_project_is_a_clear_400(world, client_for, project):
    response = client_for(user=world.admin).post("/api/keys", {"name": "x", "project": project}, format="json")
    assert response.status_code == 400, response.json()
    assert "project id (an integer) or slug" in str(response.json())


# --- /api/projects -----------------------------------------------------------------------------


def test_admin_creates_changes_and_deletes_a_project_with_audit(world, client_for):
    from providers.catalog import CatalogEntry
    from providers.services import provider_create, provider_models_upsert

    provider = provider_create(owner=world.tenant, data={"name": "up", "base_url": "http://127.0.0.1:9/v1"})
    provider_models_upsert(provider=provider, catalog=[CatalogEntry("gpt-4o-mini")])  # the default model's
    client = client_for(user=world.admin)
    created = client.post("/api/projects", {"slug": "bot", "name": "Support bot", "default_model": "gpt-4o-mini",
                                            "limits": {"requests_per_minute": 60}}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["slug"] == "bot" and body["default"] is False and body["default_model"] == "gpt-4o-mini"
    assert body["limits"] == {"requests_per_minute": 60, "tokens_per_minute": None, "tokens_per_day": None}
    changed = client.patch(f"/api/projects/{body['id']}", {"name": "Bot", "limits": {"tokens_per_day": 1000}},
                           format="json")
    assert changed.status_code == 200 and changed.json()["name"] == "Bot"
    assert changed.json()["limits"] == {"requests_per_minute": 60, "tokens_per_minute": None, "tokens_per_day": 1000}
    assert client.get("/api/projects/bot").json()["id"] == body["id"]
    assert [p["slug"] for p in client.get("/api/projects").json()["results"]] == ["bot", "default"]
    assert client.delete("/api/projects/bot").status_code == 204
    assert not Project.objects.filter(pk=body["id"]).exists()
    actions = list(AuditEvent.objects.filter(target="project:bot").values_list("action", flat=True))
    assert sorted(actions) == ["project.create", "project.delete", "project.update"]


def test_project_input_errors_say_what_is_wrong(world, client_for):
    client = client_for(user=world.admin)
    bad_slug = client.post("/api/projects", {"slug": "Not OK", "name": "x"}, format="json")
    assert bad_slug.status_code == 400 and "Invalid project slug" in str(bad_slug.json())
    digits = client.post("/api/projects", {"slug": "123", "name": "x"}, format="json")  # would read as an id
    assert digits.status_code == 400 and "at least one letter" in str(digits.json())
    assert client.post("/api/projects", {"slug": "ok"}, format="json").status_code == 400  # no name
    limits = client.post("/api/projects", {"slug": "ok", "name": "x", "limits": {"requests_per_minute": 0}},
                         format="json")
    assert limits.status_code == 400
    unknown = client.post("/api/projects", {"slug": "ok", "name": "x", "colour": "red"}, format="json")
    assert unknown.status_code == 400
    duplicate = client.post("/api/projects", {"slug": "default", "name": "again"}, format="json")
    assert duplicate.status_code == 409 and "already has a project with slug 'default'" in str(duplicate.json())
    assert client.get("/api/projects/nope").status_code == 404
    assert client.get("/api/projects/99999999999999999999999").status_code == 404


def test_a_project_with_active_keys_is_not_deleted(projects, client_for):
    client = client_for(user=projects.admin)
    refused = client.delete("/api/projects/bot")
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "still has 1 active API key(s): bot key" in message and "Revoke them first" in message
    assert client.delete(f"/api/keys/{projects.bot_key.pk}").status_code == 200
    assert client.delete("/api/projects/bot").status_code == 204
    projects.bot_key.refresh_from_db()
    assert projects.bot_key.project.slug == "default"  # the revoked key moved, its history kept


def test_the_default_project_is_not_deleted(world, client_for):
    response = client_for(user=world.owner).delete("/api/projects/default")
    assert response.status_code == 400 and "cannot be deleted" in response.json()["error"]["message"]


@pytest.mark.parametrize("who", ["viewer", "chat_key"])
def test_viewers_cannot_change_projects(world, client_for, who):
    client = client_for(user=world.viewer) if who == "viewer" else client_for(key=world.chat_key)
    assert client.post("/api/projects", {"slug": "x", "name": "x"}, format="json").status_code == 403
    assert client.delete("/api/projects/default").status_code in (400, 403)
    assert not Project.objects.filter(slug="x").exists()


# --- roles on one project ----------------------------------------------------------------------


def test_owner_gives_a_user_a_role_on_one_project(projects, client_for):
    User = get_user_model()
    User.objects.create_user("new@acme.test", "new@acme.test", "pw")
    owner = client_for(user=projects.owner)
    added = owner.post("/api/projects/web/members", {"email": "new@acme.test", "role": "viewer"}, format="json")
    assert added.status_code == 201, added.json()
    assert [m["email"] for m in owner.get("/api/projects/web/members").json()["results"]] == ["new@acme.test"]
    owner_role = owner.post("/api/projects/web/members", {"email": "new@acme.test", "role": "owner"}, format="json")
    assert owner_role.status_code == 400
    tenant_member = owner.post("/api/projects/web/members", {"email": "viewer@acme.test", "role": "admin"},
                               format="json")
    assert tenant_member.status_code == 409 and "whole tenant" in tenant_member.json()["error"]["message"]
    # Admins (not owners) and project admins do not hand out roles.
    for client in (client_for(user=projects.admin), client_for(user=projects.bot_admin)):
        response = client.post("/api/projects/bot/members", {"email": "new@acme.test", "role": "admin"}, format="json")
        assert response.status_code == 403
    assert owner.delete(f"/api/projects/web/members/{added.json()['id']}").status_code == 204
    assert AuditEvent.objects.filter(action__startswith="project_member.").count() == 2


def test_project_admin_manages_its_projects_keys_only(projects, client_for):
    client = client_for(user=projects.bot_admin)
    listed = client.get("/api/keys").json()
    assert [k["name"] for k in listed["results"]] == ["bot key"]
    assert [p["slug"] for p in client.get("/api/projects").json()["results"]] == ["bot"]
    assert client.get("/api/projects/bot").json()["role"] == "admin"

    created = client.post("/api/keys", {"name": "bot 2"}, format="json")  # their one project
    assert created.status_code == 201 and created.json()["project"]["slug"] == "bot"
    assert client.post("/api/keys", {"name": "w", "project": "web"}, format="json").status_code == 404
    assert client.post("/api/keys", {"name": "d", "project": "default"}, format="json").status_code == 404
    escalate = client.post("/api/keys", {"name": "a", "scope": "admin"}, format="json")
    assert escalate.status_code == 403 and "chat-scope keys only" in escalate.json()["error"]["message"]

    assert client.get(f"/api/keys/{projects.web_key.pk}").status_code == 404
    assert client.delete(f"/api/keys/{projects.web_key.pk}").status_code == 404
    projects.web_key.refresh_from_db()
    assert projects.web_key.revoked_at is None
    assert client.delete(f"/api/keys/{projects.bot_key.pk}").status_code == 200
    assert not ApiKey.objects.filter(project=projects.web, name__in=["w", "a"]).exists()


def test_project_admin_cannot_touch_tenant_wide_settings(projects, client_for):
    client = client_for(user=projects.bot_admin)
    tenant_id = projects.tenant.pk
    refused = client.put(f"/api/tenants/{tenant_id}", {"name": "Hijacked"}, format="json")
    assert refused.status_code == 403, refused.json()
    assert "some of its projects only" in refused.json()["error"]["message"]
    for path in (f"/api/tenants/{tenant_id}", "/api/members", "/api/providers", "/api/audit"):
        assert client.get(path).status_code == 403, path
    # Budgets and limit rules: their own projects' only (tests/billing/test_budget_scopes.py).
    assert client.get("/api/budgets").json()["count"] == 0
    assert client.post("/api/projects", {"slug": "mine", "name": "m"}, format="json").status_code == 403
    assert client.patch("/api/projects/bot", {"name": "x"}, format="json").status_code == 403
    assert client.delete("/api/projects/web").status_code == 403
    projects.tenant.refresh_from_db()
    assert projects.tenant.name == "Acme"
    assert Project.objects.filter(slug="web").exists()


def test_project_viewer_reads_but_changes_nothing(projects, client_for):
    client = client_for(user=projects.bot_viewer)
    assert [k["name"] for k in client.get("/api/keys").json()["results"]] == ["bot key"]
    refused = client.post("/api/keys", {"name": "x"}, format="json")
    assert refused.status_code == 400  # no project it administers: it must name one
    refused = client.post("/api/keys", {"name": "x", "project": "bot"}, format="json")
    assert refused.status_code == 403 and "role on project 'bot' is viewer" in refused.json()["error"]["message"]
    assert client.delete(f"/api/keys/{projects.bot_key.pk}").status_code == 403
    projects.bot_key.refresh_from_db()
    assert projects.bot_key.revoked_at is None


def test_a_project_role_is_read_only_in_a_suspended_tenant(projects, client_for):
    projects.tenant.is_active = False
    projects.tenant.save()
    response = client_for(user=projects.bot_admin).post("/api/keys", {"name": "x", "project": "bot"}, format="json")
    assert response.status_code == 403 and "suspended" in response.json()["error"]["message"]


def test_a_project_role_gives_nothing_in_another_tenant(projects, client_for):
    client = client_for(user=projects.bot_admin)
    assert client.get(f"/api/keys?tenant={projects.other.slug}").status_code == 404
    assert client.get(f"/api/projects?tenant={projects.other.pk}").status_code == 404


def test_a_tenant_is_deleted_with_its_projects_and_keys_but_a_project_keeps_its_keys(world):
    """Keys restrict the deletion of their project (RESTRICT), not of their tenant: deleting a tenant
    (the Django admin, the bench's reset) takes its projects and keys with it."""
    from django.db.models import RestrictedError

    project = Project.objects.create(tenant=world.tenant, slug="support", name="Support")
    ApiKey.objects.create(tenant=world.tenant, project=project, name="k", prefix="tg_x", key_hash="h" * 64)
    with pytest.raises(RestrictedError):
        project.delete()
    tenant_id = world.tenant.pk
    world.tenant.delete()
    assert not ApiKey.objects.filter(tenant_id=tenant_id).exists()
    assert not Project.objects.filter(tenant_id=tenant_id).exists()


def test_an_owner_changes_a_project_role(projects, client_for):
    membership = ProjectMembership.objects.get(project=projects.bot, user=projects.bot_viewer)
    url = f"/api/projects/bot/members/{membership.pk}"
    owner = client_for(user=projects.owner)
    changed = owner.put(url, {"role": "admin"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["role"] == "admin" and changed.json()["email"] == "botviewer@acme.test"
    assert AuditEvent.objects.filter(action="project_member.update", target="project:bot:user:botviewer@acme.test",
                                     before={"role": "viewer"}, after={"role": "admin"}).exists()
    bad = owner.put(url, {"role": "owner"}, format="json")
    assert bad.status_code == 400 and "role" in bad.json()["error"]["message"]
    assert owner.put(f"/api/projects/web/members/{membership.pk}", {"role": "viewer"},
                     format="json").status_code == 404  # another project's member
    for who in (projects.admin, projects.bot_admin, projects.viewer):
        assert client_for(user=who).put(url, {"role": "viewer"}, format="json").status_code == 403
    assert client_for(user=projects.other_owner).put(url, {"role": "viewer"}, format="json").status_code == 404
    assert ProjectMembership.objects.get(pk=membership.pk).role == Role.ADMIN


# --- GET /api/tenants: every tenant the caller can open -------------------------------------------


def test_the_tenant_list_includes_tenants_reached_through_a_project_role(projects, client_for):
    theirs = Project.objects.create(tenant=projects.other, slug="theirs", name="Theirs")
    ProjectMembership.objects.create(project=theirs, user=projects.bot_admin, role=Role.VIEWER)
    ProjectMembership.objects.create(project=projects.web, user=projects.bot_admin, role=Role.VIEWER)
    body = client_for(user=projects.bot_admin).get("/api/tenants").json()
    rows = {t["slug"]: t for t in body["results"]}
    assert list(rows) == ["acme", "other"] and body["count"] == 2
    assert rows["acme"]["role"] == "project"
    assert [(p["slug"], p["role"]) for p in rows["acme"]["project_roles"]] == [("bot", "admin"), ("web", "viewer")]
    assert rows["acme"]["project_roles"][0] == {"id": projects.bot.pk, "slug": "bot", "name": "Support bot",
                                                "role": "admin"}
    assert rows["other"]["project_roles"] == [{"id": theirs.pk, "slug": "theirs", "name": "Theirs",
                                               "role": "viewer"}]
    assert rows["acme"]["settings"] is None  # tenant-wide, as GET /api/tenants/{id} is 403 for them


def test_a_tenant_role_lists_no_project_roles_and_the_settings(projects, client_for):
    body = client_for(user=projects.admin).get("/api/tenants").json()
    [acme] = body["results"]
    assert (acme["role"], acme["project_roles"]) == ("admin", [])
    assert acme["settings"]["limits"]["redis_outage"] == "inherit"
    support = client_for(user=projects.support).get("/api/tenants").json()
    assert {(t["slug"], t["role"]) for t in support["results"]} == {("acme", "support"), ("other", "support")}


def test_the_outsider_does_not_see_a_tenant_through_someone_elses_project_role(projects, client_for):
    body = client_for(user=projects.other_owner).get("/api/tenants").json()
    assert [(t["slug"], t["role"], t["project_roles"]) for t in body["results"]] == [("other", "owner", [])]
    body = client_for(key=projects.admin_key).get("/api/tenants").json()
    assert [(t["slug"], t["role"]) for t in body["results"]] == [("acme", "admin")]
