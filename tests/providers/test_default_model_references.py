"""No dangling default models: the tenant's default model resolves tenant-wide (a project's alias
is refused, as is a name nothing answers), and an alias a default model names cannot be deleted,
renamed or moved away from it — over REST, in the console and by a configuration file's --prune,
which instead orders the deletion after the file's own change of that default.

The setup is test_project_aliases_api's: provider ``up`` (alpha, beta, emb), tenant-wide ``fast``,
bot's ``fast`` and ``bot-only``, web's ``web-only``."""

import pytest

from core.errors import Conflict
from providers.models import ModelAlias
from providers.services import alias_create, alias_update
from tenantconfig.document import config_export
from tenantconfig.schema import ConfigInvalid
from tenantconfig.services import config_apply
from tenants.access import SYSTEM
from tenants.models import Project, Tenant
from tenants.services import project_update, tenant_update
from tests.providers import test_project_aliases_api

pytestmark = pytest.mark.django_db
setup = test_project_aliases_api.setup  # the fixture


def tenant_url(world) -> str:
    return f"/api/tenants/{world.tenant.pk}"


def default_of(project: Project) -> str:
    return Project.objects.get(pk=project.pk).default_model


# --- the tenant's default model --------------------------------------------------------------


@pytest.mark.parametrize("model", ["fast", "up:alpha", "beta"])
def test_the_tenant_default_may_be_a_tenant_wide_alias_or_a_model(setup, client_for, model):
    response = client_for(key=setup.admin_key).patch(tenant_url(setup), {"settings": {"llm": {"model": model}}},
                                                     format="json")
    assert response.status_code == 200, response.json()
    assert Tenant.objects.get(pk=setup.tenant.pk).default_model == model


