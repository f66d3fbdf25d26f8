"""/api/budgets: CRUD, validation that names the field, tenant scoping, status and history."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import Budget, BudgetAlert
from billing.periods import local_today, period_for
from billing.selectors import budget_reserved, budget_reserved_key, budget_status
from core.errors import NotFound
from core.redis import get_redis
from tenants.models import ApiKey, AuditEvent
from tests.billing.conftest import add_spend, make_alias, make_budget

pytestmark = pytest.mark.django_db


def fields_of(response) -> dict:
    return response.json()["error"].get("fields", {})


# --- CRUD ----------------------------------------------------------------------------------------


def test_owner_creates_reads_changes_and_deletes_a_budget(world, client_for):
    client = client_for(user=world.owner)

    created = client.post("/api/budgets", {"name": "Monthly", "amount": "250.50"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["name"] == "Monthly" and body["amount"] == "250.500000" and body["currency"] == "USD"
    assert body["scope"] == "tenant" and body["api_key"] is None and body["api_key_status"] is None
    assert body["period"] == "month" and body["thresholds"] == [50, 80, 100] and body["action"] == "alert"
    assert body["enabled"] is True and body["webhook_url_hint"] is None
    budget_id = body["id"]

    listed = client.get("/api/budgets").json()
    assert [b["id"] for b in listed["results"]] == [budget_id] and listed["count"] == 1
    assert client.get(f"/api/budgets/{budget_id}").json()["name"] == "Monthly"

    changed = client.put(f"/api/budgets/{budget_id}", {"amount": 300, "thresholds": [90, 25]}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["amount"] == "300.000000" and changed.json()["thresholds"] == [25, 90]
    assert changed.json()["name"] == "Monthly"  # left out, kept

    patched = client.patch(f"/api/budgets/{budget_id}", {"period": "week", "enabled": False}, format="json")
    assert patched.status_code == 200 and patched.json()["period"] == "week" and patched.json()["enabled"] is False

    assert client.delete(f"/api/budgets/{budget_id}").status_code == 204
    assert not Budget.objects.filter(pk=budget_id).exists()
    assert client.get(f"/api/budgets/{budget_id}").status_code == 404

    actions = list(AuditEvent.objects.filter(tenant=world.tenant, target=f"budget:{budget_id}")
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["budget.create", "budget.update", "budget.update", "budget.delete"]
    update = AuditEvent.objects.filter(action="budget.update").order_by("id").first()
    assert update.before == {"amount": "250.500000", "thresholds": [50, 80, 100]}
    assert update.after == {"amount": "300.000000", "thresholds": [25, 90]}


def test_key_budget_with_downgrade_and_webhook(world, client_for, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    make_alias(world.tenant, "cheap")
    key = ApiKey.objects.get(tenant=world.tenant, scope="chat")
    client = client_for(key=world.admin_key)
    response = client.post("/api/budgets", {
        "name": "Bot key", "api_key": key.pk, "amount": "5", "period": "day", "action": "downgrade",
        "downgrade_alias": "cheap", "webhook_url": "http://127.0.0.1:9/hooks/T1/B2/very-secret-token",
    }, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["scope"] == "key" and body["api_key"] == key.pk and body["api_key_status"] == "active"
    assert body["action"] == "downgrade" and body["downgrade_alias"] == "cheap"
    assert "very-secret-token" not in response.content.decode()
    assert body["webhook_url_hint"] == "http://127.0.0.1/…oken"
    assert "very-secret-token" not in str(AuditEvent.objects.get(action="budget.create").after)

    # Switching to alert drops the alias; switching to the tenant scope drops the key.
    changed = client.put(f"/api/budgets/{body['id']}", {"action": "alert", "scope": "tenant"}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["downgrade_alias"] == "" and changed.json()["api_key"] is None


def test_budget_of_a_revoked_key_keeps_existing(world, client_for):
    key = ApiKey.objects.get(tenant=world.tenant, scope="chat")
    budget = make_budget(world.tenant, api_key=key.pk)
    client = client_for(user=world.admin)
    assert client.delete(f"/api/keys/{key.pk}").status_code == 200  # revoke

    shown = client.get(f"/api/budgets/{budget.pk}").json()
    assert shown["api_key"] == key.pk and shown["api_key_status"] == "revoked"
    changed = client.put(f"/api/budgets/{budget.pk}", {"amount": "50"}, format="json")
    assert changed.status_code == 200, changed.content
    # …but a revoked key cannot be chosen for a new budget.
    again = client.post("/api/budgets", {"name": "x", "amount": "1", "api_key": key.pk}, format="json")
    assert again.status_code == 400 and "revoked" in fields_of(again)["api_key"][0]


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, field, words",
    [
        ({"amount": "10"}, "name", "required"),
        ({"name": "x"}, "amount", "required"),
        ({"name": "x", "amount": "0"}, "amount", "more than 0"),
        ({"name": "x", "amount": "-5"}, "amount", ""),
        ({"name": "x", "amount": "abc"}, "amount", "number"),
        ({"name": "x", "amount": "1.1234567"}, "amount", "decimal places"),
        ({"name": "x", "amount": True}, "amount", ""),
        ({"name": "  ", "amount": "1"}, "name", "blank"),
        ({"name": "x", "amount": "1", "period": "year"}, "period", "day, week, month, rolling_30d"),
        ({"name": "x", "amount": "1", "action": "explode"}, "action", "alert, block, downgrade"),
        ({"name": "x", "amount": "1", "scope": "planet"}, "scope", "tenant, project, key, end_user"),
        ({"name": "x", "amount": "1", "thresholds": [50, 50]}, "thresholds", "repeats 50"),
        ({"name": "x", "amount": "1", "thresholds": [0]}, "thresholds", ""),
        ({"name": "x", "amount": "1", "thresholds": [1001]}, "thresholds", ""),
        ({"name": "x", "amount": "1", "thresholds": []}, "thresholds", ""),
        ({"name": "x", "amount": "1", "thresholds": list(range(1, 12))}, "thresholds", ""),
        ({"name": "x", "amount": "1", "thresholds": ["50"]}, "thresholds", "integer"),
        ({"name": "x", "amount": "1", "thresholds": [50.5]}, "thresholds", "integer"),
        ({"name": "x", "amount": "1", "scope": "key"}, "api_key", "required when scope is 'key'"),
        ({"name": "x", "amount": "1", "scope": "tenant", "api_key": 1}, "api_key", "only used when scope is 'key'"),
        ({"name": "x", "amount": "1", "action": "downgrade"}, "downgrade_alias", "required"),
        ({"name": "x", "amount": "1", "downgrade_alias": "cheap"}, "downgrade_alias", "only used when"),
        ({"name": "x", "amount": "1", "webhook_url": "ftp://example.com/x"}, "webhook_url", "http"),
        ({"name": "x", "amount": "1", "webhook_url": "http://169.254.169.254/latest"}, "webhook_url", ""),
        ({"name": "x", "amount": "1", "enabled": "yes"}, "enabled", "true or false"),
        ({"name": "x", "amount": "1", "colour": "red"}, "colour", "Unknown field"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(world, client_for, payload, field, words):
    response = client_for(user=world.owner).post("/api/budgets", payload, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["type"] == "invalid_request_error"
    fields = fields_of(response)
    named = [name for name in fields if name == field or name.startswith(f"{field}[")]  # thresholds[0]
    assert named, fields
    assert words in " ".join(fields[named[0]])
    assert not Budget.objects.exists()


def test_another_tenants_key_reads_like_a_missing_one(world, client_for):
    theirs = ApiKey.objects.get(tenant=world.other, scope="chat")
    client = client_for(user=world.owner)
    foreign = client.post("/api/budgets", {"name": "x", "amount": "1", "api_key": theirs.pk}, format="json")
    missing = client.post("/api/budgets", {"name": "x", "amount": "1", "api_key": 999_999}, format="json")
    assert foreign.status_code == missing.status_code == 400
    message = fields_of(foreign)["api_key"][0]
    assert message == fields_of(missing)["api_key"][0].replace("999999", str(theirs.pk))
    assert "GET /api/keys" in message and theirs.name not in message and "other" not in message


def test_downgrade_alias_must_be_one_of_the_tenants_aliases(world, client_for):
    make_alias(world.tenant, "cheap")
    make_alias(world.tenant, "fast")
    make_alias(world.other, "theirs")
    client = client_for(user=world.owner)
    response = client.post("/api/budgets", {"name": "x", "amount": "1", "action": "downgrade",
                                            "downgrade_alias": "theirs"}, format="json")
    assert response.status_code == 400
    message = fields_of(response)["downgrade_alias"][0]
    assert "'theirs' is not an alias of this tenant" in message and "cheap, fast" in message
    ok = client.post("/api/budgets", {"name": "x", "amount": "1", "action": "downgrade",
                                      "downgrade_alias": "fast"}, format="json")
    assert ok.status_code == 201


def test_a_budget_whose_alias_was_deleted_can_still_be_changed(world, client_for):
    alias = make_alias(world.tenant, "cheap")
    budget = make_budget(world.tenant, action="downgrade", downgrade_alias="cheap")
    alias.delete()
    client = client_for(user=world.owner)
    assert client.put(f"/api/budgets/{budget.pk}", {"enabled": False}, format="json").status_code == 200
    again = client.put(f"/api/budgets/{budget.pk}", {"action": "downgrade"}, format="json")
    assert again.status_code == 400 and "'cheap' is not an alias" in fields_of(again)["downgrade_alias"][0]


def test_invalid_json_body_is_a_400(world, client_for):
    client = client_for(user=world.owner)
    response = client.post("/api/budgets", ["not", "an", "object"], format="json")
    assert response.status_code == 400


# --- who may do what ------------------------------------------------------------------------------


def test_viewer_reads_but_cannot_write(world, client_for):
    budget = make_budget(world.tenant)
    viewer = client_for(user=world.viewer)
    assert viewer.get("/api/budgets").json()["count"] == 1
    assert viewer.get(f"/api/budgets/{budget.pk}/status").status_code == 200
    assert viewer.get(f"/api/budgets/{budget.pk}/alerts").status_code == 200
    for response in (
        viewer.post("/api/budgets", {"name": "x", "amount": "1"}, format="json"),
        viewer.put(f"/api/budgets/{budget.pk}", {"amount": "1"}, format="json"),
        viewer.patch(f"/api/budgets/{budget.pk}", {"amount": "1"}, format="json"),
        viewer.delete(f"/api/budgets/{budget.pk}"),
    ):
        assert response.status_code == 403, response.content
        assert "viewer" in response.json()["error"]["message"]
    assert Budget.objects.get(pk=budget.pk).amount == Decimal("100")


def test_outsider_gets_404_for_every_budget_endpoint(world, client_for):
    budget = make_budget(world.tenant)
    for client in (client_for(user=world.other_owner), client_for(key=world.other_admin_key)):
        assert client.get("/api/budgets").json()["count"] == 0
        for response in (
            client.get(f"/api/budgets/{budget.pk}"),
            client.put(f"/api/budgets/{budget.pk}", {"amount": "1"}, format="json"),
            client.delete(f"/api/budgets/{budget.pk}"),
            client.get(f"/api/budgets/{budget.pk}/status"),
            client.get(f"/api/budgets/{budget.pk}/alerts"),
        ):
            assert response.status_code == 404, response.content
        # Naming acme explicitly does not help either.
        assert client.get(f"/api/budgets?tenant={world.tenant.slug}").status_code == 404
    assert Budget.objects.filter(pk=budget.pk).exists()


def test_chat_keys_and_anonymous_callers_are_refused(world, client_for):
    assert client_for(key=world.chat_key).get("/api/budgets").status_code == 403
    assert client_for().get("/api/budgets").status_code in (401, 403)


def test_support_staff_read_any_tenant_but_cannot_write(world, client_for):
    budget = make_budget(world.tenant)
    support = client_for(user=world.support)
    assert support.get("/api/budgets").status_code == 400  # must choose a tenant
    listed = support.get(f"/api/budgets?tenant={world.tenant.slug}")
    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert support.get(f"/api/budgets/{budget.pk}/status?tenant=acme").status_code == 200
    assert support.get(f"/api/budgets/{budget.pk}?tenant=other").status_code == 404
    refused = support.put(f"/api/budgets/{budget.pk}?tenant=acme", {"amount": "1"}, format="json")
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
    assert client_for(user=world.plain_staff).get("/api/budgets?tenant=acme").status_code == 404


# --- status and history --------------------------------------------------------------------------


def test_status_adds_up_rollups_and_redis_reservations(world, client_for):
    tenant = world.tenant
    tenant.timezone = "Pacific/Auckland"
    tenant.save()
    key = ApiKey.objects.get(tenant=tenant, scope="chat")
    budget = make_budget(tenant, amount=Decimal("100"))
    key_budget = make_budget(tenant, name="Key", amount=Decimal("10"), api_key=key.pk, thresholds=[50, 100])
    period = period_for("month", "Pacific/Auckland")
    today = local_today("Pacific/Auckland")
    add_spend(tenant, period.start, "60")
    add_spend(tenant, today, "20.5", key=key)  # same day as the start on the 1st: a second row
    add_spend(tenant, period.start - timedelta(days=1), "1000")  # last month: not counted
    add_spend(world.other, today, "999")  # another tenant
    get_redis().set(budget_reserved_key(budget=budget), 2_500_000_000)

    client = client_for(user=world.viewer)
    status = client.get(f"/api/budgets/{budget.pk}/status").json()
    assert status["budget_id"] == budget.pk
    assert status["period"]["start"] == period.start.isoformat()
    assert status["period"]["end"] == (period.end - timedelta(days=1)).isoformat()
    assert status["period"]["resets_at"] == period.resets_at.isoformat()
    assert status["period"]["timezone"] == "Pacific/Auckland"
    assert status["amount"] == "100.000000"
    assert Decimal(status["spent"]) == Decimal("80.5") and isinstance(status["spent"], str)
    assert Decimal(status["reserved"]) == Decimal("2.5")
    assert Decimal(status["remaining"]) == Decimal("17")
    assert status["percent_used"] == 80.5
    assert status["thresholds_crossed"] == [50, 80]
    assert status["action"] == "alert" and status["state"] == "alerting"

    # The key's budget counts only that key: 20.5 of 10 is exhausted.
    key_status = client.get(f"/api/budgets/{key_budget.pk}/status").json()
    assert Decimal(key_status["spent"]) == Decimal("20.5") and Decimal(key_status["reserved"]) == 0
    assert Decimal(key_status["remaining"]) == 0
    assert key_status["thresholds_crossed"] == [50, 100] and key_status["state"] == "exhausted"


def test_status_of_an_unused_budget_and_reservations_alone_exhaust(world, client_for):
    budget = make_budget(world.tenant, amount=Decimal("1"), period="day")
    client = client_for(user=world.owner)
    status = client.get(f"/api/budgets/{budget.pk}/status").json()
    assert Decimal(status["spent"]) == 0 and Decimal(status["remaining"]) == 1
    assert status["state"] == "ok" and status["thresholds_crossed"] == [] and status["percent_used"] == 0
    get_redis().set(budget_reserved_key(budget=budget), 1_000_000_000)
    assert client.get(f"/api/budgets/{budget.pk}/status").json()["state"] == "exhausted"


def test_the_status_of_another_tenants_budget_reads_like_a_missing_one(world):
    budget = make_budget(world.tenant, amount=Decimal("1"))
    assert budget_status(tenant=world.tenant, budget=budget).budget_id == budget.pk
    for read in (budget_status, budget_reserved):
        with pytest.raises(NotFound, match=f"Budget {budget.pk} not found in tenant 'other'"):
            read(tenant=world.other, budget=budget)


def test_alert_history_is_paged_and_scoped(world, client_for):
    from billing.alerts import alerts_check

    budget = make_budget(world.tenant, amount=Decimal("10"))
    other_budget = make_budget(world.other, amount=Decimal("10"))
    today = local_today("UTC")
    add_spend(world.tenant, today, "9")
    add_spend(world.other, today, "9")
    alerts_check()

    client = client_for(user=world.owner)
    page = client.get(f"/api/budgets/{budget.pk}/alerts?limit=1").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]
    thresholds = sorted(a["threshold"] for a in client.get(f"/api/budgets/{budget.pk}/alerts").json()["results"])
    assert thresholds == [50, 80]
    first = client.get(f"/api/budgets/{budget.pk}/alerts").json()["results"][0]
    assert set(first) >= {"id", "kind", "threshold", "period_start", "spent", "limit", "email_sent_at",
                          "webhook_sent_at", "webhook_attempts", "delivery_error"}
    assert first["kind"] == "budget" and Decimal(first["spent"]) == 9
    everything = client.get("/api/budgets/alerts").json()
    assert everything["count"] == 2
    assert {a["budget_id"] for a in everything["results"]} == {budget.pk}
    assert client.get(f"/api/budgets/{other_budget.pk}/alerts").status_code == 404
    assert client.get("/api/budgets/alerts?kind=nope").status_code == 400
    assert BudgetAlert.objects.filter(tenant=world.other).count() == 2


def test_schema_documents_the_budget_endpoints(world, client_for):
    response = client_for(user=world.owner).get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/budgets", "/api/budgets/{budget_id}", "/api/budgets/{budget_id}/status",
            "/api/budgets/{budget_id}/alerts"} <= set(paths)
