"""/api/end-users (the top end users of a period, with their status) and /api/end-users/blocks:
validation that says what to fix, the audit trail and the configuration version, tenant scoping,
and who may do what (tenant roles, project-only roles, support, keys)."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from billing.end_users import end_user_block, top_end_users
from billing.ledger import usage_records_write
from billing.models import Budget, EndUserBlock
from billing.periods import local_today
from billing.records import UsageRecord
from core.redis import get_redis
from tenants.access import SYSTEM
from tenants.config_version import version_key
from tenants.models import AuditEvent, Project, ProjectMembership, Role
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db

_ids = itertools.count(1)


def spend(tenant, end_user: str, cost: str, *, key=None, days_ago: int = 0, n: int = 1, **fields) -> None:
    """``n`` ledger rows of ``end_user`` (and their rollups) through the ledger writer."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    usage_records_write([UsageRecord(
        request_id=f"req_eu_api{next(_ids):012x}", tenant_id=tenant.pk, created_at=at, day=at.date(),
        api_key_id=key.pk if key else None, project_id=key.project_id if key else None, status="ok",
        input_tokens=100, output_tokens=10, cost=Decimal(cost), end_user=end_user, **fields,
    ) for _ in range(n)])


@pytest.fixture
def acme(world):
    """acme's projects ``bot`` and ``web`` with a key each; ``bot_admin`` administers bot only,
    ``bot_viewer`` reads bot only. Usage: alice in bot and web, bob in web, carol in bot; the
    other tenant's dave."""
    User = get_user_model()
    world.bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Support bot")
    world.web = Project.objects.create(tenant=world.tenant, slug="web", name="Web app")
    world.bot_admin = User.objects.create_user("botadmin@acme.test", "botadmin@acme.test", "pw")
    world.bot_viewer = User.objects.create_user("botviewer@acme.test", "botviewer@acme.test", "pw")
    ProjectMembership.objects.create(project=world.bot, user=world.bot_admin, role=Role.ADMIN)
    ProjectMembership.objects.create(project=world.bot, user=world.bot_viewer, role=Role.VIEWER)
    world.bot_key, _ = api_key_create(tenant=world.tenant, name="bot key", project=world.bot, actor=SYSTEM)
    world.web_key, _ = api_key_create(tenant=world.tenant, name="web key", project=world.web, actor=SYSTEM)
    spend(world.tenant, "alice", "3", key=world.bot_key, n=2)
    spend(world.tenant, "alice", "1", key=world.web_key)
    spend(world.tenant, "bob", "0.5", key=world.web_key, days_ago=10)
    spend(world.tenant, "carol", "0.25", key=world.bot_key, days_ago=1)
    spend(world.other, "dave", "100")
    return world


def rows_of(response) -> list[tuple]:
    assert response.status_code == 200, response.content
    return [(r["end_user"], r["project"]["slug"] if r["project"] else None, r["status"])
            for r in response.json()["results"]]


def error_of(response) -> str:
    return response.json()["error"]["message"]


# --- the top list ------------------------------------------------------------------------------


def test_the_top_list_is_dearest_first_per_end_user_and_project_with_totals(acme, client_for):
    client = client_for(user=acme.viewer)
    body = client.get("/api/end-users").json()
    assert body["period"] == "30d" and body["timezone"] == "UTC"
    assert body["end"] == local_today("UTC").isoformat()
    assert rows_of(client.get("/api/end-users")) == [
        ("alice", "bot", "ok"), ("alice", "web", "ok"), ("bob", "web", "ok"), ("carol", "bot", "ok")]
    first = body["results"][0]
    assert first["requests"] == 2 and first["tokens"] == 220 and first["input_tokens"] == 200
    assert first["cost"] == "6.000000000000" and first["last_seen"] == local_today("UTC").isoformat()
    assert first["blocks"] == [] and first["over_budgets"] == [] and first["unpriced_requests"] == 0

    assert rows_of(client.get("/api/end-users?period=7d")) == [
        ("alice", "bot", "ok"), ("alice", "web", "ok"), ("carol", "bot", "ok")]
    assert rows_of(client.get("/api/end-users?period=today")) == [("alice", "bot", "ok"), ("alice", "web", "ok")]
    assert rows_of(client.get("/api/end-users?project=web")) == [("alice", "web", "ok"), ("bob", "web", "ok")]
    assert rows_of(client.get(f"/api/end-users?project={acme.bot.pk}&search=CAR")) == [("carol", "bot", "ok")]
    assert rows_of(client.get("/api/end-users?limit=1")) == [("alice", "bot", "ok")]
    assert "dave" not in str(client.get("/api/end-users").json())