@pytest.mark.parametrize("model, words", [
    ("bot-only", "not an alias or model every key of the tenant may use"),  # a project's alias
    ("web-only", "not an alias or model every key of the tenant may use"),
    ("nowhere", "not an alias or model every key of the tenant may use"),
    ("emb", "not a chat model"),
])
def test_a_tenant_default_some_keys_could_not_use_is_a_clear_400(setup, client_for, model, words):
    response = client_for(key=setup.admin_key).patch(tenant_url(setup), {"settings": {"llm": {"model": model}}},
                                                     format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("settings.llm.model: ") and words in error["message"]
    assert "fast" in error["message"] and "up:alpha" in error["message"]  # what it may use instead
    assert "bot-only" not in error["message"].split("use one of:")[1]
    assert Tenant.objects.get(pk=setup.tenant.pk).default_model == ""


def test_the_console_settings_page_refuses_a_project_alias_as_the_tenant_default(setup, client_for):
    from tests.config.console.test_pages import settings_data

    client = client_for(user=setup.admin)
    page = client.get(f"/app/{setup.tenant.slug}/settings/").content.decode()
    assert 'value="fast"' in page and 'value="bot-only"' not in page  # not offered
    response = client.post(f"/app/{setup.tenant.slug}/settings/", settings_data(default_model="bot-only"))
    assert response.status_code == 400
    assert Tenant.objects.get(pk=setup.tenant.pk).default_model == ""


def test_an_unchanged_stale_tenant_default_does_not_block_other_settings(setup):
    Tenant.objects.filter(pk=setup.tenant.pk).update(default_model="gone")  # its alias deleted long ago
    tenant = tenant_update(tenant=setup.tenant, changes={"default_model": "gone", "temperature": 0.5}, actor=SYSTEM)
    assert (tenant.default_model, tenant.temperature) == ("gone", 0.5)


# --- deleting, renaming or moving an alias a default names --------------------------------------


def test_deleting_the_tenant_defaults_alias_is_refused_naming_it(setup, client_for):
    tenant_update(tenant=setup.tenant, changes={"default_model": "fast"}, actor=SYSTEM)
    project_update(project=setup.web, changes={"default_model": "fast"}, actor=SYSTEM)
    project_update(project=setup.bot, changes={"default_model": "fast"}, actor=SYSTEM)  # bot has its own fast
    client = client_for(key=setup.admin_key)
    response = client.delete(f"/api/aliases/{setup.fast.pk}")
    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert "Alias 'fast' is still in use as the tenant's default model" in message
    assert "the default model of project 'web'" in message and "project 'bot'" not in message
    assert "first" in message
    assert ModelAlias.objects.filter(pk=setup.fast.pk).exists()

    tenant_update(tenant=setup.tenant, changes={"default_model": "up:alpha"}, actor=SYSTEM)
    project_update(project=setup.web, changes={"default_model": ""}, actor=SYSTEM)
    assert client.delete(f"/api/aliases/{setup.fast.pk}").status_code == 204


def test_deleting_a_projects_default_alias_is_refused_unless_a_tenant_wide_one_stands_behind(setup, client_for):
    project_update(project=setup.bot, changes={"default_model": "bot-only"}, actor=SYSTEM)
    client = client_for(key=setup.admin_key)
    response = client.delete(f"/api/aliases/{setup.bot_only.pk}")
    assert response.status_code == 409
    assert "the default model of project 'bot'" in response.json()["error"]["message"]

    # bot's own "fast" shadows the tenant-wide one: deleting it leaves bot's default on that one.
    project_update(project=setup.bot, changes={"default_model": "fast"}, actor=SYSTEM)
    assert client.delete(f"/api/aliases/{setup.bot_fast.pk}").status_code == 204
    assert client.delete(f"/api/aliases/{setup.bot_only.pk}").status_code == 204


def test_a_project_admin_gets_the_same_refusal(setup, client_for):
    project_update(project=setup.bot, changes={"default_model": "bot-only"}, actor=SYSTEM)
    response = client_for(user=setup.bot_admin).delete(f"/api/aliases/{setup.bot_only.pk}")
    assert response.status_code == 409
    assert "project 'bot'" in response.json()["error"]["message"]


def test_renaming_or_moving_an_alias_away_from_a_default_is_refused(setup, client_for):
    project_update(project=setup.web, changes={"default_model": "fast"}, actor=SYSTEM)
    client = client_for(key=setup.admin_key)
    renamed = client.put(f"/api/aliases/{setup.fast.pk}", {"name": "quick", "targets": [{"model": "up:alpha"}]},
                         format="json")
    assert renamed.status_code == 409
    assert "project 'web'" in renamed.json()["error"]["message"]
    assert ModelAlias.objects.get(pk=setup.fast.pk).name == "fast"
    labs = Project.objects.create(tenant=setup.tenant, slug="labs", name="Labs")
    with pytest.raises(Conflict, match="project 'web'"):
        alias_update(alias=setup.fast, data={"project": labs}, actor=SYSTEM)
    # Into web itself: web's keys still see it.
    moved = alias_update(alias=ModelAlias.objects.get(pk=setup.fast.pk), data={"project": setup.web}, actor=SYSTEM)
    assert moved.project_id == setup.web.pk and default_of(setup.web) == "fast"


def test_the_console_shows_the_refusal(setup, client_for):
    project_update(project=setup.bot, changes={"default_model": "bot-only"}, actor=SYSTEM)
    client = client_for(user=setup.admin)
    response = client.post(f"/app/{setup.tenant.slug}/aliases/{setup.bot_only.pk}/delete/", follow=True)
    assert response.status_code == 200
    assert "still in use as the default model of project &#x27;bot&#x27;" in response.content.decode()
    assert ModelAlias.objects.filter(pk=setup.bot_only.pk).exists()


# --- configuration as code ----------------------------------------------------------------------


def test_prune_refuses_to_delete_an_alias_a_kept_default_names(setup):
    project_update(project=setup.bot, changes={"default_model": "bot-only"}, actor=SYSTEM)
    doc = config_export(tenant=setup.tenant)
    doc["aliases"] = [a for a in doc["aliases"] if a["name"] != "bot-only"]
    with pytest.raises(ConfigInvalid) as caught:
        config_apply(tenant=setup.tenant, document=doc, actor=SYSTEM, prune=True)
    assert "aliases: 'bot/bot-only': --prune would delete it, but it stays the default model of project 'bot'" in (
        "\n".join(caught.value.errors))
    assert ModelAlias.objects.filter(pk=setup.bot_only.pk).exists()


def test_prune_deletes_it_after_the_file_moves_the_default_off_it(setup):
    project_update(project=setup.bot, changes={"default_model": "bot-only"}, actor=SYSTEM)
    tenant_update(tenant=setup.tenant, changes={"default_model": "fast"}, actor=SYSTEM)
    doc = config_export(tenant=setup.tenant)
    doc["aliases"] = [a for a in doc["aliases"]
                      if a["name"] != "bot-only" and not (a["name"] == "fast" and not a.get("project"))]
    doc["aliases"].append({"name": "speedy", "deployments": [{"model": "up:beta"}]})
    doc["settings"]["default_model"] = "speedy"  # an alias the same file creates
    for project in doc["projects"]:
        if project["slug"] == "bot":
            project["default_model"] = "fast"  # bot's own
    config_apply(tenant=setup.tenant, document=doc, actor=SYSTEM, prune=True)
    assert not ModelAlias.objects.filter(pk__in=[setup.bot_only.pk, setup.fast.pk]).exists()
    assert Tenant.objects.get(pk=setup.tenant.pk).default_model == "speedy"
    assert default_of(setup.bot) == "fast"


def test_a_file_may_not_set_the_tenant_default_to_a_projects_alias(setup):
    alias_create(tenant=setup.tenant, actor=SYSTEM, data={"name": "web-x", "project": setup.web,
                                                          "targets": [{"model": "up:alpha"}]})
    doc = {"version": 1, "settings": {"default_model": "web-x"}}
    with pytest.raises(Exception, match="settings.default_model: default_model 'web-x' is not an alias or model"):
        config_apply(tenant=setup.tenant, document=doc, actor=SYSTEM)
