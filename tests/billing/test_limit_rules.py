"""Limit rules (/api/limits, the console's Limits page, the Django admin): requests per minute,
tokens per minute and tokens per day in a scope, optionally for one model; validated, audited,
bumping the tenant's configuration version, tenant-scoped, and managed by project admins inside
their projects only."""

import pytest
from django.contrib.auth import get_user_model

from billing.limit_services import limit_rule_create
from billing.models import LimitRule
from core.redis import get_redis
from tenants.access import SYSTEM
from tenants.config_version import version_key
from tenants.models import ApiKey, AuditEvent

pytestmark = pytest.mark.django_db


def error_of(response, field: str) -> str:
    assert response.status_code == 400, response.content
    fields = response.json()["error"].get("fields", {})
    assert field in fields, fields
    return " ".join(fields[field])


def make_rule(tenant, **data) -> LimitRule:
    data.setdefault("requests_per_minute", 60)
    return limit_rule_create(tenant=tenant, data=data, actor=SYSTEM)


# --- CRUD ----------------------------------------------------------------------------------------


def test_owner_creates_reads_changes_and_deletes_a_rule(scoped, client_for, django_capture_on_commit_callbacks):
    client = client_for(user=scoped.owner)
    version = get_redis().get(version_key(scoped.tenant.pk))
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/limits", {"scope": "end_user", "project": "support", "model": "smart",
                                              "requests_per_minute": 30, "tokens_per_day": 10_000}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["scope"] == "end_user" and body["project"]["slug"] == "support" and body["model"] == "smart"
    assert (body["requests_per_minute"], body["tokens_per_minute"], body["tokens_per_day"]) == (30, None, 10_000)
    assert body["enabled"] is True and body["api_key"] is None
    assert body["rule"] == "each end user of project support on model smart: 30 requests a minute, 10,000 tokens a day"
    assert get_redis().get(version_key(scoped.tenant.pk)) != version
    rule_id = body["id"]

    assert [r["id"] for r in client.get("/api/limits").json()["results"]] == [rule_id]
    assert client.get(f"/api/limits/{rule_id}").json()["model"] == "smart"
    version = get_redis().get(version_key(scoped.tenant.pk))
    with django_capture_on_commit_callbacks(execute=True):
        changed = client.patch(f"/api/limits/{rule_id}", {"tokens_per_minute": 2000, "tokens_per_day": None},
                               format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["tokens_per_minute"], changed.json()["tokens_per_day"]) == (2000, None)
    assert changed.json()["requests_per_minute"] == 30  # left out, kept
    assert get_redis().get(version_key(scoped.tenant.pk)) != version
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/limits/{rule_id}").status_code == 204
    assert not LimitRule.objects.exists() and client.get(f"/api/limits/{rule_id}").status_code == 404

    events = list(AuditEvent.objects.filter(target=f"limit_rule:{rule_id}").order_by("id"))
    assert [e.action for e in events] == ["limit_rule.create", "limit_rule.update", "limit_rule.delete"]
    assert events[1].before == {"tokens_per_minute": None, "tokens_per_day": 10_000}
    assert events[1].after == {"tokens_per_minute": 2000, "tokens_per_day": None}


def test_rules_in_every_scope(scoped, client_for):
    client = client_for(key=scoped.admin_key)
    for payload, words in (
        ({"tokens_per_minute": 200_000, "model": "openai:gpt-4o"}, "the whole tenant on model openai:gpt-4o"),
        ({"project": scoped.web.pk, "requests_per_minute": 5}, "project web"),
        ({"api_key": scoped.support_key.pk, "tokens_per_day": 7}, f"key 'support key' ({scoped.support_key.masked})"),
        ({"scope": "end_user", "requests_per_minute": 3}, "each end user of the tenant"),
    ):
        made = client.post("/api/limits", payload, format="json")
        assert made.status_code == 201, made.content
        assert made.json()["rule"].startswith(words + ":")
    assert LimitRule.objects.filter(tenant=scoped.tenant).count() == 4


