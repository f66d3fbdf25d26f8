"""Project aliases over /api/aliases and the console, and a project's default model over
/api/projects: names unique per tenant-wide set and per project (a project may reuse a tenant-wide
name), the listing filter, who may do what (tenant admins everything; a project admin their
project's aliases only; a project viewer reads them; outsiders nothing), fallbacks where the
alias lives, and a default model checked against what the project's keys may use."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.services import budget_create
from core.errors import InvalidInput
from providers.catalog import CatalogEntry
from providers.models import ModelAlias, ModelMode, ProviderModel
from providers.services import alias_create, provider_create, provider_models_upsert
from tenants.access import SYSTEM
from tenants.models import AuditEvent, Project, ProjectMembership, Role
from tenants.services import project_delete

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(world):
    """acme: provider ``up`` (chat models alpha and beta, embedding model emb); projects ``bot`` and
    ``web``; ``bot_admin`` administers bot only, ``bot_viewer`` reads bot only. Aliases: tenant-wide
    ``fast``; bot's ``fast`` and ``bot-only``; web's ``web-only``."""
    provider = provider_create(owner=world.tenant, data={"name": "up", "base_url": "http://127.0.0.1:9/v1"})
    provider_models_upsert(provider=provider, catalog=[CatalogEntry("alpha"), CatalogEntry("beta"),
                                                       CatalogEntry("emb", mode=ModelMode.EMBEDDING)])
    User = get_user_model()
    world.bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Bot")
    world.web = Project.objects.create(tenant=world.tenant, slug="web", name="Web")
    world.bot_admin = User.objects.create_user("botadmin@acme.test", "botadmin@acme.test", "pw")
    world.bot_viewer = User.objects.create_user("botviewer@acme.test", "botviewer@acme.test", "pw")
    ProjectMembership.objects.create(project=world.bot, user=world.bot_admin, role=Role.ADMIN)
    ProjectMembership.objects.create(project=world.bot, user=world.bot_viewer, role=Role.VIEWER)
    world.fast = alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "fast",
                                                                      "targets": [{"model": "up:alpha"}]})
    world.bot_fast = alias_create(tenant=world.tenant, actor=SYSTEM, data={
        "name": "fast", "project": world.bot, "targets": [{"model": "up:beta"}]})
    world.bot_only = alias_create(tenant=world.tenant, actor=SYSTEM, data={
        "name": "bot-only", "project": world.bot, "targets": [{"model": "up:alpha"}]})
    world.web_only = alias_create(tenant=world.tenant, actor=SYSTEM, data={
        "name": "web-only", "project": world.web, "targets": [{"model": "up:beta"}]})
    return world


def body(name: str, **more) -> dict:
    return {"name": name, "targets": [{"model": "up:alpha"}], **more}


def listed(client, query: str = "") -> list[tuple[str, str]]:
    """(name, project slug or "" for a tenant-wide alias), sorted."""
    response = client.get(f"/api/aliases{query}")
    assert response.status_code == 200, response.json()
    return sorted((a["name"], a["project"] or "") for a in response.json()["results"])


# --- names and the listing ---------------------------------------------------------------------


def test_names_are_unique_per_tenant_wide_set_and_per_project(setup, client_for):
    client = client_for(key=setup.admin_key)
    # a project may take a tenant-wide name, and another project the same one
    created = client.post("/api/aliases", body("bot-only", project="web"), format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["project"] == "web"
    twice = client.post("/api/aliases", body("fast", project="bot"), format="json")
    assert twice.status_code == 409 and "Project 'bot' already has an alias named 'fast'" in str(twice.json())
    tenant_twice = client.post("/api/aliases", body("fast"), format="json")
    assert tenant_twice.status_code == 409 and "Tenant 'acme' already has an alias named 'fast'" in str(
        tenant_twice.json())
    by_id = client.post("/api/aliases", body("by-id", project=setup.bot.pk), format="json")
    assert by_id.status_code == 201 and by_id.json()["project"] == "bot"
    tenant_wide = client.post("/api/aliases", body("everyone", project=""), format="json")
    assert tenant_wide.status_code == 201 and tenant_wide.json()["project"] is None
    event = AuditEvent.objects.get(action="alias.create", target="alias:web/bot-only")
    assert event.after["project"] == "web"
    # renaming into a taken name of its project is a 409 too
    renamed = client.put(f"/api/aliases/{setup.bot_only.pk}", {"name": "fast"}, format="json")
    assert renamed.status_code == 409 and "Project 'bot'" in str(renamed.json())


def test_the_listing_filters_by_project(setup, client_for):
    client = client_for(user=setup.admin)
    assert listed(client) == [("bot-only", "bot"), ("fast", ""), ("fast", "bot"), ("web-only", "web")]
    assert listed(client, "?project=bot") == [("bot-only", "bot"), ("fast", "bot")]
    assert listed(client, f"?project={setup.web.pk}") == [("web-only", "web")]
    assert listed(client, "?project=-") == [("fast", "")]
    assert client.get("/api/aliases?project=nope").status_code == 404


def test_an_unknown_or_another_tenants_project_is_not_found(setup, client_for):
    client = client_for(key=setup.admin_key)
    theirs = Project.objects.get(tenant=setup.other, slug="default")
    for project in ("nope", theirs.pk):
        response = client.post("/api/aliases", body("x", project=project), format="json")
        assert response.status_code == 404, response.json()
    outsider = client_for(key=setup.other_admin_key)
    assert outsider.get("/api/aliases?project=bot").status_code == 404
    assert outsider.get(f"/api/aliases/{setup.bot_fast.pk}").status_code == 404
    assert outsider.delete(f"/api/aliases/{setup.bot_fast.pk}").status_code == 404
    assert outsider.get("/api/aliases").json()["count"] == 0
    assert not ModelAlias.objects.filter(name="x").exists()


def test_an_alias_moves_between_projects_and_tenant_wide(setup, client_for):
    client = client_for(key=setup.admin_key)
    moved = client.put(f"/api/aliases/{setup.bot_only.pk}", {"project": "web"}, format="json")
    assert moved.status_code == 200 and moved.json()["project"] == "web"
    wide = client.put(f"/api/aliases/{setup.bot_only.pk}", {"project": None}, format="json")
    assert wide.status_code == 200 and wide.json()["project"] is None
    # into a project that has the name already: 409
    clash = client.put(f"/api/aliases/{setup.fast.pk}", {"project": "bot"}, format="json")
    assert clash.status_code == 409 and "Project 'bot' already has an alias named 'fast'" in str(clash.json())


# --- fallbacks where the alias lives ---------------------------------------------------------------


def test_fallbacks_of_a_project_alias_may_name_its_projects_aliases_only(setup, client_for):
    client = client_for(key=setup.admin_key)
    ok = client.post("/api/aliases", body("chain", project="bot", context_window_fallbacks=["bot-only", "fast"]),
                     format="json")
    assert ok.status_code == 201, ok.json()
    other = client.post("/api/aliases", body("chain", project="web", context_window_fallbacks=["bot-only"]),
                        format="json")
    assert other.status_code == 400
    assert "'bot-only' is neither an alias of project 'web' nor a tenant-wide one" in str(other.json())
    wide = client.post("/api/aliases", body("chain", content_policy_fallbacks=["web-only"]), format="json")
    assert wide.status_code == 400
    assert "'web-only' is neither an alias of this tenant nor a model it may use" in str(wide.json())
    # moving an alias re-checks its fallbacks where it goes
    moved = client.put(f"/api/aliases/{ok.json()['id']}", {"project": "web"}, format="json")
    assert moved.status_code == 400 and "context_window_fallbacks[0]" in str(moved.json())
    assert ModelAlias.objects.get(pk=ok.json()["id"]).project == setup.bot


# --- who may do what -------------------------------------------------------------------------------


def test_a_project_admin_manages_its_projects_aliases_only(setup, client_for):
    client = client_for(user=setup.bot_admin)
    assert listed(client) == [("bot-only", "bot"), ("fast", "bot")]
    assert listed(client, "?project=-") == []
    assert client.get("/api/aliases?project=web").status_code == 404
    created = client.post("/api/aliases", body("mine", project="bot"), format="json")
    assert created.status_code == 201, created.json()
    mine = created.json()["id"]
    assert client.put(f"/api/aliases/{mine}", {"retries": 0}, format="json").status_code == 200
    # not tenant-wide ones: neither creating, nor turning theirs into one
    wide = client.post("/api/aliases", body("wide"), format="json")
    assert wide.status_code == 403, wide.json()
    assert "some of its projects only" in wide.json()["error"]["message"]
    assert "creating tenant-wide aliases" in wide.json()["error"]["message"]
    assert client.put(f"/api/aliases/{mine}", {"project": ""}, format="json").status_code == 403
    # another project's and tenant-wide aliases are not even there for it
    assert client.post("/api/aliases", body("x", project="web"), format="json").status_code == 404
    for alias in (setup.fast, setup.web_only):
        assert client.get(f"/api/aliases/{alias.pk}").status_code == 404
        assert client.put(f"/api/aliases/{alias.pk}", {"retries": 0}, format="json").status_code == 404
        assert client.delete(f"/api/aliases/{alias.pk}").status_code == 404
    assert client.delete(f"/api/aliases/{mine}").status_code == 204
    assert client.delete(f"/api/aliases/{setup.bot_fast.pk}").status_code == 204
    assert set(ModelAlias.objects.filter(tenant=setup.tenant).values_list("name", "project__slug")) == {
        ("fast", None), ("bot-only", "bot"), ("web-only", "web")}


def test_a_project_viewer_reads_its_projects_aliases_and_changes_nothing(setup, client_for):
    client = client_for(user=setup.bot_viewer)
    assert listed(client) == [("bot-only", "bot"), ("fast", "bot")]
    assert client.get(f"/api/aliases/{setup.bot_only.pk}").json()["project"] == "bot"
    refused = client.post("/api/aliases", body("x", project="bot"), format="json")
    assert refused.status_code == 403 and "role on project 'bot' is viewer" in refused.json()["error"]["message"]
    assert client.put(f"/api/aliases/{setup.bot_only.pk}", {"retries": 0}, format="json").status_code == 403
    assert client.delete(f"/api/aliases/{setup.bot_only.pk}").status_code == 403
    assert client.get(f"/api/aliases/{setup.fast.pk}").status_code == 404
    assert ModelAlias.objects.filter(pk=setup.bot_only.pk, retries=1).exists()


def test_tenant_viewers_read_every_alias_and_change_none(setup, client_for):
    client = client_for(user=setup.viewer)
    assert len(listed(client)) == 4
    assert client.post("/api/aliases", body("x", project="bot"), format="json").status_code == 403
    assert client.delete(f"/api/aliases/{setup.bot_fast.pk}").status_code == 403


def test_a_suspended_tenants_project_admin_changes_nothing(setup, client_for):
    setup.tenant.is_active = False
    setup.tenant.save()
    refused = client_for(user=setup.bot_admin).post("/api/aliases", body("x", project="bot"), format="json")
    assert refused.status_code == 403 and "suspended" in refused.json()["error"]["message"]


# --- a project's default model ------------------------------------------------------------------------


@pytest.mark.parametrize("project, model", [
    ("bot", "bot-only"),  # its own alias
    ("bot", "fast"),  # a name its own alias shadows
    ("web", "fast"),  # a tenant-wide alias
    ("web", "up:alpha"),
    ("web", "alpha"),  # a bare model id
])
def test_a_projects_default_model_is_what_its_keys_may_use(setup, client_for, project, model):
    response = client_for(user=setup.admin).patch(f"/api/projects/{project}", {"default_model": model},
                                                  format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["default_model"] == model


@pytest.mark.parametrize("project, model, words", [
    ("web", "bot-only", "'bot-only' is not an alias or model this project's keys may use; use one of: fast, "
                        "up:alpha"),
    ("bot", "nope", "use one of: bot-only, up:alpha (or"),  # its own fast (up:beta) is unusable now
    ("bot", "up:emb", "'up:emb' is not a chat model"),
    ("bot", "dead", "'dead' is an alias none of whose models this tenant may use now"),
])
def test_a_default_model_its_keys_could_not_use_is_a_clear_400(setup, client_for, project, model, words):
    dead = alias_create(tenant=setup.tenant, actor=SYSTEM, data={"name": "dead", "project": setup.bot,
                                                                 "targets": [{"model": "up:beta"}]})
    ProviderModel.objects.filter(model_id="beta").update(enabled=False)
    assert dead.targets.count() == 1
    client = client_for(user=setup.admin)
    response = client.patch(f"/api/projects/{project}", {"default_model": model}, format="json")
    assert response.status_code == 400, response.json()
    assert "default_model" in response.json()["error"]["fields"]
    assert words in str(response.json())
    assert Project.objects.get(tenant=setup.tenant, slug=project).default_model == ""


def test_a_new_project_may_default_to_a_tenant_wide_name_only(setup, client_for):
    client = client_for(user=setup.admin)
    ok = client.post("/api/projects", {"slug": "new", "name": "New", "default_model": "fast"}, format="json")
    assert ok.status_code == 201 and ok.json()["default_model"] == "fast"
    refused = client.post("/api/projects", {"slug": "newer", "name": "Newer", "default_model": "bot-only"},
                          format="json")
    assert refused.status_code == 400 and "'bot-only' is not an alias or model" in str(refused.json())
    # emptying it is always fine, and an unchanged stale value does not block other edits
    Project.objects.filter(slug="new").update(default_model="gone")
    assert client.patch("/api/projects/new", {"name": "Renamed"}, format="json").status_code == 200
    assert client.patch("/api/projects/new", {"default_model": ""}, format="json").json()["default_model"] is None


# --- budgets and deletion ------------------------------------------------------------------------------


def test_a_budgets_downgrade_alias_is_a_tenant_wide_one(setup):
    with pytest.raises(InvalidInput, match="'bot-only' is not an alias of this tenant"):
        budget_create(tenant=setup.tenant, actor=SYSTEM, data={"name": "b", "amount": Decimal("5"),
                                                               "action": "downgrade", "downgrade_alias": "bot-only"})
    budget = budget_create(tenant=setup.tenant, actor=SYSTEM, data={"name": "b", "amount": Decimal("5"),
                                                                    "action": "downgrade", "downgrade_alias": "fast"})
    assert budget.downgrade_alias == "fast"


def test_deleting_a_project_deletes_its_aliases(setup):
    project_delete(project=setup.web, actor=SYSTEM)
    assert not ModelAlias.objects.filter(name="web-only").exists()
    assert ModelAlias.objects.filter(tenant=setup.tenant).count() == 3


# --- the console ------------------------------------------------------------------------------------


def console_form(name: str, project: str = "") -> dict:
    return {"name": name, "project": project, "retries": "1", "allowed_fails": "3", "cooldown_seconds": "60",
            "strategy": "weighted", "targets-TOTAL_FORMS": "1", "targets-INITIAL_FORMS": "0",
            "targets-MIN_NUM_FORMS": "0", "targets-MAX_NUM_FORMS": "20", "targets-0-ORDER": "1",
            "targets-0-model": "up:alpha"}


def test_the_console_creates_lists_and_filters_project_aliases(setup):
    client = Client()
    client.force_login(setup.admin)
    form = client.get("/app/acme/aliases/new/?project=bot").content.decode()
    assert '<option value="bot" selected>' in form
    created = client.post("/app/acme/aliases/new/", console_form("console-made", "bot"))
    assert created.status_code == 302, created.content.decode()[:2000]
    made = ModelAlias.objects.get(name="console-made")
    assert made.project == setup.bot
    edit = client.get(f"/app/acme/aliases/{made.pk}/").content.decode()
    assert '<option value="bot" selected>' in edit
    clash = client.post("/app/acme/aliases/new/", console_form("fast", "bot"))
    assert clash.status_code == 400 and "Project &#x27;bot&#x27; already has an alias named" in clash.content.decode()
    page = client.get("/app/acme/aliases/?project=bot").content.decode()
    assert "console-made" in page and "bot-only" in page and "web-only" not in page
    assert "project bot" in page
    wide = client.get("/app/acme/aliases/?project=-").content.decode()
    assert "tenant-wide" in wide and "bot-only" not in wide and "web-only" not in wide
    assert client.get("/app/acme/aliases/?project=nope").status_code == 404
