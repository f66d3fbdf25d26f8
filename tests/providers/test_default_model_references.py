"""No dangling default models: the tenant's default model resolves tenant-wide (a project's alias
is refused, as is a name nothing answers), and an alias a default model names cannot be deleted,
renamed or moved away from it — over REST, in the console and by a configuration file's --prune,
which instead orders the deletion after the file's own change of that default.

The setup is test_project_aliases_api's: provider ``up`` (alpha, beta, emb), tenant-wide ``fast``,
bot's ``fast`` and ``bot-only``, web's ``web-only``."""

import pytest

from core.errors import Conflict
from providers.catalog import CatalogEntry
from providers.models import ModelAlias, Provider, ProviderModel
from providers.services import (
    alias_create,
    alias_update,
    provider_create,
    provider_model_set_enabled,
    provider_models_upsert,
)
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


# --- the tenant's default embeddings model -------------------------------------------------------


def test_the_default_embeddings_model_is_checked_when_set(setup, client_for):
    client = client_for(key=setup.admin_key)
    ok = client.patch(tenant_url(setup), {"settings": {"embeddings": {"model": "up:emb"}}}, format="json")
    assert ok.status_code == 200, ok.json()
    assert Tenant.objects.get(pk=setup.tenant.pk).default_embedding_model == "up:emb"
    for model, words in [("up:alpha", "is not an embeddings model"), ("nowhere", "not an alias or model"),
                         ("bot-only", "not an alias or model")]:
        response = client.patch(tenant_url(setup), {"settings": {"embeddings": {"model": model}}}, format="json")
        assert response.status_code == 400, model
        message = response.json()["error"]["message"]
        assert message.startswith("settings.embeddings.model: default_embedding_model") and words in message
        assert "up:emb" in message.split("use one of:")[1]  # what it may use instead
    assert Tenant.objects.get(pk=setup.tenant.pk).default_embedding_model == "up:emb"
    outsider = client_for(key=setup.other_admin_key).patch(
        tenant_url(setup), {"settings": {"embeddings": {"model": "up:alpha"}}}, format="json")
    assert outsider.status_code == 404


def test_the_admin_checks_the_default_embeddings_model(setup):
    from tenants.admin import TenantAdminForm

    class Form(TenantAdminForm):
        class Meta:
            model = Tenant
            fields = ["default_model", "default_embedding_model"]

    form = Form(instance=setup.tenant)
    form.cleaned_data = {"default_embedding_model": "up:alpha"}
    with pytest.raises(Exception, match="is not an embeddings model"):
        form.clean_default_embedding_model()
    form.cleaned_data = {"default_embedding_model": "up:emb"}
    assert form.clean_default_embedding_model() == "up:emb"


def test_an_alias_the_default_embeddings_model_names_cannot_be_deleted(setup, client_for):
    vectors = alias_create(tenant=setup.tenant, actor=SYSTEM, data={"name": "vectors",
                                                                    "targets": [{"model": "up:emb"}]})
    tenant_update(tenant=setup.tenant, changes={"default_embedding_model": "vectors"}, actor=SYSTEM)
    response = client_for(key=setup.admin_key).delete(f"/api/aliases/{vectors.pk}")
    assert response.status_code == 409
    assert "still in use as the tenant's default embeddings model" in response.json()["error"]["message"]


# --- disabling or deleting a model or provider a default names ----------------------------------


def model_url(provider, model_id: str) -> str:
    return f"/api/providers/{provider.pk}/models/{model_id}/enable"


def test_disabling_a_model_a_default_names_is_refused_naming_them(setup, client_for):
    up = ProviderModel.objects.get(model_id="alpha").provider
    tenant_update(tenant=setup.tenant, changes={"default_model": "up:alpha", "default_embedding_model": "emb"},
                  actor=SYSTEM)
    project_update(project=setup.web, changes={"default_model": "alpha"}, actor=SYSTEM)  # a bare id
    client = client_for(key=setup.admin_key)
    response = client.put(model_url(up, "alpha"), {"enabled": False}, format="json")
    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert message.startswith("Model 'up:alpha' is still named by the tenant's default model (its settings), "
                              "'up:alpha' and the default model of project 'web', 'alpha'; disabling it")
    assert "first" in message and "tenant 'acme'" not in message
    assert ProviderModel.objects.get(model_id="alpha").enabled
    emb = client.put(model_url(up, "emb"), {"enabled": False}, format="json")
    assert emb.status_code == 409 and "default embeddings model (its settings), 'emb'" in emb.json()["error"][
        "message"]
    assert client_for(key=setup.other_admin_key).put(model_url(up, "alpha"), {"enabled": False},
                                                     format="json").status_code == 404
    assert client_for(user=setup.viewer).put(model_url(up, "alpha"), {"enabled": False},
                                             format="json").status_code == 403

    tenant_update(tenant=setup.tenant, changes={"default_model": "fast"}, actor=SYSTEM)
    project_update(project=setup.web, changes={"default_model": ""}, actor=SYSTEM)
    assert client.put(model_url(up, "alpha"), {"enabled": False}, format="json").status_code == 200
    assert not ProviderModel.objects.get(model_id="alpha").enabled


