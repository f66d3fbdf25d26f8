"""Who may open and change each console page.

For every page: anonymous → the login page; a viewer reads (200) and is refused every change
(403); an admin changes; another tenant's slug, and another tenant's object ids inside this
tenant's URLs, are 404s; staff who are neither members nor support get 404; support staff
read everything and change nothing; members are managed by owners only."""

import pytest

from billing.models import Budget
from providers.models import ModelAlias, Provider
from tenants.models import ApiKey, Membership, Role
from tests.config.console.conftest import LAB_URL


def page_urls(c) -> dict[str, str]:
    base = f"/app/{c.tenant.slug}"
    return {
        "overview": f"{base}/",
        "settings": f"{base}/settings/",
        "providers": f"{base}/providers/",
        "provider-new": f"{base}/providers/new/",
        "provider-own": f"{base}/providers/{c.own.pk}/",
        "provider-platform": f"{base}/providers/{c.platform.pk}/",
        "models": f"{base}/models/",
        "aliases": f"{base}/aliases/",
        "alias-new": f"{base}/aliases/new/",
        "alias-edit": f"{base}/aliases/{c.alias.pk}/",
        "keys": f"{base}/keys/",
        "budgets": f"{base}/budgets/",
        "budget-new": f"{base}/budgets/new/",
        "budget-edit": f"{base}/budgets/{c.budget.pk}/",
        "usage": f"{base}/usage/",
        "usage-export": f"{base}/usage/export.csv",
        "end-users": f"{base}/end-users/",
        "members": f"{base}/members/",
    }


def change_requests(c) -> dict[str, tuple[str, dict]]:
    """One valid change per endpoint: (url, form data)."""
    base = f"/app/{c.tenant.slug}"
    owner_membership = Membership.objects.get(tenant=c.tenant, user=c.world.owner)
    viewer_membership = Membership.objects.get(tenant=c.tenant, user=c.world.viewer)
    return {
        "settings": (f"{base}/settings/", {"name": "Acme 2", "timezone": "UTC", "default_model": "openai:gpt-4o",
                                          "cache_ttl_seconds": "60"}),
        "provider-new": (f"{base}/providers/new/", {"name": "new-one", "provider_type": "openai_compatible",
                                                    "base_url": "https://new.example/v1", "priority": "0",
                                                    "timeout_seconds": "30", "max_retries": "1",
                                                    "sync_interval_minutes": "60", "enabled": "on"}),
        "provider-edit": (f"{base}/providers/{c.own.pk}/", {"name": "lab", "provider_type": "openai_compatible",
                                                            "base_url": LAB_URL, "priority": "5",
                                                            "timeout_seconds": "30", "max_retries": "1",
                                                            "sync_interval_minutes": "60", "enabled": "on"}),
        "provider-test": (f"{base}/providers/test/", {"base_url": LAB_URL}),
        "provider-sync": (f"{base}/providers/{c.own.pk}/sync/", {}),
        "model-toggle": (f"{base}/models/{c.platform.pk}/toggle/gpt-4o-mini", {"enabled": "1"}),
        "alias-new": (f"{base}/aliases/new/", alias_form("fast", "openai:gpt-4o")),
        "alias-edit": (f"{base}/aliases/{c.alias.pk}/", alias_form("smart-cheap", "openai:gpt-4o")),
        "key-create": (f"{base}/keys/", {"name": "new key", "scope": "chat"}),
        "key-revoke": (f"{base}/keys/{c.chat_key.pk}/revoke/", {}),
        "budget-new": (f"{base}/budgets/new/", budget_form("Daily", "3")),
        "budget-edit": (f"{base}/budgets/{c.budget.pk}/", budget_form("Monthly", "20")),
        "budget-delete": (f"{base}/budgets/{c.budget.pk}/delete/", {}),
        "alias-delete": (f"{base}/aliases/{c.alias.pk}/delete/", {}),
        "provider-delete": (f"{base}/providers/{c.own.pk}/delete/", {}),
        "end-user-block": (f"{base}/end-users/block/", {"end_user": "alice", "project": "", "reason": "spam"}),
        "member-add": (f"{base}/members/", {"email": "staff@tollgate.test", "role": "viewer"}),
        "member-role": (f"{base}/members/{viewer_membership.pk}/role/", {f"m{viewer_membership.pk}-role": "admin"}),
        "member-remove": (f"{base}/members/{owner_membership.pk}/remove/", {}),
    }


