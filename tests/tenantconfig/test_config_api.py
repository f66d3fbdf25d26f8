"""The configuration document over REST: GET /api/config (YAML or JSON), plan and apply with the
audit trail, the schema, viewers and outsiders refused, env references refused, oversized and
malformed bodies answered with a clear 400 / 413."""

import pytest
import yaml
from django.test import override_settings

from providers.catalog import CatalogEntry
from providers.models import ModelAlias, Provider
from providers.services import provider_create, provider_models_upsert
from tenantconfig.parsing import MAX_BYTES
from tenants.access import SYSTEM
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db

DOC = """\
version: 1
settings:
  temperature: 0.3
providers:
  - name: up
    type: openai
    api_key: sk-typed-1234
aliases:
  - name: smart
    strategy: weighted
    deployments:
      - {model: "up:gpt-4o", priority: 0, weight: 2}
      - {model: "up:gpt-4o-mini", priority: 0}
budgets:
  - {name: Monthly, amount: "50", action: downgrade, downgrade_alias: smart}
"""


def post(client, url, body, content_type="application/yaml"):
    return client.post(url, data=body, content_type=content_type)


def test_plan_then_apply_with_one_audit_event(world, client_for):
    client = client_for(user=world.admin)
    plan = post(client, "/api/config/plan", DOC)
    assert plan.status_code == 200, plan.content
    body = plan.json()
    assert body["applied"] is False and body["summary"] == {"create": 5, "change": 1, "delete": 0}
    assert "+ create alias smart" in body["text"] and "sk-typed" not in plan.content.decode()
    assert not Provider.objects.filter(owner=world.tenant).exists()
    applied = post(client, "/api/config/apply", DOC)
    assert applied.status_code == 200 and applied.json()["applied"] is True
    event = AuditEvent.objects.get(tenant=world.tenant, action="config.apply")
    assert event.actor == "user:admin@acme.test"
    assert event.after["summary"] == {"create": 5, "change": 1, "delete": 0}
    assert any("create alias smart" in line for line in event.after["changes"])
    assert "sk-typed" not in str(event.after)
    assert Provider.objects.get(owner=world.tenant, name="up").api_key == "sk-typed-1234"
    again = post(client, "/api/config/apply", DOC)
    assert again.json()["summary"] == {"create": 0, "change": 0, "delete": 0}
    assert again.json()["text"].startswith("No changes")
    assert AuditEvent.objects.filter(tenant=world.tenant, action="config.apply").count() == 1


def test_get_config_as_yaml_and_json_and_prune_over_rest(world, client_for):
    client = client_for(key=world.admin_key)
    assert post(client, "/api/config/apply", DOC).status_code == 200
    as_json = client.get("/api/config")
    assert as_json.status_code == 200 and as_json["Content-Type"].startswith("application/json")
    doc = as_json.json()
    assert [a["name"] for a in doc["aliases"]] == ["smart"]
    assert doc["providers"][0]["api_key"] == "env:UP_API_KEY"
    as_yaml = client.get("/api/config", HTTP_ACCEPT="application/yaml")
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.content) == doc
    # JSON in, with prune: the budget and the alias go
    doc["budgets"] = []  # (a section left out is left alone, even with prune)
    doc["aliases"] = []
    doc["providers"][0].pop("api_key")  # over REST: left out keeps the saved key
    response = client.post("/api/config/apply?prune=true", data=doc, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["summary"] == {"create": 0, "change": 0, "delete": 2}
    assert not ModelAlias.objects.filter(tenant=world.tenant).exists()


def test_env_references_are_refused_over_rest(world, client_for, monkeypatch):
    monkeypatch.setenv("SECRET_THING", "platform-secret")
    body = "version: 1\nproviders:\n  - {name: up, type: openai, base_url: 'https://llm.example.com/v1', " \
           "api_key: 'env:SECRET_THING'}\n"
    response = post(client_for(user=world.admin), "/api/config/apply", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_config"
    assert "only `manage.py tenant_config apply` reads" in error["fields"]["providers[0].api_key"][0]
    assert not Provider.objects.filter(owner=world.tenant).exists()


def test_schema_errors_come_back_by_path(world, client_for):
    body = {"version": 1, "aliases": [{"name": "a", "deployments": [{"model": "x:y", "weight": -1}]}]}
    response = client_for(user=world.admin).post("/api/config/plan", data=body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"aliases[0].deployments[0].weight": ["must be ≥ 0"]}
    assert "aliases[0].deployments[0].weight: must be ≥ 0" in response.json()["error"]["message"]


def test_schema_endpoint_is_a_2020_12_json_schema(world, client_for):
    response = client_for(user=world.viewer).get("/api/config/schema")
    assert response.status_code == 200
    schema = response.json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"providers", "aliases", "budgets", "keys", "settings", "projects"} <= set(schema["properties"])


def test_viewers_are_refused_and_outsiders_see_only_their_own(world, client_for):
    for url in ("/api/config/plan", "/api/config/apply"):
        response = post(client_for(user=world.viewer), url, DOC)
        assert response.status_code == 403, url
    assert client_for(user=world.viewer).get("/api/config").status_code == 403
    assert not Provider.objects.filter(owner=world.tenant).exists()
    # acme's configuration is invisible to the other tenant's admin key, and its names unusable there
    mine = provider_create(owner=world.tenant, data={"name": "mine", "provider_type": "openai"})
    provider_models_upsert(provider=mine, catalog=[CatalogEntry("gpt-4o")])
    outsider = client_for(key=world.other_admin_key)
    doc = outsider.get("/api/config").json()
    assert doc["tenant"]["slug"] == "other" and doc["providers"] == []
    response = outsider.post("/api/config/apply", data={
        "version": 1, "aliases": [{"name": "steal", "deployments": [{"model": "mine:gpt-4o"}]}]}, format="json")
    assert response.status_code == 400
    assert "'mine:gpt-4o' is not a model this tenant may use" in response.json()["error"]["message"]
    # a document naming acme is not applied to the other tenant
    response = outsider.post("/api/config/apply", data={"version": 1, "tenant": {"slug": "acme"}}, format="json")
    assert response.status_code == 400
    assert "this document is for tenant 'acme', not 'other'" in response.json()["error"]["message"]
    assert AuditEvent.objects.filter(action="config.apply").count() == 0
    assert SYSTEM  # (the services' actor in the other tests)


def test_malformed_and_oversized_bodies(world, client_for):
    client = client_for(user=world.admin)
    response = post(client, "/api/config/plan", "version: 1\naliases: [unclosed\n")
    assert response.status_code == 400 and "not valid YAML" in response.json()["error"]["message"]
    response = post(client, "/api/config/plan", "{nope", content_type="application/json")
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    response = post(client, "/api/config/plan", "- just\n- a list\n")
    assert response.status_code == 400 and "must be a mapping" in response.json()["error"]["message"]
    response = post(client, "/api/config/plan", "a: &x [1]\nb: *x\n")
    assert response.status_code == 400
    assert "YAML aliases (*name) are not accepted" in response.json()["error"]["message"]
    response = post(client, "/api/config/plan", "")
    assert response.status_code == 400 and "empty" in response.json()["error"]["message"]
    big = "version: 1\n# " + "x" * (MAX_BYTES + 10) + "\n"
    response = post(client, "/api/config/plan", big)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        response = post(client, "/api/config/apply", "version: 1\n# " + "x" * 2000 + "\n")
    assert response.status_code == 413