def test_a_bare_id_another_provider_still_serves_does_not_block(setup, client_for):
    other = provider_create(owner=setup.tenant, data={"name": "side", "base_url": "http://127.0.0.1:9/v1"})
    provider_models_upsert(provider=other, catalog=[CatalogEntry("alpha")])
    tenant_update(tenant=setup.tenant, changes={"default_model": "alpha"}, actor=SYSTEM)
    up = ProviderModel.objects.get(model_id="alpha", provider__name="up").provider
    response = client_for(key=setup.admin_key).put(model_url(up, "alpha"), {"enabled": False}, format="json")
    assert response.status_code == 200, response.json()
    # now side's alpha is the only one left
    again = client_for(key=setup.admin_key).put(model_url(other, "alpha"), {"enabled": False}, format="json")
    assert again.status_code == 409


def test_disabling_or_deleting_a_provider_a_default_names_is_refused(setup, client_for):
    up = ProviderModel.objects.get(model_id="alpha").provider
    project_update(project=setup.bot, changes={"default_model": "up:beta"}, actor=SYSTEM)
    client = client_for(key=setup.admin_key)
    disabled = client.put(f"/api/providers/{up.pk}", {"enabled": False}, format="json")
    assert disabled.status_code == 409
    assert "Provider 'up' is still named by the default model of project 'bot', 'up:beta'; disabling it" in (
        disabled.json()["error"]["message"])
    deleted = client.delete(f"/api/providers/{up.pk}")
    assert deleted.status_code == 409 and "deleting it would leave it naming nothing" in deleted.json()["error"][
        "message"]
    page = client_for(user=setup.admin).post(f"/app/{setup.tenant.slug}/providers/{up.pk}/delete/", follow=True)
    assert "still named by the default model of project &#x27;bot&#x27;" in page.content.decode()
    assert Provider.objects.get(pk=up.pk).enabled

    project_update(project=setup.bot, changes={"default_model": "fast"}, actor=SYSTEM)
    assert client.put(f"/api/providers/{up.pk}", {"enabled": False}, format="json").status_code == 200
    assert client.delete(f"/api/providers/{up.pk}").status_code == 204


def test_a_tenants_choice_of_a_platform_model_and_staff_on_the_platform(setup):
    platform = provider_create(owner=None, data={"name": "plat", "base_url": "http://127.0.0.1:9/v1"})
    provider_models_upsert(provider=platform, catalog=[CatalogEntry("gamma")])
    gamma = ProviderModel.objects.get(provider=platform, model_id="gamma")
    for tenant in (setup.tenant, setup.other):
        provider_model_set_enabled(provider_model=gamma, tenant=tenant, enabled=True, actor=SYSTEM)
        tenant_update(tenant=tenant, changes={"default_model": "plat:gamma"}, actor=SYSTEM)
    with pytest.raises(Conflict, match=r"^Model 'plat:gamma' is still named by the tenant's default model") as mine:
        provider_model_set_enabled(provider_model=gamma, tenant=setup.tenant, enabled=False, actor=SYSTEM)
    assert "tenant 'other'" not in mine.value.message  # a tenant's choice answers for that tenant only
    with pytest.raises(Conflict) as staff:  # staff: every tenant
        provider_model_set_enabled(provider_model=gamma, tenant=None, enabled=False, actor=SYSTEM)
    assert ("tenant 'acme': the tenant's default model (its settings), 'plat:gamma' and tenant 'other': "
            in staff.value.message)
    tenant_update(tenant=setup.other, changes={"default_model": ""}, actor=SYSTEM)
    provider_model_set_enabled(provider_model=gamma, tenant=setup.other, enabled=False, actor=SYSTEM)


def test_the_admin_refuses_it_too(setup, client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("root", "root@t.test", "pw"))
    tenant_update(tenant=setup.tenant, changes={"default_model": "up:alpha"}, actor=SYSTEM)
    alpha = ProviderModel.objects.get(model_id="alpha")
    change = client.get(f"/admin/providers/providermodel/{alpha.pk}/change/")
    assert change.status_code == 200
    form = change.context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data.update(enabled="")  # unticked
    data = {k: v for k, v in data.items() if v is not False}
    response = client.post(f"/admin/providers/providermodel/{alpha.pk}/change/", data)
    assert response.status_code == 200 and "still named by the tenant&#x27;s default model" in (
        response.content.decode())
    assert ProviderModel.objects.get(pk=alpha.pk).enabled
    delete = client.get(f"/admin/providers/provider/{alpha.provider_id}/delete/")
    assert "still named by the tenant&#x27;s default model" in delete.content.decode()
    client.post(f"/admin/providers/provider/{alpha.provider_id}/delete/", {"post": "yes"})
    assert Provider.objects.filter(pk=alpha.provider_id).exists()


