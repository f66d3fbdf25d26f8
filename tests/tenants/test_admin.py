"""The tenants admin: tenants, members and masked keys listed, the revoke action going through the
service, support staff who may view but not change, and tenant users kept out."""

import pytest
from django.contrib.auth import get_user_model

from tenants.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw")


def test_admin_lists_tenants_members_and_masked_keys(world, client, superuser):
    client.force_login(superuser)
    tenants = client.get("/admin/tenants/tenant/?q=acme")
    assert tenants.status_code == 200
    assert b"Acme" in tenants.content and b"Other Co" not in tenants.content

    members = client.get("/admin/tenants/membership/?role__exact=viewer")
    assert b"viewer@acme.test" in members.content and b"owner@acme.test" not in members.content

    keys = client.get("/admin/tenants/apikey/?scope__exact=admin")
    page = keys.content.decode()
    key = ApiKey.objects.get(tenant=world.tenant, scope="admin")
    assert key.masked in page
    assert world.admin_key not in page and key.key_hash not in page
    detail = client.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert key.key_hash not in detail and world.admin_key not in detail


def test_admin_revoke_action_calls_the_service(world, client, superuser):
    client.force_login(superuser)
    key = ApiKey.objects.get(tenant=world.tenant, scope="chat")
    response = client.post(
        "/admin/tenants/apikey/", {"action": "revoke_selected", "_selected_action": [key.pk]}, follow=True
    )
    assert b"Revoked 1 key" in response.content
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_support_staff_can_view_but_not_change_in_admin(world, client):
    client.force_login(world.support)
    assert client.get("/admin/tenants/tenant/").status_code == 200
    page = client.get(f"/admin/tenants/tenant/{world.tenant.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # view-only
    response = client.post(f"/admin/tenants/tenant/{world.tenant.pk}/change/", {"name": "Hacked", "slug": "acme"})
    assert response.status_code == 403
    world.tenant.refresh_from_db()
    assert world.tenant.name == "Acme"


def test_tenant_users_are_kept_out_of_the_admin(world, client):
    client.force_login(world.owner)
    response = client.get("/admin/tenants/tenant/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