def test_the_top_list_refuses_what_it_cannot_read(acme, client_for):
    client = client_for(user=acme.owner)
    bad_period = client.get("/api/end-users?period=year")
    assert bad_period.status_code == 400 and "today, 7d, 30d, month" in error_of(bad_period)
    unknown = client.get("/api/end-users?project=nope")
    assert unknown.status_code == 400 and "bot, default, web" in error_of(unknown)
    theirs = Project.objects.get(tenant=acme.other)
    assert client.get(f"/api/end-users?project={theirs.pk}").status_code == 400
    assert client.get("/api/end-users?limit=0").status_code == 400
    assert client.get("/api/end-users?colour=red").status_code == 400


def test_status_shows_blocks_tenant_wide_and_in_a_project_and_end_user_budgets(acme, client_for):
    end_user_block(tenant=acme.tenant, end_user="bob", project=None, reason="abuse", actor=SYSTEM)
    end_user_block(tenant=acme.tenant, end_user="alice", project=acme.web, actor=SYSTEM)
    end_user_block(tenant=acme.other, end_user="carol", project=None, actor=SYSTEM)  # not acme's carol
    # carol spent 0.25 yesterday: over a tenant-wide weekly budget of 0.25, not over a daily one
    Budget.objects.create(tenant=acme.tenant, name="Per user weekly", scope="end_user", amount=Decimal("0.25"),
                          period="rolling_30d")
    Budget.objects.create(tenant=acme.tenant, name="Per user daily", scope="end_user", amount=Decimal("0.1"),
                          period="day", project=acme.web)
    Budget.objects.create(tenant=acme.tenant, name="Disabled", scope="end_user", amount=Decimal("0.01"),
                          enabled=False)
    body = client_for(user=acme.viewer).get("/api/end-users").json()
    assert [(r["end_user"], r["project"]["slug"], r["status"]) for r in body["results"]] == [
        ("alice", "bot", "over_budget"), ("alice", "web", "blocked_in_project"), ("bob", "web", "blocked"),
        ("carol", "bot", "over_budget")]
    alice_bot = body["results"][0]
    # alice's spend in every project counts for the tenant-wide budget
    assert [(b["name"], b["spent"]) for b in alice_bot["over_budgets"]] == [("Per user weekly", "7.000000000000")]
    alice_web = body["results"][1]
    assert [b["project"]["slug"] for b in alice_web["blocks"]] == ["web"]
    assert [b["name"] for b in alice_web["over_budgets"]] == ["Per user daily", "Per user weekly"]
    assert body["results"][2]["blocks"][0]["reason"] == "abuse"


def test_a_budget_for_one_model_counts_that_models_spend_only(acme, client_for):
    from providers.models import Provider, ProviderModel

    openai = Provider.objects.create(name="openai", display_name="OpenAI", provider_type="openai")
    gpt = ProviderModel.objects.create(provider=openai, model_id="gpt-4o")
    spend(acme.tenant, "erin", "0.2", key=acme.bot_key, provider_id=openai.pk, provider_model_id=gpt.pk)
    spend(acme.tenant, "erin", "5", key=acme.bot_key)  # another model (none recorded)
    Budget.objects.create(tenant=acme.tenant, name="gpt-4o per user", scope="end_user", amount=Decimal("1"),
                          period="day", model="openai:gpt-4o")
    top = top_end_users(tenant=acme.tenant, period="today", search="erin")
    assert [r.status for r in top.rows] == ["ok"]
    spend(acme.tenant, "erin", "0.8", key=acme.bot_key, provider_id=openai.pk, provider_model_id=gpt.pk)
    top = top_end_users(tenant=acme.tenant, period="today", search="erin")
    assert [(r.status, [(b.name, s) for b, s in r.over]) for r in top.rows] == [
        ("over_budget", [("gpt-4o per user", Decimal("1.0"))])]


# --- blocks ------------------------------------------------------------------------------------