MEMBER_CHANGES = {"member-add", "member-role", "member-remove"}


def alias_form(name: str, model: str) -> dict:
    return {
        "name": name, "retries": "1", "allowed_fails": "3", "cooldown_seconds": "60",
        "targets-TOTAL_FORMS": "1", "targets-INITIAL_FORMS": "0", "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "20", "targets-0-model": model, "targets-0-ORDER": "1",
    }


def budget_form(name: str, amount: str) -> dict:
    return {"name": name, "scope": "tenant", "amount": amount, "period": "month", "thresholds": "50, 80, 100",
            "action": "alert", "enabled": "on"}


# --- reading --------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page(console, login):
    client = login(None)
    for name, url in page_urls(console).items():
        response = client.get(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith("/accounts/login/?next="), name
    assert client.get("/app/")["Location"] == "/accounts/login/?next=/app/"


def test_anonymous_changes_are_sent_to_the_login_page_and_change_nothing(console, login):
    client = login(None)
    for name, (url, data) in change_requests(console).items():
        response = client.post(url, data)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], name
    assert ApiKey.objects.filter(tenant=console.tenant).count() == 2
    assert Budget.objects.filter(tenant=console.tenant).count() == 1


@pytest.mark.parametrize("who", ["viewer", "admin", "owner", "support"])
def test_members_and_support_read_every_page(console, login, who):
    client = login(getattr(console.world, who))
    for name, url in page_urls(console).items():
        response = client.get(url)
        assert response.status_code == 200, (who, name)


@pytest.mark.parametrize("who", ["other_owner", "plain_staff"])
def test_outsiders_and_staff_without_support_permission_get_404(console, login, who):
    client = login(getattr(console.world, who))
    for name, url in page_urls(console).items():
        assert client.get(url).status_code == 404, (who, name)
    for name, (url, data) in change_requests(console).items():
        assert client.post(url, data).status_code == 404, (who, name)


def test_an_unknown_tenant_slug_is_404(console, login):
    client = login(console.world.admin)
    assert client.get("/app/no-such-tenant/").status_code == 404
    assert client.get("/app/no-such-tenant/keys/").status_code == 404


