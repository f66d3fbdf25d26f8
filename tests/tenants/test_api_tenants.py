"""The tenants REST API: who may read a tenant (members, support staff, never an outsider), the
refusals of auth (no key, a chat key, a garbage key, a session write without CSRF), changing
settings with audit events, and field-named errors for invalid bodies."""

import json

import pytest

from providers.models import ProviderModel, TenantModel
from providers.services import provider_create
from tenants.models import AuditEvent, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def mock_smart(world):
    """``mock-smart``, a platform model acme may use (a default model must resolve)."""
    platform = provider_create(owner=None, data={"name": "mock", "provider_type": "mock"})
    model = ProviderModel.objects.create(provider=platform, model_id="mock-smart")
    TenantModel.objects.create(tenant=world.tenant, provider_model=model, enabled=True)
    return model


def url(tenant) -> str:
    return f"/api/tenants/{tenant.pk}"


SETTINGS = {
    "settings": {
        "llm": {"model": "mock-smart", "temperature": 0.3, "max_tokens": 512, "top_p": 0.9},
        "limits": {"requests_per_minute": 120, "tokens_per_day": 1_000_000},
    }
}


# --- reading --------------------------------------------------------------------------------


def test_get_tenant_shows_settings_and_role(world, client_for):
    response = client_for(key=world.admin_key).get(url(world.tenant))
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "acme"
    assert body["role"] == "admin"
    assert body["settings"] == {
        "llm": {"provider": None, "model": None, "apiKey": None, "temperature": None, "max_tokens": None,
                "top_p": None},
        "embeddings": {"provider": None, "model": None, "apiKey": None},
        "limits": {"requests_per_minute": None, "tokens_per_minute": None, "tokens_per_day": None,
                   "redis_outage": "inherit"},
        "cache": {"enabled": False, "ttl_seconds": 3600},
        "data": {"usage_retention_days": None},
    }


@pytest.mark.parametrize("who", ["owner", "admin", "viewer"])
def test_every_member_role_can_read(world, client_for, who):
    response = client_for(user=getattr(world, who)).get(url(world.tenant))
    assert response.status_code == 200
    assert response.json()["role"] == who


def test_support_staff_read_any_tenant_read_only(world, client_for):
    client = client_for(user=world.support)
    response = client.get(url(world.other))
    assert response.status_code == 200
    assert response.json()["role"] == "support"
    change = client.put(url(world.other), SETTINGS, format="json")
    assert change.status_code == 403
    assert "read-only" in change.json()["error"]["message"]


def test_staff_without_view_all_tenants_sees_nothing(world, client_for):
    assert client_for(user=world.plain_staff).get(url(world.tenant)).status_code == 404


def test_outsider_user_and_key_get_404(world, client_for):
    assert client_for(user=world.other_owner).get(url(world.tenant)).status_code == 404
    response = client_for(key=world.other_admin_key).get(url(world.tenant))
    assert response.status_code == 404
    assert "acme" not in json.dumps(response.json()).lower()


def test_unknown_tenant_id_is_404(world, client_for):
    response = client_for(key=world.admin_key).get("/api/tenants/999999")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_tenant_list_shows_only_own_tenants(world, client_for):
    body = client_for(user=world.owner).get("/api/tenants").json()
    assert [t["slug"] for t in body["results"]] == ["acme"]
    body = client_for(key=world.other_admin_key).get("/api/tenants").json()
    assert [t["slug"] for t in body["results"]] == ["other"]
    body = client_for(user=world.support).get("/api/tenants").json()
    assert {t["slug"] for t in body["results"]} == {"acme", "other"}


# --- auth -----------------------------------------------------------------------------------


def test_anonymous_gets_401_with_hint(world, client_for):
    response = client_for().get(url(world.tenant))
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_chat_key_gets_403_on_management_api(world, client_for):
    response = client_for(key=world.chat_key).get(url(world.tenant))
    assert response.status_code == 403
    assert "scope 'chat'" in response.json()["error"]["message"]


def test_garbage_key_is_401(world, client_for):
    response = client_for(key="sk-not-ours").get(url(world.tenant))
    assert response.status_code == 401
    assert "tg_" in response.json()["error"]["message"]


# --- changing -------------------------------------------------------------------------------


def test_admin_key_changes_settings_and_audit_records_it(world, client_for):
    response = client_for(key=world.admin_key).put(url(world.tenant), SETTINGS, format="json")
    assert response.status_code == 200, response.json()
    # (a bare model names no provider, so no provider and no key)
    assert response.json()["settings"]["llm"] == {**SETTINGS["settings"]["llm"], "provider": None, "apiKey": None}
    tenant = Tenant.objects.get(pk=world.tenant.pk)
    assert (tenant.default_model, tenant.temperature, tenant.max_tokens, tenant.top_p) == ("mock-smart", 0.3, 512, 0.9)
    assert (tenant.requests_per_minute, tenant.tokens_per_day) == (120, 1_000_000)
    event = AuditEvent.objects.filter(tenant=world.tenant, action="tenant.update").get()
    assert event.actor.startswith("key:tg_")
    assert event.after["temperature"] == 0.3 and event.before["temperature"] is None


