"""The members REST API: every member lists, only owners add, change and remove members, an admin
key cannot, the last owner stays, and another tenant's owner touches nothing."""

import pytest

from tenants.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db


def member_id(world, user) -> int:
    return Membership.objects.get(tenant=world.tenant, user=user).pk


def test_everyone_in_the_tenant_can_list_members(world, client_for):
    body = client_for(user=world.viewer).get("/api/members").json()
    assert {(m["email"], m["role"]) for m in body["results"]} == {
        ("owner@acme.test", "owner"), ("admin@acme.test", "admin"), ("viewer@acme.test", "viewer"),
    }


def test_owner_adds_changes_and_removes_members(world, client_for):
    owner = client_for(user=world.owner)
    added = owner.post("/api/members", {"email": "staff@tollgate.test", "role": "viewer"}, format="json")
    assert added.status_code == 201, added.json()
    changed = owner.put(f"/api/members/{added.json()['id']}", {"role": "admin"}, format="json")
    assert changed.json()["role"] == "admin"
    assert owner.delete(f"/api/members/{added.json()['id']}").status_code == 204
    assert not Membership.objects.filter(tenant=world.tenant, user=world.plain_staff).exists()
    actions = list(AuditEvent.objects.filter(tenant=world.tenant, action__startswith="membership.")
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["membership.create", "membership.update", "membership.delete"]


@pytest.mark.parametrize("who", ["admin", "viewer"])
def test_only_owners_manage_members(world, client_for, who):
    client = client_for(user=getattr(world, who))
    response = client.post("/api/members", {"email": "staff@tollgate.test", "role": "owner"}, format="json")
    assert response.status_code == 403
    promoted = client.put(f"/api/members/{member_id(world, world.viewer)}", {"role": "owner"}, format="json")
    assert promoted.status_code == 403
    assert Membership.objects.get(tenant=world.tenant, user=world.viewer).role == "viewer"


def test_admin_key_cannot_manage_members(world, client_for):
    response = client_for(key=world.admin_key).post(
        "/api/members", {"email": "staff@tollgate.test", "role": "viewer"}, format="json"
    )
    assert response.status_code == 403


def test_the_last_owner_cannot_leave_or_be_demoted(world, client_for):
    owner = client_for(user=world.owner)
    mine = member_id(world, world.owner)
    response = owner.put(f"/api/members/{mine}", {"role": "admin"}, format="json")
    assert response.status_code == 400
    assert "at least one owner" in response.json()["error"]["message"]
    assert owner.delete(f"/api/members/{mine}").status_code == 400
    # With a second owner, the first may step down.
    owner.put(f"/api/members/{member_id(world, world.admin)}", {"role": "owner"}, format="json")
    assert owner.put(f"/api/members/{mine}", {"role": "admin"}, format="json").status_code == 200


def test_adding_unknown_or_existing_users_says_why(world, client_for):
    owner = client_for(user=world.owner)
    unknown = owner.post("/api/members", {"email": "nobody@x.test", "role": "viewer"}, format="json")
    assert unknown.status_code == 400 and "No user with email" in unknown.json()["error"]["message"]
    again = owner.post("/api/members", {"email": "viewer@acme.test", "role": "admin"}, format="json")
    assert again.status_code == 409 and "already a member" in again.json()["error"]["message"]
    bad_role = owner.post("/api/members", {"email": "staff@tollgate.test", "role": "god"}, format="json")
    assert bad_role.status_code == 400 and "role" in bad_role.json()["error"]["fields"]


def test_outsider_owner_cannot_touch_members(world, client_for):
    outsider = client_for(user=world.other_owner)
    target = member_id(world, world.viewer)
    assert outsider.get(f"/api/members/{target}").status_code == 404
    assert outsider.put(f"/api/members/{target}", {"role": "owner"}, format="json").status_code == 404
    assert outsider.delete(f"/api/members/{target}").status_code == 404
    listed = outsider.get("/api/members").json()
    assert [m["email"] for m in listed["results"]] == ["owner@other.test"]
