"""The aliases REST API: create, read, reorder and delete with audit events, field-named errors
for invalid aliases, 409 on a duplicate name, and nothing for a viewer's changes or an outsider."""

import pytest

from providers.catalog import CatalogEntry
from providers.models import AliasTarget, ModelAlias
from providers.services import provider_create, provider_models_upsert
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def models(world):
    provider = provider_create(owner=world.tenant, data={"name": "up", "base_url": "http://127.0.0.1:9/v1"})
    provider_models_upsert(provider=provider, catalog=[CatalogEntry("alpha"), CatalogEntry("vendor/beta:free")])
    theirs = provider_create(owner=world.other, data={"name": "theirs", "base_url": "http://127.0.0.1:9/v1"})
    provider_models_upsert(provider=theirs, catalog=[CatalogEntry("secret")])
    return provider


BODY = {
    "name": "smart-cheap",
    "targets": [{"model": "up:alpha", "overrides": {"temperature": 0.2}}, {"model": "up:vendor/beta:free"}],
    "retries": 2, "allowed_fails": 5, "cooldown_seconds": 30, "timeout_seconds": 20,
}


def test_create_read_update_delete(world, client_for, models):
    client = client_for(key=world.admin_key)
    created = client.post("/api/aliases", BODY, format="json")
    assert created.status_code == 201, created.json()
    alias = created.json()
    assert [t["model"] for t in alias["targets"]] == ["up:alpha", "up:vendor/beta:free"]
    assert alias["targets"][0]["overrides"] == {"temperature": 0.2} and alias["targets"][0]["available"]
    assert (alias["retries"], alias["allowed_fails"], alias["cooldown_seconds"]) == (2, 5, 30)

    reordered = client.put(f"/api/aliases/{alias['id']}",
                           {"targets": [{"model": "up:vendor/beta:free"}, {"model": "up:alpha"}]}, format="json").json()
    assert [t["model"] for t in reordered["targets"]] == ["up:vendor/beta:free", "up:alpha"]
    assert AliasTarget.objects.filter(alias_id=alias["id"]).count() == 2
    assert client.get("/api/aliases").json()["count"] == 1
    assert client.delete(f"/api/aliases/{alias['id']}").status_code == 204
    assert not ModelAlias.objects.exists()
    actions = AuditEvent.objects.filter(action__startswith="alias.").order_by("pk").values_list("action", flat=True)
    assert list(actions) == ["alias.create", "alias.update", "alias.delete"]