def test_an_admin_blocks_and_unblocks_with_an_audit_trail_and_a_new_configuration_version(
        acme, client_for, django_capture_on_commit_callbacks):
    client = client_for(user=acme.admin)
    redis = get_redis()
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/end-users/blocks", {"end_user": "  alice ", "project": "bot",
                                                        "reason": "scraping"}, format="json")
    assert created.status_code == 201, created.content
    block = created.json()
    assert block["end_user"] == "alice" and block["project"] == {"id": acme.bot.pk, "slug": "bot"}
    assert block["reason"] == "scraping" and block["created_by"] == "admin@acme.test"
    version = redis.get(version_key(acme.tenant.pk))
    assert version

    again = client.post("/api/end-users/blocks", {"end_user": "alice", "project": acme.bot.pk, "reason": "other"},
                        format="json")
    assert again.status_code == 200 and again.json() == block  # idempotent: the existing block, unchanged
    everywhere = client.post("/api/end-users/blocks", {"end_user": "alice"}, format="json")
    assert everywhere.status_code == 201 and everywhere.json()["project"] is None

    listed = client.get("/api/end-users/blocks").json()
    assert [(b["end_user"], b["project"] and b["project"]["slug"]) for b in listed["results"]] == [
        ("alice", None), ("alice", "bot")]
    assert client.get("/api/end-users/blocks?project=bot").json()["count"] == 1
    assert client.get(f"/api/end-users/blocks/{block['id']}").json() == block

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/end-users/blocks/{block['id']}").status_code == 204
    assert redis.get(version_key(acme.tenant.pk)) != version
    assert client.delete(f"/api/end-users/blocks/{block['id']}").status_code == 404
    assert list(EndUserBlock.objects.values_list("end_user", "project")) == [("alice", None)]
    events = list(AuditEvent.objects.filter(action__startswith="end_user.").order_by("id")
                  .values_list("action", "actor", "target", "before", "after"))
    assert events == [
        ("end_user.block", "user:admin@acme.test", f"end_user_block:{block['id']}", None,
         {"end_user": "alice", "project": "bot", "reason": "scraping"}),
        ("end_user.block", "user:admin@acme.test", f"end_user_block:{everywhere.json()['id']}", None,
         {"end_user": "alice", "project": None, "reason": ""}),
        ("end_user.unblock", "user:admin@acme.test", f"end_user_block:{block['id']}",
         {"end_user": "alice", "project": "bot", "reason": "scraping"}, None),
    ]


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"end_user": ""}, "end_user", "must not be empty"),
    ({"end_user": "   "}, "end_user", "must not be empty"),
    ({"end_user": "x" * 129}, "end_user", "129 characters long; the gateway records at most 128"),
    ({"end_user": "a\nb"}, "end_user", "control characters"),
    ({"end_user": 7}, "end_user", "Expected a string"),
    ({}, "end_user", "required"),
    ({"end_user": "alice", "project": "nope"}, "project", "bot, default, web"),
    ({"end_user": "alice", "reason": "r" * 201}, "reason", "keep it to 200"),
    ({"end_user": "alice", "until": "tomorrow"}, "until", "Unknown field"),
])
def test_a_bad_block_says_what_to_fix(acme, client_for, body, field, says):
    response = client_for(user=acme.owner).post("/api/end-users/blocks", body, format="json")
    assert response.status_code == 400, response.content
    assert says in " ".join(response.json()["error"]["fields"][field])
    assert not EndUserBlock.objects.exists()


def test_an_end_user_of_exactly_128_characters_is_blocked(acme, client_for):
    name = "é" * 128
    response = client_for(key=acme.admin_key).post("/api/end-users/blocks", {"end_user": name}, format="json")
    assert response.status_code == 201 and response.json()["end_user"] == name
    assert response.json()["created_by"] is None
    assert AuditEvent.objects.get(action="end_user.block").actor.startswith("key:")


def test_another_tenants_blocks_and_projects_are_not_found(acme, client_for):
    theirs, _ = end_user_block(tenant=acme.other, end_user="dave", actor=SYSTEM)
    their_project = Project.objects.get(tenant=acme.other)
    client = client_for(user=acme.owner)
    assert client.get(f"/api/end-users/blocks/{theirs.pk}").status_code == 404
    assert client.delete(f"/api/end-users/blocks/{theirs.pk}").status_code == 404
    assert client.post("/api/end-users/blocks", {"end_user": "x", "project": their_project.pk},
                       format="json").status_code == 400
    assert client.get("/api/end-users/blocks").json()["count"] == 0
    outsider = client_for(user=acme.other_owner)
    mine, _ = end_user_block(tenant=acme.tenant, end_user="alice", actor=SYSTEM)
    assert outsider.get(f"/api/end-users/blocks/{mine.pk}").status_code == 404
    assert outsider.delete(f"/api/end-users/blocks/{mine.pk}").status_code == 404
    assert "alice" not in str(outsider.get("/api/end-users").json())
    assert EndUserBlock.objects.filter(pk=mine.pk).exists()


# --- who may do what ---------------------------------------------------------------------------


