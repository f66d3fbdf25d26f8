"""``manage.py createtenant``: one JSON object with working keys, an owner from --admin-email, and
clear errors for a duplicate slug, an invalid slug or email, after which nothing is created."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tenants.keys import key_hash
from tenants.models import ApiKey, Membership, Tenant

pytestmark = pytest.mark.django_db


def run(*args) -> dict:
    out = StringIO()
    call_command("createtenant", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, "stdout must hold exactly one JSON object"
    return json.loads(lines[0])


def test_prints_one_json_object_with_working_keys(client_for):
    out = run("acme", "--name", "Acme Inc")
    assert set(out) == {"tenant_id", "slug", "chat_key", "admin_key"}
    tenant = Tenant.objects.get(pk=out["tenant_id"])
    assert (tenant.slug, tenant.name) == ("acme", "Acme Inc")
    chat = ApiKey.objects.get(key_hash=key_hash(out["chat_key"]))
    admin = ApiKey.objects.get(key_hash=key_hash(out["admin_key"]))
    assert (chat.scope, admin.scope) == ("chat", "admin")
    assert chat.tenant_id == admin.tenant_id == tenant.pk
    assert client_for(key=out["admin_key"]).get(f"/api/tenants/{tenant.pk}").status_code == 200
    assert client_for(key=out["chat_key"]).get(f"/api/tenants/{tenant.pk}").status_code == 403


def test_admin_email_creates_an_owner():
    out = run("beta", "--name", "Beta", "--admin-email", "Boss@Beta.test")
    membership = Membership.objects.get(tenant_id=out["tenant_id"])
    assert membership.role == "owner"
    assert membership.user.email == "boss@beta.test"
    assert not membership.user.has_usable_password()


def test_duplicate_slug_is_a_clear_error():
    run("acme", "--name", "Acme")
    with pytest.raises(CommandError, match="slug 'acme' already exists"):
        call_command("createtenant", "acme", "--name", "Again", stdout=StringIO())
    assert Tenant.objects.count() == 1


@pytest.mark.parametrize("slug", ["Acme", "acme-", "a_b", "x" * 51])
def test_invalid_slug_is_rejected(slug):
    with pytest.raises(CommandError, match="Invalid slug"):
        call_command("createtenant", slug, "--name", "X", stdout=StringIO())


def test_invalid_email_is_rejected_and_nothing_is_created():
    with pytest.raises(CommandError, match="not a valid email"):
        call_command("createtenant", "acme", "--name", "X", "--admin-email", "nope", stdout=StringIO())
    assert not Tenant.objects.exists()