def test_put_changes_only_what_is_sent_and_null_clears(world, client_for):
    client = client_for(user=world.admin)
    client.put(url(world.tenant), SETTINGS, format="json")
    response = client.put(url(world.tenant), {"settings": {"llm": {"temperature": None}}}, format="json")
    assert response.status_code == 200
    llm = response.json()["settings"]["llm"]
    assert llm["temperature"] is None
    assert llm["model"] == "mock-smart" and llm["max_tokens"] == 512


def test_the_redis_outage_choice_is_a_setting_of_the_tenant(world, client_for):
    client = client_for(key=world.admin_key)
    response = client.put(url(world.tenant), {"settings": {"limits": {"redis_outage": "open"}}}, format="json")
    assert response.status_code == 200
    assert response.json()["settings"]["limits"]["redis_outage"] == "open"
    assert Tenant.objects.get(pk=world.tenant.pk).redis_outage == "open"
    event = AuditEvent.objects.filter(tenant=world.tenant, action="tenant.update").get()
    assert (event.before["redis_outage"], event.after["redis_outage"]) == ("inherit", "open")
    refused = client.put(url(world.tenant), {"settings": {"limits": {"redis_outage": "sometimes"}}}, format="json")
    assert refused.status_code == 400 and "settings.limits.redis_outage" in refused.json()["error"]["fields"]
    outsider = client_for(key=world.other_admin_key).put(
        url(world.tenant), {"settings": {"limits": {"redis_outage": "closed"}}}, format="json")
    assert outsider.status_code == 404 and Tenant.objects.get(pk=world.tenant.pk).redis_outage == "open"


def test_unchanged_put_writes_no_audit_event(world, client_for):
    client = client_for(user=world.owner)
    client.put(url(world.tenant), SETTINGS, format="json")
    client.put(url(world.tenant), SETTINGS, format="json")
    assert AuditEvent.objects.filter(tenant=world.tenant, action="tenant.update").count() == 1


def test_viewer_cannot_change(world, client_for):
    response = client_for(user=world.viewer).put(url(world.tenant), SETTINGS, format="json")
    assert response.status_code == 403
    assert "viewer" in response.json()["error"]["message"]
    assert Tenant.objects.get(pk=world.tenant.pk).temperature is None


def test_outsider_cannot_change(world, client_for):
    response = client_for(key=world.other_admin_key).put(url(world.tenant), SETTINGS, format="json")
    assert response.status_code == 404
    assert Tenant.objects.get(pk=world.tenant.pk).default_model == ""


def test_session_put_requires_csrf(world, client_for):
    response = client_for(user=world.owner, csrf=True).put(url(world.tenant), SETTINGS, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"settings": {"llm": {"temperature": 2.5}}}, "settings.llm.temperature", "less than or equal to 2"),
        ({"settings": {"llm": {"temperature": -0.1}}}, "settings.llm.temperature", "greater than or equal to 0"),
        ({"settings": {"llm": {"top_p": 1.5}}}, "settings.llm.top_p", "less than or equal to 1"),
        ({"settings": {"llm": {"max_tokens": 0}}}, "settings.llm.max_tokens", "greater than or equal to 1"),
        ({"settings": {"llm": {"temperature": "0.5"}}}, "settings.llm.temperature", "Expected a number, got a string"),
        ({"settings": {"llm": {"max_tokens": 1.5}}}, "settings.llm.max_tokens", "Expected an integer"),
        ({"settings": {"llm": {"max_tokens": True}}}, "settings.llm.max_tokens", "Expected an integer, got a boolean"),
        ({"settings": {"llm": {"model": 5}}}, "settings.llm.model", "Expected a string"),
        ({"settings": {"llm": {"temprature": 0.5}}}, "settings.llm.temprature", "Unknown field"),
        ({"settings": {"limitz": {}}}, "settings.limitz", "Unknown field"),
        ({"setting": {}}, "setting", "Unknown field"),
        ({"settings": {"limits": {"requests_per_minute": 0}}}, "settings.limits.requests_per_minute",
         "greater than or equal to 1"),
        ({"settings": {"cache": {"enabled": "yes"}}}, "settings.cache.enabled", "Expected true or false"),
        ({"settings": {"llm": "fast"}}, "settings.llm", "Invalid data"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
    ],
)
def test_invalid_settings_are_400_naming_the_field(world, client_for, body, field, words):
    response = client_for(key=world.admin_key).put(url(world.tenant), body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"], error
    assert words in " ".join(error["fields"][field])
    assert field in error["message"]
    assert Tenant.objects.get(pk=world.tenant.pk).temperature is None


def test_body_must_be_an_object(world, client_for):
    response = client_for(key=world.admin_key).put(url(world.tenant), [1, 2], format="json")
    assert response.status_code == 400
    assert "Expected a JSON object, got an array" in response.json()["error"]["message"]


def test_malformed_json_is_400(world, client_for):
    response = client_for(key=world.admin_key).put(
        url(world.tenant), data='{"settings": {', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_json"


def test_wrong_content_type_is_415(world, client_for):
    response = client_for(key=world.admin_key).put(url(world.tenant), data="a=b", content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]