def test_viewers_support_and_chat_keys_cannot_block_or_unblock(acme, client_for):
    block, _ = end_user_block(tenant=acme.tenant, end_user="alice", project=acme.bot, actor=SYSTEM)
    for client, status in [(client_for(user=acme.viewer), 403), (client_for(user=acme.support), 403),
                           (client_for(key=acme.chat_key), 403), (client_for(), 401)]:
        suffix = f"?tenant={acme.tenant.slug}"
        post = client.post(f"/api/end-users/blocks{suffix}", {"end_user": "bob"}, format="json")
        assert post.status_code == status, post.content
        assert client.delete(f"/api/end-users/blocks/{block.pk}{suffix}").status_code == status
    assert "viewer" in error_of(client_for(user=acme.viewer).post("/api/end-users/blocks", {"end_user": "b"},
                                                                   format="json"))
    support = client_for(user=acme.support)
    assert support.get(f"/api/end-users?tenant={acme.tenant.slug}").status_code == 200
    assert support.get(f"/api/end-users/blocks?tenant={acme.tenant.slug}").json()["count"] == 1
    assert list(EndUserBlock.objects.values_list("end_user", flat=True)) == ["alice"]


def test_a_project_admin_blocks_in_their_project_only_and_sees_its_end_users_only(acme, client_for):
    tenant_wide, _ = end_user_block(tenant=acme.tenant, end_user="bob", actor=SYSTEM)
    in_web, _ = end_user_block(tenant=acme.tenant, end_user="bob", project=acme.web, actor=SYSTEM)
    client = client_for(user=acme.bot_admin)

    assert rows_of(client.get("/api/end-users")) == [("alice", "bot", "ok"), ("carol", "bot", "ok")]
    assert client.get("/api/end-users?project=web").status_code == 400  # not one of theirs
    assert client.get("/api/end-users/blocks").json()["count"] == 0

    created = client.post("/api/end-users/blocks", {"end_user": "carol", "project": "bot"}, format="json")
    assert created.status_code == 201, created.content
    everywhere = client.post("/api/end-users/blocks", {"end_user": "carol"}, format="json")
    assert everywhere.status_code == 403 and "name one of your projects" in error_of(everywhere)
    assert client.post("/api/end-users/blocks", {"end_user": "carol", "project": "web"},
                       format="json").status_code == 400
    assert [b["end_user"] for b in client.get("/api/end-users/blocks").json()["results"]] == ["carol"]
    assert rows_of(client.get("/api/end-users")) == [("alice", "bot", "ok"), ("carol", "bot", "blocked_in_project")]

    assert client.delete(f"/api/end-users/blocks/{tenant_wide.pk}").status_code == 404
    assert client.delete(f"/api/end-users/blocks/{in_web.pk}").status_code == 404
    assert client.delete(f"/api/end-users/blocks/{created.json()['id']}").status_code == 204
    assert set(EndUserBlock.objects.values_list("pk", flat=True)) == {tenant_wide.pk, in_web.pk}


def test_a_project_viewer_reads_their_projects_end_users_and_blocks_only(acme, client_for):
    block, _ = end_user_block(tenant=acme.tenant, end_user="carol", project=acme.bot, actor=SYSTEM)
    client = client_for(user=acme.bot_viewer)
    assert rows_of(client.get("/api/end-users")) == [("alice", "bot", "ok"), ("carol", "bot", "blocked_in_project")]
    assert client.get("/api/end-users/blocks").json()["count"] == 1
    refused = client.post("/api/end-users/blocks", {"end_user": "alice", "project": "bot"}, format="json")
    assert refused.status_code == 403 and "viewer" in error_of(refused)
    assert client.delete(f"/api/end-users/blocks/{block.pk}").status_code == 403
    assert EndUserBlock.objects.count() == 1


def test_a_suspended_tenant_is_read_only(acme, client_for):
    acme.tenant.is_active = False
    acme.tenant.save()
    client = client_for(user=acme.owner)
    assert client.get("/api/end-users").status_code == 200
    refused = client.post("/api/end-users/blocks", {"end_user": "alice"}, format="json")
    assert refused.status_code == 403 and "suspended" in error_of(refused)


@pytest.mark.django_db(transaction=True)
def test_two_admins_blocking_the_same_end_user_at_once_make_one_block(world):
    import threading

    from django.db import connection

    barrier, results = threading.Barrier(4), []

    def block():
        try:
            barrier.wait()
            results.append(end_user_block(tenant=world.tenant, end_user="zed", actor=SYSTEM))
        finally:
            connection.close()

    threads = [threading.Thread(target=block) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len({b.pk for b, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert EndUserBlock.objects.count() == 1 and AuditEvent.objects.filter(action="end_user.block").count() == 1