def test_another_tenants_objects_are_404_in_this_tenants_urls(console, login):
    client = login(console.world.owner)
    base = f"/app/{console.tenant.slug}"
    other_membership = Membership.objects.get(tenant=console.world.other, user=console.world.other_owner)
    gets = [
        f"{base}/providers/{console.other_provider.pk}/",
        f"{base}/aliases/{console.other_alias.pk}/",
        f"{base}/budgets/{console.other_budget.pk}/",
        f"{base}/models/{console.other_provider.pk}/toggle/their-model",
    ]
    for url in gets:
        assert client.get(url).status_code == 404, url
    posts = [
        (f"{base}/providers/{console.other_provider.pk}/", {"name": "x"}),
        (f"{base}/providers/{console.other_provider.pk}/sync/", {}),
        (f"{base}/providers/{console.other_provider.pk}/test/", {}),
        (f"{base}/providers/{console.other_provider.pk}/delete/", {}),
        (f"{base}/models/{console.other_provider.pk}/toggle/their-model", {"enabled": "0"}),
        (f"{base}/aliases/{console.other_alias.pk}/", alias_form("x", "openai:gpt-4o")),
        (f"{base}/aliases/{console.other_alias.pk}/delete/", {}),
        (f"{base}/budgets/{console.other_budget.pk}/", budget_form("x", "1")),
        (f"{base}/budgets/{console.other_budget.pk}/delete/", {}),
        (f"{base}/keys/{console.other_key.pk}/revoke/", {}),
        (f"{base}/members/{other_membership.pk}/role/", {f"m{other_membership.pk}-role": "viewer"}),
        (f"{base}/members/{other_membership.pk}/remove/", {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    # and nothing of theirs changed
    assert Provider.objects.filter(pk=console.other_provider.pk).exists()
    assert ModelAlias.objects.filter(pk=console.other_alias.pk).exists()
    assert Budget.objects.filter(pk=console.other_budget.pk).exists()
    assert ApiKey.objects.get(pk=console.other_key.pk).revoked_at is None
    assert Membership.objects.get(pk=other_membership.pk).role == Role.OWNER


# --- changing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["viewer", "support"])
def test_viewers_and_support_cannot_change_anything(console, login, who):
    client = login(getattr(console.world, who))
    for name, (url, data) in change_requests(console).items():
        response = client.post(url, data)
        assert response.status_code == 403, (who, name)
        assert b"read-only" in response.content or b"role" in response.content, (who, name)
    console.tenant.refresh_from_db()
    assert console.tenant.name == "Acme"
    assert ApiKey.objects.filter(tenant=console.tenant, revoked_at__isnull=True).count() == 2
    assert Budget.objects.filter(tenant=console.tenant).count() == 1
    assert Provider.objects.filter(owner=console.tenant).count() == 1


def test_viewers_see_no_action_buttons_and_disabled_forms(console, login):
    client = login(console.world.viewer)
    base = f"/app/{console.tenant.slug}"
    settings_page = client.get(f"{base}/settings/").content.decode()
    assert '<fieldset class="plain" disabled>' in settings_page and "Save settings" not in settings_page
    keys_page = client.get(f"{base}/keys/").content.decode()
    assert "Create key" not in keys_page and "Revoke" not in keys_page
    providers_page = client.get(f"{base}/providers/").content.decode()
    assert "Sync now" not in providers_page and "Add a provider" not in providers_page
    models_page = client.get(f"{base}/models/").content.decode()
    assert "Enable" not in models_page and "Disable" not in models_page
    assert "Create a budget" not in client.get(f"{base}/budgets/").content.decode()
    assert "Create an alias" not in client.get(f"{base}/aliases/").content.decode()
    members_page = client.get(f"{base}/members/").content.decode()
    assert "Add member" not in members_page and "Remove" not in members_page


def test_admins_change_everything_but_members(console, login):
    client = login(console.world.admin)
    expected = {"key-create": 201, "provider-test": 200}  # sync without htmx: back to the list
    for name, (url, data) in change_requests(console).items():
        if name in MEMBER_CHANGES:
            continue
        response = client.post(url, data)
        assert response.status_code == expected.get(name, 302), (name, response.content[:2000])
    console.tenant.refresh_from_db()
    assert console.tenant.name == "Acme 2" and console.tenant.default_model == "openai:gpt-4o"
    assert console.tenant.cache_ttl_seconds == 60
    assert ApiKey.objects.filter(tenant=console.tenant, name="new key").exists()
    assert ApiKey.objects.get(pk=console.chat_key.pk).revoked_at is not None
    assert ModelAlias.objects.filter(tenant=console.tenant, name="fast").exists()
    assert not ModelAlias.objects.filter(pk=console.alias.pk).exists()  # deleted last
    assert not Budget.objects.filter(pk=console.budget.pk).exists()
    assert Budget.objects.filter(tenant=console.tenant, name="Daily").exists()
    assert not Provider.objects.filter(pk=console.own.pk).exists()
    assert Provider.objects.filter(owner=console.tenant, name="new-one").exists()
    # the changes are audited under the user who made them
    from tenants.models import AuditEvent

    actions = set(AuditEvent.objects.filter(tenant=console.tenant, actor="user:admin@acme.test")
                  .values_list("action", flat=True))
    assert {"tenant.update", "api_key.create", "api_key.revoke", "alias.create", "budget.create",
            "provider.create", "model.enable"} <= actions


def test_admins_cannot_manage_members_owners_can(console, login):
    requests = change_requests(console)
    admin = login(console.world.admin)
    for name in MEMBER_CHANGES:
        url, data = requests[name]
        assert admin.post(url, data).status_code == 403, name

    owner = login(console.world.owner)
    url, data = requests["member-add"]
    assert owner.post(url, data).status_code == 302
    assert Membership.objects.get(tenant=console.tenant, user=console.world.plain_staff).role == Role.VIEWER
    url, data = requests["member-role"]
    assert owner.post(url, data).status_code == 302
    assert Membership.objects.get(tenant=console.tenant, user=console.world.viewer).role == Role.ADMIN
    # the last owner cannot remove themselves: the service says why
    url, data = requests["member-remove"]
    response = owner.post(url, data, follow=True)
    assert "must keep at least one owner" in response.content.decode()
    assert Membership.objects.filter(tenant=console.tenant, user=console.world.owner).exists()


def test_platform_providers_are_read_only_for_tenant_admins(console, login):
    client = login(console.world.owner)
    base = f"/app/{console.tenant.slug}"
    page = client.get(f"{base}/providers/{console.platform.pk}/").content.decode()
    assert "managed by Tollgate" in page or "run by Tollgate" in page
    assert "Save provider" not in page
    for url in (f"{base}/providers/{console.platform.pk}/", f"{base}/providers/{console.platform.pk}/sync/",
                f"{base}/providers/{console.platform.pk}/delete/", f"{base}/providers/{console.platform.pk}/test/"):
        assert client.post(url, {"name": "hijack"}).status_code == 403, url
    assert Provider.objects.get(pk=console.platform.pk).name == "openai"


# --- landing, chooser, support ----------------------------------------------------------------------


def test_app_opens_the_only_tenant_or_a_chooser(console, login):
    assert login(console.world.admin).get("/app/")["Location"] == "/app/acme/"
    Membership.objects.create(tenant=console.world.other, user=console.world.admin, role=Role.VIEWER)
    response = login(console.world.admin).get("/app/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'href="/app/acme/"' in page and 'href="/app/other/"' in page
    # and the tenant switcher on every page lists the other tenant
    assert 'href="/app/other/"' in login(console.world.admin).get("/app/acme/keys/").content.decode()

    nobody = login(console.world.plain_staff).get("/app/")
    assert nobody.status_code == 200 and "not a member of any tenant" in nobody.content.decode()

    support = login(console.world.support).get("/app/")
    assert support.status_code == 200
    assert 'href="/app/acme/"' in support.content.decode() and 'href="/app/other/"' in support.content.decode()


def test_support_page_is_for_support_staff_only(console, login):
    response = login(None).get("/support/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    for user in (console.world.owner, console.world.admin, console.world.viewer, console.world.plain_staff):
        assert login(user).get("/support/").status_code == 403, user
    page = login(console.world.support).get("/support/")
    assert page.status_code == 200 and "/app/other/" in page.content.decode()


def test_login_page_logs_in_and_lands_on_the_console(console, login):
    client = login(None)
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "admin@acme.test", "password": "pw"})
    assert response.status_code == 302 and response["Location"] == "/app/"
    assert client.get("/app/")["Location"] == "/app/acme/"
    response = client.post("/accounts/login/?next=/app/acme/keys/",
                           {"username": "viewer@acme.test", "password": "pw", "next": "/app/acme/keys/"})
    assert response["Location"] == "/app/acme/keys/"
    bad = login(None).post("/accounts/login/", {"username": "admin@acme.test", "password": "wrong"})
    assert bad.status_code == 200 and "correct username and password" in bad.content.decode()
    # log out is a POST
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/app/acme/").status_code == 302


def test_an_expired_session_on_an_htmx_request_reloads_into_the_login_page(console, login):
    response = login(None).post(f"/app/acme/providers/{console.own.pk}/sync/", HTTP_HX_REQUEST="true",
                                HTTP_HX_CURRENT_URL="http://testserver/app/acme/providers/")
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/accounts/login/?next=/app/acme/providers/"