def test_a_sync_that_drops_a_default_model_is_not_refused_and_the_settings_page_warns(setup, client_for):
    up = ProviderModel.objects.get(model_id="alpha").provider
    tenant_update(tenant=setup.tenant, changes={"default_model": "up:alpha"}, actor=SYSTEM)
    project_update(project=setup.web, changes={"default_model": "beta"}, actor=SYSTEM)
    provider_models_upsert(provider=up, catalog=[CatalogEntry("beta"), CatalogEntry("emb", mode="embedding")])
    assert ProviderModel.objects.get(model_id="alpha").stale
    page = client_for(user=setup.admin).get(f"/app/{setup.tenant.slug}/settings/").content.decode()
    assert 'id="dangling-defaults"' in page
    assert "the tenant&#x27;s default model (its settings): <span class=\"mono\">up:alpha</span>" in page
    assert "project &#x27;web&#x27;" not in page.split('id="dangling-defaults"')[1].split("</div>")[0]
    tenant_update(tenant=setup.tenant, changes={"default_model": "up:beta"}, actor=SYSTEM)
    page = client_for(user=setup.admin).get(f"/app/{setup.tenant.slug}/settings/").content.decode()
    assert 'id="dangling-defaults"' not in page


# --- configuration as code: disabling and moving the default in one file ---------------------------


def test_a_file_that_disables_a_default_model_and_moves_the_default_applies_in_either_order(setup):
    setup.tenant = tenant_update(tenant=setup.tenant, changes={"default_model": "up:alpha",
                                                               "default_embedding_model": "up:emb"}, actor=SYSTEM)
    doc = config_export(tenant=setup.tenant)
    up = next(p for p in doc["providers"] if p["name"] == "up")
    up["models"] = [{"id": "alpha", "enabled": False}, {"id": "emb", "enabled": False}]
    with pytest.raises(ConfigInvalid) as kept:  # the default still names it
        config_apply(tenant=setup.tenant, document=doc, actor=SYSTEM)
    assert "Model 'up:alpha' is still named by the tenant's default model" in "\n".join(kept.value.errors)
    doc["settings"]["default_model"] = "up:beta"
    doc["settings"]["default_embedding_model"] = None
    config_apply(tenant=setup.tenant, document=doc, actor=SYSTEM)
    tenant = Tenant.objects.get(pk=setup.tenant.pk)
    assert (tenant.default_model, tenant.default_embedding_model) == ("up:beta", "")
    assert not ProviderModel.objects.get(model_id="alpha").enabled


def test_a_file_that_disables_the_provider_and_moves_the_default_applies(setup):
    setup.tenant = tenant_update(tenant=setup.tenant, changes={"default_model": "up:alpha"}, actor=SYSTEM)
    doc = config_export(tenant=setup.tenant)
    next(p for p in doc["providers"] if p["name"] == "up")["enabled"] = False
    doc["settings"]["default_model"] = "fast"  # an alias (its target disabled: an alias is not checked here)
    config_apply(tenant=setup.tenant, document=doc, actor=SYSTEM)
    assert not Provider.objects.get(name="up").enabled
    assert Tenant.objects.get(pk=setup.tenant.pk).default_model == "fast"


def test_a_file_sets_the_default_embeddings_model_to_one_it_enables(setup):
    provider_model_set_enabled(provider_model=ProviderModel.objects.get(model_id="emb"), tenant=setup.tenant,
                               enabled=False, actor=SYSTEM)
    doc = config_export(tenant=setup.tenant)
    up = next(p for p in doc["providers"] if p["name"] == "up")
    assert up["models"] == [{"id": "emb", "enabled": False}]
    up["models"] = []
    doc["settings"]["default_embedding_model"] = "up:emb"
    config_apply(tenant=setup.tenant, document=doc, actor=SYSTEM)
    assert Tenant.objects.get(pk=setup.tenant.pk).default_embedding_model == "up:emb"


def test_the_console_refuses_disabling_a_default_model_or_its_provider(setup, client_for):
    up = ProviderModel.objects.get(model_id="alpha").provider
    tenant_update(tenant=setup.tenant, changes={"default_model": "up:alpha"}, actor=SYSTEM)
    client = client_for(user=setup.admin)
    toggled = client.post(f"/app/{setup.tenant.slug}/models/{up.pk}/toggle/alpha", {"enabled": "0"}, follow=True)
    assert "Model &#x27;up:alpha&#x27; is still named by the tenant&#x27;s default model" in toggled.content.decode()
    assert ProviderModel.objects.get(model_id="alpha").enabled
    form = {"name": "up", "provider_type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "priority": "0",
            "timeout_seconds": "60", "max_retries": "2", "sync_interval_minutes": "1440"}  # enabled unticked
    edited = client.post(f"/app/{setup.tenant.slug}/providers/{up.pk}/", form)
    assert edited.status_code == 400
    assert "Provider &#x27;up&#x27; is still named by the tenant&#x27;s default model" in edited.content.decode()
    assert Provider.objects.get(pk=up.pk).enabled
