"""A suspended tenant (``is_active`` false) is read-only for its members and its admin keys, in
the console and on /api, and refused on /v1; staff still suspend and reactivate it in the
Django admin."""

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import Budget
from tenants.models import AuditEvent, Membership, Tenant
from tests.config.console.conftest import LAB_URL
from tests.config.console.test_permissions import change_requests, page_urls
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider

BANNER = "is suspended"


def suspend(tenant: Tenant) -> None:
    tenant.is_active = False
    tenant.save()


def api_changes(c) -> list[tuple[str, str, dict | None]]:
    """Every /api write a tenant admin or owner may make, with a valid body."""
    viewer = Membership.objects.get(tenant=c.tenant, user=c.world.viewer)
    alias = {"name": "fast", "targets": [{"model": "openai:gpt-4o"}]}
    return [
        ("put", f"/api/tenants/{c.tenant.pk}", {"name": "Acme 2"}),
        ("post", "/api/keys", {"name": "new key"}),
        ("delete", f"/api/keys/{c.chat_key.pk}", None),
        ("post", "/api/members", {"email": "staff@tollgate.test", "role": "viewer"}),
        ("put", f"/api/members/{viewer.pk}", {"role": "admin"}),
        ("delete", f"/api/members/{viewer.pk}", None),
        ("post", "/api/providers", {"name": "new-one", "base_url": "https://new.example/v1"}),
        ("put", f"/api/providers/{c.own.pk}", {"priority": 3}),
        ("delete", f"/api/providers/{c.own.pk}", None),
        ("post", f"/api/providers/{c.own.pk}/sync", None),
        ("post", "/api/providers/sync-all", None),
        ("post", "/api/providers/test", {"base_url": LAB_URL}),
        ("put", f"/api/providers/{c.platform.pk}/models/gpt-4o-mini/enable", {"enabled": True}),
        (
            "put",
            f"/api/providers/{c.own.pk}/models/{c.llama.model_id}/price",
            {"input": "1", "output": "2"},
        ),
        ("post", "/api/aliases", alias),
        ("put", f"/api/aliases/{c.alias.pk}", alias),
        ("delete", f"/api/aliases/{c.alias.pk}", None),
        ("post", "/api/budgets", {"name": "Daily", "amount": "3"}),
        ("put", f"/api/budgets/{c.budget.pk}", {"amount": "20"}),
        ("delete", f"/api/budgets/{c.budget.pk}", None),
        ("post", "/api/test/llm", {"prompt": "hi"}),
    ]


API_READS = [
    "/api/tenants",
    "/api/keys",
    "/api/members",
    "/api/providers",
    "/api/aliases",
    "/api/budgets",
    "/api/usage",
    "/api/usage/summary",
    "/api/audit",
]


def assert_suspended_refusal(response, what) -> None:
    assert response.status_code == 403, (what, response.content[:300])
    text = response.content.decode()
    assert "suspended" in text and "contact support" in text.lower(), (what, text[:300])


# --- console ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "admin", "viewer"])
def test_members_of_a_suspended_tenant_read_every_page_under_a_banner(console, login, who):
    suspend(console.tenant)
    client = login(getattr(console.world, who))
    for name, url in page_urls(console).items():
        response = client.get(url)
        assert response.status_code == 200, (who, name)
        if not url.endswith(".csv"):
            page = response.content.decode()
            assert BANNER in page and "contact support" in page.lower(), (who, name)
            assert "You are a viewer" not in page, (who, name)  # the reason is the suspension


def test_every_console_change_of_a_suspended_tenant_is_refused(console, login):
    suspend(console.tenant)
    client = login(console.world.owner)
    events = AuditEvent.objects.count()
    for name, (url, data) in change_requests(console).items():
        assert_suspended_refusal(client.post(url, data), name)
    assert AuditEvent.objects.count() == events
    assert Budget.objects.get(pk=console.budget.pk).name == "Monthly"


def test_the_banner_is_only_for_suspended_tenants(console, login):
    page = login(console.world.owner).get(f"/app/{console.tenant.slug}/").content.decode()
    assert BANNER not in page


# --- /api ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["owner", "admin_key"])
def test_a_suspended_tenant_is_read_only_on_the_api(console, client_for, caller):
    suspend(console.tenant)
    client = (
        client_for(user=console.world.owner)
        if caller == "owner"
        else client_for(key=console.world.admin_key)
    )
    for url in (
        API_READS if caller == "owner" else [u for u in API_READS if u != "/api/audit"]
    ):  # owners only
        assert client.get(url).status_code == 200, url
    events = AuditEvent.objects.count()
    for method, url, body in api_changes(console):
        response = (
            getattr(client, method)(url, body, format="json")
            if body is not None
            else getattr(client, method)(url)
        )
        assert_suspended_refusal(response, (method, url))
        assert response.json()["error"]["type"] == "permission_denied"
    assert AuditEvent.objects.count() == events


def test_other_tenants_are_not_affected(console, client_for):
    suspend(console.tenant)
    response = client_for(key=console.world.other_admin_key).post(
        "/api/keys", {"name": "k"}, format="json"
    )
    assert response.status_code == 201


# --- the Django admin ---------------------------------------------------------------------------


def admin_set_active(tenant: Tenant, active: bool) -> None:
    """What staff do: tick or clear "is active" on the tenant's admin page, as a superuser."""
    root = get_user_model().objects.filter(username="root").first()
    root = root or get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw")
    client = Client()
    client.force_login(root)
    url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    form = client.get(url)
    assert form.status_code == 200
    data = {k: v for k, v in form.context["adminform"].form.initial.items() if v is not None}
    data.pop("is_active", None)
    if active:
        data["is_active"] = "on"
    data.update({"_save": "Save", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Tenant.objects.get(pk=tenant.pk).is_active is active


def test_staff_suspend_and_reactivate_in_the_admin_and_admins_write_again(console, client_for):
    owner = client_for(user=console.world.owner)
    admin_set_active(console.tenant, False)
    assert_suspended_refusal(owner.post("/api/keys", {"name": "k"}, format="json"), "suspended")
    admin_set_active(console.tenant, True)
    assert owner.post("/api/keys", {"name": "k"}, format="json").status_code == 201


# --- /v1 ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_v1_refuses_a_key_of_a_tenant_suspended_after_its_last_request(world, live):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)

        def chat():
            return httpx.post(
                f"{live.url}/v1/chat/completions",
                timeout=10,
                headers={"Authorization": f"Bearer {world.chat_key}"},
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )

        assert chat().status_code == 200
        admin_set_active(world.tenant, False)
        response = chat()
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "tenant_suspended"
