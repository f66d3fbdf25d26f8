"""The API keys REST API: a key shown once and stored as a hash, scoped to its tenant, revoked and
expired keys refused at once, ``last_used_at`` written once per interval, and what viewers,
support staff, outsiders and a suspended tenant's key may do."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.keys import key_hash
from tenants.models import ApiKey, AuditEvent, Membership

pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post("/api/keys", {"name": "ci", **body}, format="json")


def test_created_key_is_shown_once_and_stored_only_as_hash(world, client_for):
    client = client_for(user=world.admin)
    response = create(client, scope="chat")
    assert response.status_code == 201, response.json()
    body = response.json()
    raw = body["key"]
    assert raw.startswith("tg_") and len(raw) == 43
    assert body["prefix"] == raw[:12] and body["status"] == "active"
    assert body["created_by"] == "admin@acme.test"

    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.key_hash == key_hash(raw) and raw not in (stored.prefix, stored.key_hash)
    # Never again: not in the list, not in the detail.
    listed = client.get("/api/keys").content.decode()
    detail = client.get(f"/api/keys/{body['id']}").content.decode()
    assert raw not in listed and raw not in detail
    assert body["prefix"] in listed
    event = AuditEvent.objects.get(action="api_key.create", target=f"api_key:{stored.pk}")
    assert raw not in str(event.after)


def test_new_admin_key_works_on_management_api(world, client_for):
    raw = create(client_for(user=world.owner), scope="admin").json()["key"]
    assert client_for(key=raw).get("/api/keys").status_code == 200


def test_list_is_tenant_scoped(world, client_for):
    mine = client_for(key=world.admin_key).get("/api/keys").json()
    theirs = client_for(key=world.other_admin_key).get("/api/keys").json()
    assert mine["count"] == 2 and theirs["count"] == 2
    assert not {k["id"] for k in mine["results"]} & {k["id"] for k in theirs["results"]}


def test_outsider_cannot_see_or_revoke_a_key(world, client_for):
    key = ApiKey.objects.filter(tenant=world.tenant).first()
    outsider = client_for(key=world.other_admin_key)
    assert outsider.get(f"/api/keys/{key.pk}").status_code == 404
    assert outsider.delete(f"/api/keys/{key.pk}").status_code == 404
    assert client_for(user=world.other_owner).delete(f"/api/keys/{key.pk}").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_viewer_can_list_but_not_create_or_revoke(world, client_for):
    viewer = client_for(user=world.viewer)
    assert viewer.get("/api/keys").status_code == 200
    assert create(viewer).status_code == 403
    key = ApiKey.objects.filter(tenant=world.tenant).first()
    assert viewer.delete(f"/api/keys/{key.pk}").status_code == 403


def test_support_staff_need_a_tenant_and_cannot_create_keys(world, client_for):
    support = client_for(user=world.support)
    assert support.get("/api/keys").status_code == 400
    assert support.get("/api/keys?tenant=acme").json()["count"] == 2
    response = support.post("/api/keys?tenant=acme", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert ApiKey.objects.filter(tenant=world.tenant).count() == 2


def test_user_in_two_tenants_must_choose(world, client_for):
    Membership.objects.create(tenant=world.other, user=world.admin, role="viewer")
    client = client_for(user=world.admin)
    response = client.get("/api/keys")
    assert response.status_code == 400
    assert "acme, other" in response.json()["error"]["message"]
    assert client.get("/api/keys?tenant=other").json()["count"] == 2
    assert client.post("/api/keys", {"name": "x"}, format="json").status_code == 400
    # A viewer in "other" cannot create there, while still an admin in acme.
    assert client.post("/api/keys?tenant=other", {"name": "x"}, format="json").status_code == 403
    assert client.post("/api/keys", {"name": "x"}, format="json", HTTP_X_TOLLGATE_TENANT="acme").status_code == 201


def test_key_with_another_tenant_hint_is_404(world, client_for):
    assert client_for(key=world.admin_key).get("/api/keys?tenant=other").status_code == 404


def test_revoked_key_stops_working_at_once(world, client_for):
    raw = create(client_for(user=world.owner), scope="admin").json()["key"]
    key = ApiKey.objects.get(key_hash=key_hash(raw))
    response = client_for(key=world.admin_key).delete(f"/api/keys/{key.pk}")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    rejected = client_for(key=raw).get("/api/keys")
    assert rejected.status_code == 401
    assert "revoked" in rejected.json()["error"]["message"]


def test_revoking_twice_keeps_the_first_time(world, client_for):
    key = ApiKey.objects.filter(tenant=world.tenant, scope="chat").get()
    client = client_for(user=world.admin)
    first = client.delete(f"/api/keys/{key.pk}").json()["revoked_at"]
    second = client.delete(f"/api/keys/{key.pk}").json()["revoked_at"]
    assert first == second
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1


def test_expired_key_is_rejected_with_reason(world, client_for):
    raw = create(client_for(user=world.owner), scope="admin").json()["key"]
    ApiKey.objects.filter(key_hash=key_hash(raw)).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(key=raw).get("/api/keys")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_key_with_future_expiry_works_and_reports_it(world, client_for):
    when = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    body = create(client_for(user=world.owner), scope="admin", expires_at=when.isoformat()).json()
    assert body["expires_at"].startswith(when.strftime("%Y-%m-%dT%H:%M:%S"))
    assert client_for(key=body["key"]).get("/api/keys").status_code == 200


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"scope": "root"}, "scope", "not a valid choice"),
        ({"name": ""}, "name", "may not be blank"),
        ({"name": 7}, "name", "Expected a string"),
        ({"expires_at": "tomorrow"}, "expires_at", "Datetime has wrong format"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "must be in the future"),
        ({"colour": "red"}, "colour", "Unknown field"),
    ],
)
def test_invalid_key_requests_are_400(world, client_for, body, field, words):
    response = create(client_for(user=world.admin), **body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert words in " ".join(error["fields"][field])
    assert ApiKey.objects.filter(tenant=world.tenant).count() == 2


def test_unknown_key_id_is_404(world, client_for):
    assert client_for(key=world.admin_key).delete("/api/keys/987654").status_code == 404


def test_last_used_is_recorded_once_per_interval(world, client_for):
    key = ApiKey.objects.get(key_hash=key_hash(world.admin_key))
    assert key.last_used_at is None
    client = client_for(key=world.admin_key)
    client.get("/api/keys")
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    client.get("/api/keys")
    key.refresh_from_db()
    assert key.last_used_at == first  # within API_KEY_TOUCH_SECONDS: no second write


def test_a_suspended_tenants_admin_key_reads_but_changes_nothing(world, client_for):
    world.tenant.is_active = False
    world.tenant.save()
    client = client_for(key=world.admin_key)
    assert client.get("/api/keys").status_code == 200
    response = client.post("/api/keys", {"name": "more"}, format="json")
    assert response.status_code == 403
    assert "suspended" in response.json()["error"]["message"]