@pytest.mark.parametrize("change, field, words", [
    ({"name": "has:colon"}, "name", "no ':'"),
    ({"targets": []}, "targets", "may not be empty"),
    ({"targets": [{"model": "theirs:secret"}]}, "targets[0].model", "not a model this tenant may use"),
    ({"targets": [{"model": "up:alpha", "overrides": {"temperature": 3}}]}, "targets[0].overrides.temperature",
     "less than or equal to 2"),
    ({"targets": [{"model": "up:alpha", "overrides": {"seed": 1}}]}, "targets[0].overrides.seed", "Unknown field"),
    ({"cooldown_seconds": 0}, "cooldown_seconds", "greater than or equal to 1"),
])
def test_invalid_aliases_say_which_field(world, client_for, models, change, field, words):
    response = client_for(key=world.admin_key).post("/api/aliases", {**BODY, **change}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert words in " ".join(error["fields"][field])
    assert not ModelAlias.objects.exists()


def test_duplicate_name_is_409(world, client_for, models):
    client = client_for(key=world.admin_key)
    client.post("/api/aliases", BODY, format="json")
    assert client.post("/api/aliases", BODY, format="json").status_code == 409


def test_outsider_and_viewer(world, client_for, models):
    alias_id = client_for(key=world.admin_key).post("/api/aliases", BODY, format="json").json()["id"]
    outsider = client_for(key=world.other_admin_key)
    assert outsider.get(f"/api/aliases/{alias_id}").status_code == 404
    assert outsider.put(f"/api/aliases/{alias_id}", {"retries": 0}, format="json").status_code == 404
    assert outsider.delete(f"/api/aliases/{alias_id}").status_code == 404
    assert outsider.get("/api/aliases").json()["count"] == 0
    viewer = client_for(user=world.viewer)
    assert viewer.get(f"/api/aliases/{alias_id}").status_code == 200
    assert viewer.post("/api/aliases", {**BODY, "name": "x"}, format="json").status_code == 403
    assert viewer.delete(f"/api/aliases/{alias_id}").status_code == 403
    assert ModelAlias.objects.count() == 1


DEPLOYMENTS = {
    "name": "spread",
    "deployments": [
        {"model": "up:alpha", "priority": 0, "weight": 3, "rpm_limit": 500, "tpm_limit": 90_000},
        {"model": "up:vendor/beta:free", "priority": 0, "weight": 1},
        {"model": "up:alpha", "priority": 1, "overrides": {"max_tokens": 100}},
    ],
    "strategy": "least-busy", "session_affinity": True,
}


def test_deployments_with_weights_limits_groups_and_strategy(world, client_for, models):
    client = client_for(key=world.admin_key)
    created = client.post("/api/aliases", DEPLOYMENTS, format="json")
    assert created.status_code == 201, created.json()
    alias = created.json()
    assert [(t["priority"], t["weight"], t["rpm_limit"], t["tpm_limit"]) for t in alias["targets"]] == [
        (0, 3, 500, 90_000), (0, 1, None, None), (1, 1, None, None)]
    assert (alias["strategy"], alias["session_affinity"]) == ("least-busy", True)
    assert (alias["context_window_fallbacks"], alias["content_policy_fallbacks"]) == ([], [])
    fallbacks = client.put(f"/api/aliases/{alias['id']}", {"context_window_fallbacks": ["up:alpha"],
                                                            "content_policy_fallbacks": ["alpha"]}, format="json")
    assert fallbacks.status_code == 200, fallbacks.json()
    assert fallbacks.json()["context_window_fallbacks"] == ["up:alpha"]
    event = AuditEvent.objects.filter(action="alias.update").latest("pk")
    assert event.after["content_policy_fallbacks"] == ["alpha"] and event.after["targets"][0]["weight"] == 3


def test_a_plain_list_stays_an_ordered_chain(world, client_for, models):
    alias = client_for(key=world.admin_key).post("/api/aliases", BODY, format="json").json()
    assert [t["priority"] for t in alias["targets"]] == [0, 1]
    assert alias["strategy"] == "weighted"


@pytest.mark.parametrize("change, field, words", [
    ({"strategy": "round-robin"}, "strategy", "not a valid choice"),
    ({"deployments": [{"model": "up:alpha", "weight": -1}]}, "targets[0].weight", "greater than or equal to 0"),
    ({"deployments": [{"model": "up:alpha", "rpm_limit": 0}]}, "targets[0].rpm_limit", "greater than or equal to 1"),
    ({"deployments": [{"model": "up:alpha", "priority": "first"}]}, "targets[0].priority", "integer"),
    ({"targets": [{"model": "up:alpha"}]}, "deployments", "not both"),
    # a strategy with every deployment alone in its group chooses nothing: said, not ignored
    ({"deployments": [{"model": "up:alpha"}, {"model": "up:vendor/beta:free"}]}, "targets", "same 'priority'"),
    ({"context_window_fallbacks": ["nowhere"]}, "context_window_fallbacks[0]", "neither an alias"),
    ({"content_policy_fallbacks": ["spread"]}, "content_policy_fallbacks[0]", "itself"),
    ({"context_window_fallbacks": "up:alpha"}, "context_window_fallbacks", "list"),
])
def test_invalid_deployments_say_which_field(world, client_for, models, change, field, words):
    response = client_for(key=world.admin_key).post("/api/aliases", {**DEPLOYMENTS, **change}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert words in " ".join(error["fields"][field]), error
    assert not ModelAlias.objects.exists()


def test_fallbacks_may_not_name_another_tenants_model(world, client_for, models):
    response = client_for(key=world.admin_key).post(
        "/api/aliases", {**BODY, "context_window_fallbacks": ["theirs:secret"]}, format="json")
    assert response.status_code == 400
    assert "neither an alias" in response.json()["error"]["message"]
