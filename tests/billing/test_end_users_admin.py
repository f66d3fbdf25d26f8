"""The Django admin for end-user blocks (through the services: audited, checked like the API)
and the read-only end-user rollup."""

import pytest
from django.contrib.auth import get_user_model

from billing.end_users import end_user_block
from billing.models import EndUserBlock, EndUserDaily
from billing.periods import local_today
from tenants.access import SYSTEM
from tenants.models import AuditEvent, Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw"))
    return client


def test_blocks_are_added_and_removed_through_the_services(world, root):
    theirs = Project.objects.get(tenant=world.other)
    form = {"tenant": world.tenant.pk, "project": theirs.pk, "end_user": "alice", "reason": "abuse"}
    refused = root.post("/admin/billing/enduserblock/add/", form)
    assert refused.status_code == 200 and "belongs to another tenant" in refused.content.decode()
    too_long = root.post("/admin/billing/enduserblock/add/", {**form, "project": "", "end_user": " "})
    assert too_long.status_code == 200 and "must not be empty" in too_long.content.decode()

    saved = root.post("/admin/billing/enduserblock/add/", {**form, "project": ""})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    block = EndUserBlock.objects.get()
    assert (block.tenant, block.project, block.end_user, block.created_by.username) == (
        world.tenant, None, "alice", "root")
    assert AuditEvent.objects.filter(action="end_user.block", actor="user:root").exists()
    assert "alice" in root.get("/admin/billing/enduserblock/").content.decode()
    assert b'name="_save"' not in root.get(f"/admin/billing/enduserblock/{block.pk}/change/").content

    deleted = root.post(f"/admin/billing/enduserblock/{block.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302 and not EndUserBlock.objects.exists()
    assert AuditEvent.objects.filter(action="end_user.unblock", actor="user:root").exists()

    end_user_block(tenant=world.tenant, end_user="bob", actor=SYSTEM)
    end_user_block(tenant=world.other, end_user="carol", actor=SYSTEM)
    bulk = root.post("/admin/billing/enduserblock/", {"action": "delete_selected", "post": "yes",
                                                      "_selected_action": list(EndUserBlock.objects.values_list(
                                                          "pk", flat=True))})
    assert bulk.status_code == 302 and not EndUserBlock.objects.exists()
    assert AuditEvent.objects.filter(action="end_user.unblock").count() == 3


def test_the_end_user_rollup_is_read_only(world, root):
    row = EndUserDaily.objects.create(tenant=world.tenant, day=local_today("UTC"), end_user="alice", requests=3)
    page = root.get("/admin/billing/enduserdaily/?q=alice").content.decode()
    assert "alice" in page
    assert root.get("/admin/billing/enduserdaily/add/").status_code == 403
    assert b'name="_save"' not in root.get(f"/admin/billing/enduserdaily/{row.pk}/change/").content