@pytest.mark.parametrize(("payload", "field", "words"), [
    ({}, "requests_per_minute", "at least one limit"),
    ({"requests_per_minute": None, "tokens_per_day": None}, "requests_per_minute", "at least one limit"),
    ({"requests_per_minute": 0}, "requests_per_minute", "greater than or equal to 1"),
    ({"tokens_per_minute": 10**13}, "tokens_per_minute", "less than or equal to"),
    ({"requests_per_minute": 1, "scope": "key"}, "api_key", "required when scope is 'key'"),
    ({"requests_per_minute": 1, "scope": "project"}, "project", "required when scope is 'project'"),
    ({"requests_per_minute": 1, "project": "nope"}, "project", "No such project 'nope'"),
    ({"requests_per_minute": 1, "project": "theirs"}, "project", "No such project 'theirs'"),
    ({"requests_per_minute": 1, "scope": "project", "project": "web", "api_key": "KEY"}, "api_key", "only used"),
    ({"requests_per_minute": 1, "model": "nonexistent"}, "model", "is not an alias or model of this tenant"),
    ({"requests_per_minute": 1, "scope": "planet"}, "scope", "tenant, project, key, end_user"),
    ({"requests_per_minute": 1, "colour": "red"}, "colour", "Unknown field"),
])
def test_bad_rules_are_400s_naming_the_field(scoped, client_for, payload, field, words):
    if payload.get("api_key") == "KEY":
        payload = {**payload, "api_key": scoped.web_key.pk}
    message = error_of(client_for(user=scoped.owner).post("/api/limits", payload, format="json"), field)
    assert words in message
    assert not LimitRule.objects.exists()


def test_another_tenants_key_is_refused_like_a_missing_one(scoped, client_for):
    client = client_for(user=scoped.owner)
    their_key = ApiKey.objects.filter(tenant=scoped.other).first()
    theirs = client.post("/api/limits", {"api_key": their_key.pk, "requests_per_minute": 1}, format="json")
    missing = client.post("/api/limits", {"api_key": 999_999, "requests_per_minute": 1}, format="json")
    assert "is not an API key of tenant 'acme'" in error_of(theirs, "api_key")
    assert "is not an API key of tenant 'acme'" in error_of(missing, "api_key")


def test_one_rule_per_target_and_model(scoped, client_for):
    first = make_rule(scoped.tenant, project="support")
    make_rule(scoped.tenant, project="support", model="smart")  # another model: another rule
    client = client_for(user=scoped.owner)
    twin = client.post("/api/limits", {"project": "support", "tokens_per_day": 5}, format="json")
    assert twin.status_code == 409 and f"Limit rule {first.pk} already sets the limits of project support" in \
        twin.json()["error"]["message"]
    other = make_rule(scoped.tenant, project="web")
    assert client.patch(f"/api/limits/{other.pk}", {"project": "support"}, format="json").status_code == 409
    cleared = client.patch(f"/api/limits/{first.pk}", {"requests_per_minute": None}, format="json")
    assert "at least one limit" in error_of(cleared, "requests_per_minute")


def test_outsiders_and_viewers(scoped, client_for):
    rule = make_rule(scoped.tenant)
    outsider = client_for(user=scoped.other_owner)
    assert outsider.get("/api/limits").json()["count"] == 0
    assert outsider.get(f"/api/limits/{rule.pk}").status_code == 404
    assert outsider.patch(f"/api/limits/{rule.pk}", {"requests_per_minute": 1}, format="json").status_code == 404
    assert outsider.delete(f"/api/limits/{rule.pk}").status_code == 404
    viewer = client_for(user=scoped.viewer)
    assert viewer.get(f"/api/limits/{rule.pk}").status_code == 200
    assert viewer.post("/api/limits", {"requests_per_minute": 1}, format="json").status_code == 403
    assert viewer.delete(f"/api/limits/{rule.pk}").status_code == 403
    assert client_for(key=scoped.chat_key).get("/api/limits").status_code == 403
    assert client_for(user=scoped.support).get(f"/api/limits?tenant={scoped.tenant.slug}").json()["count"] == 1
    assert LimitRule.objects.get(pk=rule.pk).requests_per_minute == 60


# --- a member with a role on one project only -----------------------------------------------------


