"""Projects in the usage API: rows show their project, ``project=`` (id or slug) filters them
(from the ledger), ``group_by=project`` totals them, the CSV export has the column, another
tenant's project is a 404, and a member with a role on one project reads that project's usage
only."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from tenants.models import Project, ProjectMembership, Role
from tests.billing.usage.conftest import utc
from tests.billing.usage.factories import record, usage

pytestmark = pytest.mark.django_db

JAN = "since=2025-01-01&until=2025-01-31"


@pytest.fixture
def split(world, catalog):
    """acme rows: two in project bot, one in the default project, one without a project (a signed-in
    member's test call); a bot-only viewer; and the outsider's row in its own default project."""
    t = world.tenant
    bot = Project.objects.create(tenant=t, slug="bot", name="Support bot")
    default = Project.objects.get(tenant=t, slug="default")
    at = utc(2025, 1, 10, 12)
    rows = record(t, [
        usage(t, at=at, model=catalog.gpt, project_id=bot.pk, cost=Decimal("0.004")),
        usage(t, at=at, model=catalog.gpt, project_id=bot.pk, cost=Decimal("0.002"), status="error"),
        usage(t, at=at, model=catalog.mini, key=catalog.chat_key, project_id=default.pk, cost=Decimal("0.001")),
        usage(t, at=at, model=catalog.mini, cost=Decimal("0.0005")),
    ])
    theirs = Project.objects.get(tenant=world.other, slug="default")
    record(world.other, [usage(world.other, at=at, project_id=theirs.pk, cost=Decimal("9"))])
    viewer = get_user_model().objects.create_user("botviewer@acme.test", "botviewer@acme.test", "pw")
    ProjectMembership.objects.create(project=bot, user=viewer, role=Role.VIEWER)
    return {"bot": bot, "default": default, "theirs": theirs, "rows": rows, "bot_viewer": viewer}


def test_rows_carry_their_project_and_filter_by_id_or_slug(world, client_for, split):
    client = client_for(user=world.viewer)
    by_slug = client.get(f"/api/usage?{JAN}&project=bot").json()["results"]
    by_id = client.get(f"/api/usage?{JAN}&project={split['bot'].pk}").json()["results"]
    assert sorted(r["request_id"] for r in by_slug) == sorted(r.request_id for r in split["rows"][:2])
    assert by_id == by_slug
    assert {r["project"]["slug"] for r in by_slug} == {"bot"}
    everything = client.get(f"/api/usage?{JAN}").json()["results"]
    assert sorted((r["project"] or {}).get("slug", "-") for r in everything) == ["-", "bot", "bot", "default"]


def test_summary_breaks_down_by_project_and_filters_by_it(world, client_for, split):
    client = client_for(user=world.viewer)
    body = client.get(f"/api/usage/summary?{JAN}&group_by=project").json()
    assert body["source"] == "ledger"
    groups = [(g["key"], g["label"], g["display_name"], g["requests"], g["errors"], g["cost"]) for g in body["groups"]]
    assert groups == [
        (split["bot"].pk, "bot", "Support bot", 2, 1, "0.006000000000"),
        (split["default"].pk, "default", "Default", 1, 0, "0.001000000000"),
        (None, "(no project)", None, 1, 0, "0.000500000000"),
    ]
    only = client.get(f"/api/usage/summary?{JAN}&group_by=model&project=bot").json()
    assert only["source"] == "ledger" and only["totals"]["requests"] == 2
    assert [g["label"] for g in only["groups"]] == ["openai:gpt-4o"]


def test_a_deleted_project_keeps_its_rows(world, client_for, split):
    bot_id = split["bot"].pk
    ProjectMembership.objects.filter(project=split["bot"]).delete()
    split["bot"].delete()
    body = client_for(user=world.viewer).get(f"/api/usage/summary?{JAN}&group_by=project").json()
    assert (bot_id, f"(deleted project {bot_id})") in [(g["key"], g["label"]) for g in body["groups"]]


def test_csv_export_has_the_project_and_its_filter(world, client_for, split):
    response = client_for(user=world.viewer).get(f"/api/usage/export.csv?{JAN}&project=bot")
    assert response.status_code == 200
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["project"] for r in table] == ["bot", "bot"]
    everything = client_for(user=world.viewer).get(f"/api/usage/export.csv?{JAN}")
    table = list(csv.DictReader(io.StringIO(b"".join(everything.streaming_content).decode())))
    assert sorted(r["project"] for r in table) == ["", "bot", "bot", "default"]


def test_another_tenants_project_is_not_found(world, client_for, split):
    client = client_for(user=world.owner)
    theirs = split["theirs"].pk
    for path in ("/api/usage", "/api/usage/summary", "/api/usage/export.csv"):
        response = client.get(f"{path}?{JAN}&project={theirs}")
        assert response.status_code == 404, (path, response.content)
        assert "not found in tenant 'acme'" in response.json()["error"]["message"]
        assert client.get(f"{path}?{JAN}&project=nope").status_code == 404
    outsider = client_for(key=world.other_admin_key)
    assert outsider.get(f"/api/usage?{JAN}&project={split['bot'].pk}").status_code == 404


@pytest.mark.parametrize("bad", ["x" * 51, "a&project=b"])
def test_a_malformed_project_is_a_clear_400(world, client_for, split, bad):
    response = client_for(user=world.viewer).get(f"/api/usage?{JAN}&project={bad}")
    assert response.status_code == 400, response.content
    assert "project" in response.json()["error"]["fields"] or "project" in str(response.json())


def test_a_project_viewer_reads_its_projects_usage_only(world, client_for, split):
    client = client_for(user=split["bot_viewer"])
    rows = client.get(f"/api/usage?{JAN}").json()["results"]
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in split["rows"][:2])
    summary = client.get(f"/api/usage/summary?{JAN}&group_by=day").json()
    assert summary["source"] == "ledger" and summary["totals"]["requests"] == 2
    assert summary["totals"]["cost"] == "0.006000000000"
    by_project = client.get(f"/api/usage/summary?{JAN}&group_by=project").json()
    assert [g["label"] for g in by_project["groups"]] == ["bot"]
    export = client.get(f"/api/usage/export.csv?{JAN}")
    assert len(list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))) == 2
    # Another project of the same tenant, and its keys, are not there for it.
    assert client.get(f"/api/usage?{JAN}&project=default").status_code == 404
    refused_key = client.get(f"/api/usage?{JAN}&key={world.tenant.api_keys.first().pk}")
    assert refused_key.status_code == 400 and "default chat key" not in str(refused_key.json())
