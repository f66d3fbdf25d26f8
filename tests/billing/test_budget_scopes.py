"""Budgets in every scope (issue #16, the management side): project, end-user and model-filtered
budgets through /api/budgets, their spend and reservations, their alerts, the console, and what a
member with a role on one project only may do with them."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.alerts import alerts_check
from billing.models import Budget, BudgetAlert
from billing.periods import local_today
from billing.selectors import budget_reserved_key, budget_status
from billing.spend import hashed as name_hash
from core.redis import get_redis
from tenants.models import AuditEvent
from tests.billing.conftest import make_budget, spend_on

pytestmark = pytest.mark.django_db


def error_of(response, field: str) -> str:
    assert response.status_code == 400, response.content
    fields = response.json()["error"].get("fields", {})
    assert field in fields, fields
    return " ".join(fields[field])


# --- creating them --------------------------------------------------------------------------------


def test_project_end_user_and_model_budgets_are_created_with_their_rule(scoped, client_for):
    client = client_for(user=scoped.owner)
    project = client.post("/api/budgets", {"name": "Support", "scope": "project", "project": "support",
                                           "amount": "50"}, format="json")
    assert project.status_code == 201, project.content
    body = project.json()
    assert body["scope"] == "project" and body["project"] == {"id": scoped.support_project.pk, "slug": "support",
                                                               "name": "Support"}
    assert body["api_key"] is None and body["model"] == ""
    assert body["rule"] == "$50.00 per month for project support"

    by_id = client.post("/api/budgets", {"name": "Web", "project": scoped.web.pk, "amount": "5"}, format="json")
    assert by_id.status_code == 201 and by_id.json()["scope"] == "project"  # a project alone means its scope
    assert by_id.json()["project"]["slug"] == "web"

    each = client.post("/api/budgets", {"name": "Per user", "scope": "end_user", "project": "support",
                                        "amount": "2", "period": "day", "action": "block"}, format="json")
    assert each.status_code == 201, each.content
    assert each.json()["rule"] == "$2.00 per day for each end user of project support"
    everyone = client.post("/api/budgets", {"name": "Every user", "scope": "end_user", "amount": "1",
                                            "period": "week"}, format="json")
    assert everyone.status_code == 201 and everyone.json()["project"] is None
    assert everyone.json()["rule"] == "$1.00 per week for each end user of the tenant"

    for name, model in (("alias", "smart"), ("public", "openai:gpt-4o"), ("bare", "gpt-4o"),
                        ("own", "ollama:llama3:70b"), ("own bare", "llama3:70b")):
        made = client.post("/api/budgets", {"name": name, "model": f" {model} ", "amount": "3"}, format="json")
        assert made.status_code == 201, made.content
        assert made.json()["model"] == model and made.json()["rule"].endswith(f"the whole tenant on model {model}")

    audit = AuditEvent.objects.get(action="budget.create", target=f"budget:{each.json()['id']}")
    assert audit.after["scope"] == "end_user" and audit.after["project"] == scoped.support_project.pk


@pytest.mark.parametrize(("payload", "field", "words"), [
    ({"scope": "project"}, "project", "required when scope is 'project'"),
    ({"scope": "project", "project": "nope"}, "project", "No such project 'nope'"),
    ({"scope": "project", "project": 999_999}, "project", "No such project 999999"),
    ({"scope": "project", "project": "support", "api_key": "KEY"}, "api_key", "only used when scope is 'key'"),
    ({"scope": "end_user", "api_key": "KEY"}, "api_key", "only used when scope is 'key'"),
    ({"scope": "tenant", "project": "support"}, "project", "set scope to 'project'"),
    ({"scope": "key", "api_key": "KEY", "project": "support"}, "project", "belongs to its own project"),
    ({"model": "gpt-5x"}, "model", "not an alias or model of this tenant; some of tenant 'acme': smart"),
    ({"model": "openai:gpt-4o-mini"}, "model", "not an alias or model"),  # a platform model acme has not chosen
    ({"model": "theirs-alias"}, "model", "not an alias or model"),  # the outsider's alias
    ({"model": 5}, "model", "string"),
])
def test_bad_targets_are_400s_that_say_what_to_fix(scoped, client_for, payload, field, words):
    payload = {"name": "x", "amount": "1", **payload}
    if payload.get("api_key") == "KEY":
        payload["api_key"] = scoped.support_key.pk
    message = error_of(client_for(user=scoped.owner).post("/api/budgets", payload, format="json"), field)
    assert words in message
    assert not Budget.objects.exists()


def test_another_tenants_project_reads_like_a_missing_one(scoped, client_for):
    client = client_for(user=scoped.owner)
    by_slug = error_of(client.post("/api/budgets", {"name": "x", "amount": "1", "project": "theirs"},
                                   format="json"), "project")
    by_id = error_of(client.post("/api/budgets", {"name": "x", "amount": "1", "project": scoped.theirs.pk},
                                 format="json"), "project")
    missing = error_of(client.post("/api/budgets", {"name": "x", "amount": "1", "project": 999_999},
                                   format="json"), "project")
    assert by_slug.startswith("No such project") and by_id.replace(str(scoped.theirs.pk), "N") == \
        missing.replace("999999", "N")
    # And the outsider cannot name acme's.
    theirs = client_for(user=scoped.other_owner).post(
        "/api/budgets", {"name": "x", "amount": "1", "project": "support"}, format="json")
    assert "No such project 'support'" in error_of(theirs, "project")


def test_changing_the_scope_keeps_or_drops_the_target(scoped, client_for):
    client = client_for(user=scoped.owner)
    budget = make_budget(scoped.tenant, scope="project", project="support", model="smart")
    changed = client.patch(f"/api/budgets/{budget.pk}", {"scope": "end_user"}, format="json")
    assert changed.status_code == 200 and changed.json()["project"]["slug"] == "support"
    assert changed.json()["model"] == "smart"
    changed = client.patch(f"/api/budgets/{budget.pk}", {"project": None}, format="json")
    assert changed.json()["project"] is None and changed.json()["scope"] == "end_user"
    changed = client.patch(f"/api/budgets/{budget.pk}", {"scope": "tenant", "model": ""}, format="json")
    assert changed.json()["scope"] == "tenant" and changed.json()["model"] == ""
    update = AuditEvent.objects.filter(action="budget.update").order_by("id").last()
    assert update.before == {"scope": "end_user", "model": "smart"} and update.after == {"scope": "tenant",
                                                                                          "model": ""}
    # A model filter whose alias was deleted since can still be changed otherwise.
    filtered = make_budget(scoped.tenant, name="Gone", model="smart")
    scoped.smart.delete()
    assert client.patch(f"/api/budgets/{filtered.pk}", {"enabled": False}, format="json").status_code == 200
    assert "not an alias" in error_of(client.patch(f"/api/budgets/{filtered.pk}", {"model": "smart2"},
                                                   format="json"), "model")


# --- spend, reservations, status --------------------------------------------------------------------


def test_a_project_budget_counts_its_keys_and_a_model_filter_its_models(scoped, client_for):
    today = local_today(scoped.tenant.timezone)
    spend_on(scoped.tenant, today, "1.00", key=scoped.support_key, model=scoped.gpt)
    spend_on(scoped.tenant, today, "2.00", key=scoped.support_key, model=scoped.llama)
    spend_on(scoped.tenant, today, "4.00", key=scoped.web_key, model=scoped.gpt)
    spend_on(scoped.tenant, today - timedelta(days=40), "100", key=scoped.support_key, model=scoped.gpt)

    project = make_budget(scoped.tenant, name="support", project="support", amount=Decimal(10))
    on_smart = make_budget(scoped.tenant, name="smart", model="smart", amount=Decimal(10))
    support_llama = make_budget(scoped.tenant, name="llama", project="support", model="llama3:70b",
                                amount=Decimal(10))
    key_gpt = make_budget(scoped.tenant, name="key", api_key=scoped.web_key.pk, model="openai:gpt-4o",
                          amount=Decimal(10))
    client = client_for(user=scoped.viewer)
    spent = {b.name: client.get(f"/api/budgets/{b.pk}/status").json()["spent"]
             for b in (project, on_smart, support_llama, key_gpt)}
    assert spent == {"support": "3.000000000000", "smart": "5.000000000000", "llama": "2.000000000000",
                     "key": "4.000000000000"}


def test_reservations_are_read_under_the_scope_ids(scoped):
    t = scoped.tenant
    project = make_budget(t, name="p", project="support")
    filtered = make_budget(t, name="f", project="support", model="smart")
    key = make_budget(t, name="k", api_key=scoped.support_key.pk)
    tenant = make_budget(t, name="t", model="gpt-4o")
    each = make_budget(t, name="e", scope="end_user")
    assert budget_reserved_key(budget=project) == f"tg:resv:t{t.pk}:p{scoped.support_project.pk}"
    assert budget_reserved_key(budget=filtered) == f"tg:resv:t{t.pk}:p{scoped.support_project.pk}:f{name_hash('smart')}"
    assert budget_reserved_key(budget=key) == f"tg:resv:t{t.pk}:k{scoped.support_key.pk}"
    assert budget_reserved_key(budget=tenant) == f"tg:resv:t{t.pk}:f{name_hash('gpt-4o')}"
    assert budget_reserved_key(budget=each) is None
    get_redis().set(budget_reserved_key(budget=project), 2_500_000_000)  # $2.50 in nano-dollars
    status = budget_status(tenant=t, budget=project)
    assert status.reserved == Decimal("2.5") and status.remaining == Decimal("97.5")


def test_an_end_user_budget_has_its_rule_instead_of_a_figure(scoped, client_for):
    budget = make_budget(scoped.tenant, name="each", scope="end_user", project="support", amount=Decimal(2),
                         period="day")
    status = client_for(user=scoped.owner).get(f"/api/budgets/{budget.pk}/status")
    assert status.status_code == 200
    body = status.json()
    assert body["state"] == "per_end_user" and body["spent"] is None and body["remaining"] is None
    assert body["percent_used"] is None and body["reserved"] is None
    assert body["rule"] == "$2.00 per day for each end user of project support"


# --- alerts ---------------------------------------------------------------------------------------


def test_project_and_model_budgets_alert_and_end_user_ones_do_not(scoped, mailoutbox):
    today = local_today(scoped.tenant.timezone)
    spend_on(scoped.tenant, today, "6.00", key=scoped.support_key, model=scoped.gpt)
    spend_on(scoped.tenant, today, "9.00", key=scoped.web_key, model=scoped.llama)
    project = make_budget(scoped.tenant, name="support", project="support", amount=Decimal(10),
                          thresholds=[50, 100])
    web = make_budget(scoped.tenant, name="web", project="web", amount=Decimal(100), thresholds=[50])
    smart = make_budget(scoped.tenant, name="smart", model="smart", amount=Decimal(10), thresholds=[50, 100])
    make_budget(scoped.tenant, name="each", scope="end_user", amount=Decimal("0.01"), thresholds=[1])

    alerts_check()
    crossed = sorted(BudgetAlert.objects.values_list("budget__name", "threshold", "spent"))
    assert crossed == [("smart", 50, Decimal("6")), ("support", 50, Decimal("6"))]
    assert not BudgetAlert.objects.filter(budget=web).exists()
    alert = BudgetAlert.objects.get(budget=project)
    from billing.alerts import alert_message

    message = alert_message(alert)
    assert "covers project support" in message.body
    assert message.payload["project"] == "support" and message.payload["model"] is None
    smart_message = alert_message(BudgetAlert.objects.get(budget=smart))
    assert "the whole tenant on model smart" in smart_message.body and smart_message.payload["model"] == "smart"


# --- a member with a role on one project only ----------------------------------------------------


def test_a_project_admin_manages_their_projects_budgets_only(scoped, client_for):
    theirs = make_budget(scoped.tenant, name="support", project="support")
    key_budget = make_budget(scoped.tenant, name="support key", api_key=scoped.support_key.pk)
    web = make_budget(scoped.tenant, name="web", project="web")
    tenant_wide = make_budget(scoped.tenant, name="tenant")
    everyone = make_budget(scoped.tenant, name="every user", scope="end_user")
    client = client_for(user=scoped.support_admin)

    listed = client.get(f"/api/budgets?tenant={scoped.tenant.slug}")
    assert listed.status_code == 200
    assert sorted(b["name"] for b in listed.json()["results"]) == ["support", "support key"]
    for hidden in (web, tenant_wide, everyone):
        assert client.get(f"/api/budgets/{hidden.pk}").status_code == 404
        assert client.patch(f"/api/budgets/{hidden.pk}", {"amount": "1"}, format="json").status_code == 404
        assert client.delete(f"/api/budgets/{hidden.pk}").status_code == 404
        assert client.get(f"/api/budgets/{hidden.pk}/status").status_code == 404

    made = client.post("/api/budgets", {"name": "users", "scope": "end_user", "project": "support",
                                        "amount": "1"}, format="json")
    assert made.status_code == 201, made.content
    assert client.post("/api/budgets", {"name": "k", "api_key": scoped.support_key.pk, "amount": "1"},
                       format="json").status_code == 201
    assert client.patch(f"/api/budgets/{theirs.pk}", {"amount": "7"}, format="json").json()["amount"] == "7.000000"
    assert client.delete(f"/api/budgets/{key_budget.pk}").status_code == 204

    # Refused: another project, the whole tenant, another project's key, moving one out.
    assert "No such project 'web'" in error_of(client.post(
        "/api/budgets", {"name": "x", "project": "web", "amount": "1"}, format="json"), "project")
    for payload in ({"name": "x", "amount": "1"}, {"name": "x", "scope": "end_user", "amount": "1"}):
        refused = client.post("/api/budgets", payload, format="json")
        assert refused.status_code == 403 and "some projects only" in refused.json()["error"]["message"]
    assert "not an API key of the projects you administer" in error_of(client.post(
        "/api/budgets", {"name": "x", "api_key": scoped.web_key.pk, "amount": "1"}, format="json"), "api_key")
    assert client.patch(f"/api/budgets/{theirs.pk}", {"scope": "tenant"}, format="json").status_code == 403
    assert client.patch(f"/api/budgets/{theirs.pk}", {"project": "web"}, format="json").status_code == 400
    theirs.refresh_from_db()
    assert theirs.scope == "project" and theirs.project_id == scoped.support_project.pk
    assert Budget.objects.filter(tenant=scoped.tenant).count() == 6


def test_a_project_viewer_reads_their_projects_budgets_and_changes_nothing(scoped, client_for):
    budget = make_budget(scoped.tenant, name="support", project="support")
    make_budget(scoped.tenant, name="web", project="web")
    client = client_for(user=scoped.support_viewer)
    listed = client.get("/api/budgets")
    assert [b["name"] for b in listed.json()["results"]] == ["support"]
    assert client.get(f"/api/budgets/{budget.pk}/status").status_code == 200
    refused = client.post("/api/budgets", {"name": "x", "project": "support", "amount": "1"}, format="json")
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]["message"]
    assert client.patch(f"/api/budgets/{budget.pk}", {"amount": "1"}, format="json").status_code == 403
    assert client.delete(f"/api/budgets/{budget.pk}").status_code == 403
    assert Budget.objects.get(pk=budget.pk).amount == Decimal(100)


# --- the console ---------------------------------------------------------------------------------------


def test_console_creates_and_shows_budgets_in_every_scope(scoped, client_for):
    client = client_for(user=scoped.owner)
    base = f"/app/{scoped.tenant.slug}/budgets/"
    form = client.get(base + "new/")
    assert form.status_code == 200 and 'name="project"' in form.content.decode()
    # The model field suggests the tenant's aliases and models, never the outsider's.
    assert '<option value="smart">' in form.content.decode()
    assert '<option value="ollama:llama3:70b">' in form.content.decode()
    assert "theirs-alias" not in form.content.decode()
    created = client.post(base + "new/", {"name": "Users", "scope": "end_user", "project": scoped.support_project.pk,
                                         "amount": "2", "period": "day", "thresholds": "50, 100",
                                         "action": "alert", "enabled": "on"})
    assert created.status_code == 302, created.content.decode()[:2000]
    budget = Budget.objects.get(name="Users")
    assert budget.scope == "end_user" and budget.project_id == scoped.support_project.pk
    bad = client.post(base + "new/", {"name": "Model", "scope": "tenant", "model": "gpt-5x", "amount": "2",
                                     "period": "day", "thresholds": "50", "action": "alert"})
    assert bad.status_code == 400 and "is not an alias or model" in bad.content.decode()
    page = client.get(base).content.decode()
    assert "$2.00 per day for each end user of project support" in page
    edit = client.get(f"{base}{budget.pk}/").content.decode()
    assert "no single figure" in edit
