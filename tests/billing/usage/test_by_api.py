"""The /v1 door in the usage API: rows show their ``api``, ``api=`` filters them (from the
ledger: the rollups do not keep it), ``group_by=api`` totals them, the CSV export has the column,
and another tenant's rows never count."""

import csv
import io
from decimal import Decimal

import pytest

from tests.billing.usage.conftest import utc
from tests.billing.usage.factories import record, usage

pytestmark = pytest.mark.django_db

JAN = "since=2025-01-01&until=2025-01-31"


@pytest.fixture
def doors(world, catalog):
    t = world.tenant
    at = utc(2025, 1, 10, 12)
    rows = record(t, [
        usage(t, at=at, model=catalog.gpt, api="chat", cost=Decimal("0.001")),
        usage(t, at=at, model=catalog.gpt, api="messages", cost=Decimal("0.004")),
        usage(t, at=at, model=catalog.gpt, api="messages", cost=Decimal("0.002"), status="error"),
        usage(t, at=at, model=catalog.mini, api="embeddings", cost=Decimal("0.0001")),
    ])
    record(world.other, [usage(world.other, at=at, api="messages", cost=Decimal("9"))])  # the outsider's
    return rows


def test_rows_carry_their_door_and_filter_by_one_or_more(world, client_for, doors):
    client = client_for(user=world.viewer)
    body = client.get(f"/api/usage?{JAN}&api=messages").json()
    assert sorted(r["request_id"] for r in body["results"]) == sorted(r.request_id for r in doors[1:3])
    assert {r["api"] for r in body["results"]} == {"messages"}
    both = client.get(f"/api/usage?{JAN}&api=messages&api=embeddings").json()["results"]
    assert len(both) == 3
    assert len(client.get(f"/api/usage?{JAN}&api=chat,embeddings").json()["results"]) == 2


def test_an_unknown_door_is_refused_with_the_ones_that_exist(world, client_for, doors):
    response = client_for(user=world.viewer).get(f"/api/usage?{JAN}&api=completions")
    assert response.status_code == 400
    assert "chat, messages, responses, embeddings" in str(response.json())


def test_summary_groups_by_door_from_the_ledger_and_filters_by_it(world, client_for, doors):
    client = client_for(user=world.viewer)
    body = client.get(f"/api/usage/summary?{JAN}&group_by=api").json()
    assert body["source"] == "ledger"
    groups = {g["key"]: (g["label"], g["requests"], g["errors"], g["cost"]) for g in body["groups"]}
    assert groups == {
        "messages": ("messages", 2, 1, "0.006000000000"),
        "chat": ("chat", 1, 0, "0.001000000000"),
        "embeddings": ("embeddings", 1, 0, "0.000100000000"),
    }
    assert [g["key"] for g in body["groups"]] == ["messages", "chat", "embeddings"]  # by cost
    only = client.get(f"/api/usage/summary?{JAN}&group_by=model&api=messages").json()
    assert only["source"] == "ledger"  # whole days, but the rollups cannot filter by door
    assert (only["totals"]["requests"], only["totals"]["cost"]) == (2, "0.006000000000")


def test_the_csv_export_has_the_door_column_and_takes_the_filter(world, client_for, doors):
    response = client_for(key=world.admin_key).get(f"/api/usage/export.csv?{JAN}&api=embeddings",
                                                   HTTP_ACCEPT="text/csv")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0][-1] == "api"
    assert [row[-1] for row in table[1:]] == ["embeddings"]
    assert table[1][0] == doors[3].request_id