def test_a_project_admin_manages_their_projects_rules_only(scoped, client_for):
    mine = make_rule(scoped.tenant, project="support")
    web = make_rule(scoped.tenant, project="web")
    tenant_wide = make_rule(scoped.tenant)
    client = client_for(user=scoped.support_admin)
    assert [r["id"] for r in client.get("/api/limits").json()["results"]] == [mine.pk]
    for hidden in (web, tenant_wide):
        assert client.get(f"/api/limits/{hidden.pk}").status_code == 404
        assert client.patch(f"/api/limits/{hidden.pk}", {"requests_per_minute": 1}, format="json").status_code == 404
        assert client.delete(f"/api/limits/{hidden.pk}").status_code == 404

    for payload in ({"scope": "end_user", "project": "support", "requests_per_minute": 2},
                    {"api_key": scoped.support_key.pk, "tokens_per_day": 100}):
        assert client.post("/api/limits", payload, format="json").status_code == 201
    assert client.patch(f"/api/limits/{mine.pk}", {"tokens_per_minute": 9}, format="json").status_code == 200

    assert "No such project 'web'" in error_of(client.post("/api/limits", {"project": "web",
                                                                           "requests_per_minute": 1},
                                                           format="json"), "project")
    assert client.post("/api/limits", {"requests_per_minute": 1}, format="json").status_code == 403
    assert client.post("/api/limits", {"scope": "end_user", "requests_per_minute": 1},
                       format="json").status_code == 403
    assert client.patch(f"/api/limits/{mine.pk}", {"scope": "tenant"}, format="json").status_code == 403
    assert client.delete(f"/api/limits/{mine.pk}").status_code == 204
    assert LimitRule.objects.filter(pk__in=[web.pk, tenant_wide.pk]).count() == 2

    viewer = client_for(user=scoped.support_viewer)
    assert viewer.get("/api/limits").json()["count"] == 2
    assert viewer.post("/api/limits", {"project": "support", "tokens_per_day": 1}, format="json").status_code == 403


# --- console and admin ---------------------------------------------------------------------------


def test_console_lists_adds_edits_and_deletes_rules(scoped, client_for):
    client = client_for(user=scoped.owner)
    base = f"/app/{scoped.tenant.slug}/limits/"
    assert "No limit rules yet" in client.get(base).content.decode()
    created = client.post(base + "new/", {"scope": "project", "project": scoped.support_project.pk, "model": "smart",
                                          "requests_per_minute": "10", "enabled": "on"})
    assert created.status_code == 302, created.content.decode()[:2000]
    rule = LimitRule.objects.get()
    assert (rule.scope, rule.project_id, rule.model, rule.requests_per_minute) == ("project", scoped.support_project.pk,
                                                                                   "smart", 10)
    assert "project support on model smart: 10 requests a minute" in client.get(base).content.decode()
    empty = client.post(base + "new/", {"scope": "tenant", "enabled": "on"})
    assert empty.status_code == 400 and "at least one limit" in empty.content.decode()
    edited = client.post(f"{base}{rule.pk}/", {"scope": "end_user", "project": scoped.support_project.pk,
                                               "tokens_per_day": "500", "enabled": "on"})
    assert edited.status_code == 302
    rule.refresh_from_db()
    assert (rule.scope, rule.model, rule.requests_per_minute, rule.tokens_per_day) == ("end_user", "", None, 500)
    viewer = client_for(user=scoped.viewer)
    assert viewer.get(f"{base}{rule.pk}/").status_code == 200
    assert viewer.post(f"{base}{rule.pk}/delete/").status_code == 403
    assert client.post(f"{base}{rule.pk}/delete/").status_code == 302
    assert not LimitRule.objects.exists()


def test_admin_edits_rules_through_the_service(scoped, client):
    root = get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw")
    client.force_login(root)
    their_key = ApiKey.objects.filter(tenant=scoped.other).first()
    form = {"tenant": scoped.tenant.pk, "scope": "key", "api_key": their_key.pk,
            "project": "", "model": "", "requests_per_minute": "5", "tokens_per_minute": "", "tokens_per_day": "",
            "enabled": "on"}
    refused = client.post("/admin/billing/limitrule/add/", form)
    assert refused.status_code == 200 and "is not an API key of tenant" in refused.content.decode()
    form["api_key"] = scoped.support_key.pk
    saved = client.post("/admin/billing/limitrule/add/", form)
    assert saved.status_code == 302, saved.content.decode()[:3000]
    assert LimitRule.objects.get().api_key_id == scoped.support_key.pk
    assert AuditEvent.objects.filter(action="limit_rule.create", actor="user:root").exists()
    assert client.get("/admin/billing/limitrule/").status_code == 200
