"""The Django admin for budgets, alerts and the usage tables."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from billing.alerts import alerts_check
from billing.models import Budget, BudgetAlert, UsageLog
from billing.periods import local_today
from tenants.models import ApiKey, AuditEvent
from tests.billing.conftest import add_spend, make_budget

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw")


def test_budget_list_shows_spend_this_period(world, client, superuser, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    budget = make_budget(world.tenant, name="Monthly", amount=Decimal("200"),
                         webhook_url="http://127.0.0.1:9/services/T/B/secret1234")
    add_spend(world.tenant, local_today("UTC"), "50")
    client.force_login(superuser)
    page = client.get("/admin/billing/budget/").content.decode()
    assert "Monthly" in page and "$50.00 / $200.00 (25%)" in page
    detail = client.get(f"/admin/billing/budget/{budget.pk}/change/").content.decode()
    assert "secret1234" not in detail and "http://127.0.0.1/…1234" in detail


def test_admin_edits_go_through_the_service(world, client, superuser):
    budget = make_budget(world.tenant, name="Monthly", amount=Decimal("200"))
    theirs = ApiKey.objects.get(tenant=world.other, scope="chat")
    client.force_login(superuser)
    form = {"name": "Monthly", "scope": "key", "api_key": theirs.pk, "amount": "150", "period": "month",
            "thresholds": "[50, 100]", "action": "alert", "downgrade_alias": "", "webhook_url": "",
            "enabled": "on"}
    refused = client.post(f"/admin/billing/budget/{budget.pk}/change/", form)
    assert refused.status_code == 200 and "is not an API key of tenant" in refused.content.decode()
    form.update(scope="tenant", api_key="")
    saved = client.post(f"/admin/billing/budget/{budget.pk}/change/", form)
    assert saved.status_code == 302, saved.content.decode()[:3000]
    budget.refresh_from_db()
    assert budget.amount == Decimal("150") and budget.thresholds == [50, 100]
    assert AuditEvent.objects.filter(action="budget.update", actor="user:root").exists()


def test_alerts_and_usage_are_read_only(world, client, superuser):
    make_budget(world.tenant, amount=Decimal("1"), thresholds=[100])
    add_spend(world.tenant, local_today("UTC"), "2")
    alerts_check()
    UsageLog.objects.create(request_id="req_abc123", tenant=world.tenant, model_requested="gpt-x", status="ok",
                            input_tokens=10, output_tokens=5, cost=Decimal("0.0001"), conversation_id="conv-9")
    client.force_login(superuser)
    alert = BudgetAlert.objects.get()
    assert client.get("/admin/billing/budgetalert/?kind__exact=budget").status_code == 200
    assert b'name="_save"' not in client.get(f"/admin/billing/budgetalert/{alert.pk}/change/").content
    assert client.get("/admin/billing/budgetalert/add/").status_code == 403
    assert client.get("/admin/billing/usagedaily/").status_code == 200
    page = client.get("/admin/billing/usagelog/?q=req_abc123&status__exact=ok").content.decode()
    assert "req_abc123" in page and "10 / 5" in page
    assert "req_abc123" in client.get("/admin/billing/usagelog/?q=conv-9").content.decode()
    assert "req_abc123" not in client.get("/admin/billing/usagelog/?q=req_abc").content.decode()  # exact only
    assert "req_abc123" in client.get("/admin/billing/usagelog/?api__exact=chat").content.decode()
    assert "req_abc123" not in client.get("/admin/billing/usagelog/?api__exact=messages").content.decode()
    assert client.get("/admin/billing/usagelog/add/").status_code == 403


def test_support_staff_view_budgets_in_admin(world, client):
    make_budget(world.tenant)
    client.force_login(world.support)
    assert client.get("/admin/billing/budget/").status_code == 200
    budget = Budget.objects.get()
    page = client.get(f"/admin/billing/budget/{budget.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content


def test_admin_adds_a_budget_through_the_service(world, client, superuser):
    client.force_login(superuser)
    assert client.get("/admin/billing/budget/add/").status_code == 200
    form = {"tenant": world.tenant.pk, "name": "Daily cap", "scope": "tenant", "api_key": "", "amount": "5",
            "period": "day", "thresholds": "[100, 50]", "action": "block", "downgrade_alias": "",
            "webhook_url": "", "enabled": "on"}
    response = client.post("/admin/billing/budget/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    budget = Budget.objects.get(name="Daily cap")
    assert budget.tenant == world.tenant and budget.thresholds == [50, 100] and budget.action == "block"
    assert AuditEvent.objects.filter(action="budget.create", target=f"budget:{budget.pk}").exists()
    bad = client.post("/admin/billing/budget/add/", {**form, "name": "x", "action": "downgrade",
                                                      "downgrade_alias": "nope"})
    assert bad.status_code == 200 and "is not an alias of this tenant" in bad.content.decode()


HOOK = "http://127.0.0.1:9/services/T0/B0/hook-secret-9f2"


@pytest.mark.parametrize("who", ["support", "superuser"])
def test_no_budget_admin_page_shows_the_webhook_url(world, client, superuser, settings, who):
    # Given a budget with a webhook URL (a secret for Slack) and support staff or a superuser
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    budget = make_budget(world.tenant, name="Monthly", webhook_url=HOOK)
    client.force_login(world.support if who == "support" else superuser)
    # When they open the change list and the change page
    pages = [client.get("/admin/billing/budget/"),
             client.get(f"/admin/billing/budget/{budget.pk}/change/")]
    # Then the URL never appears, its hint does
    for page in pages:
        assert page.status_code == 200
        assert "hook-secret" not in page.content.decode()
    assert "http://127.0.0.1/…-9f2" in pages[1].content.decode()
    if who == "support":
        assert 'name="webhook_url"' not in pages[1].content.decode()


def test_superuser_sets_a_new_webhook_and_empty_keeps_it(world, client, superuser, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    budget = make_budget(world.tenant, name="Monthly", webhook_url=HOOK)
    client.force_login(superuser)
    form = {"name": "Monthly", "scope": "tenant", "api_key": "", "amount": "100", "period": "month",
            "thresholds": "[50, 80, 100]", "action": "alert", "downgrade_alias": "",
            "webhook_url": "", "enabled": "on"}
    url = f"/admin/billing/budget/{budget.pk}/change/"
    assert client.post(url, {**form, "amount": "120"}).status_code == 302
    budget.refresh_from_db()
    assert budget.webhook_url == HOOK and budget.amount == Decimal("120")
    new = "http://127.0.0.1:9/services/T1/B1/other-secret-a11"
    assert client.post(url, {**form, "webhook_url": new}).status_code == 302
    budget.refresh_from_db()
    assert budget.webhook_url == new
    assert client.post(url, {**form, "clear_webhook_url": "on"}).status_code == 302
    budget.refresh_from_db()
    assert budget.webhook_url == ""
