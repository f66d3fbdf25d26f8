"""GET /api/usage/summary: grouped totals from the rollups or the ledger, latency percentiles
from the ledger (percentile_cont on PostgreSQL, Python elsewhere)."""

import random
import statistics
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import usage_selectors
from billing.models import UsageLog, UsageStatus
from billing.usage_selectors import usage_filters_build, usage_summary
from tests.billing.usage.conftest import utc
from tests.billing.usage.factories import record, sample_record, usage

pytestmark = pytest.mark.django_db

JAN = "since=2025-01-01&until=2025-01-31"
EVERY_STATUS = "status=" + ",".join(UsageStatus.values)  # matches every row, but only the ledger can filter


def summary(client, query: str) -> dict:
    response = client.get(f"/api/usage/summary?{query}")
    assert response.status_code == 200, response.json()
    return response.json()


def quantiles(values) -> tuple[float, float]:
    """p50 and p95 by linear interpolation between closest ranks (what percentile_cont does)."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return round(cuts[49], 2), round(cuts[94], 2)


def test_totals_count_errors_and_cache_hits_and_flag_unknown_costs(world, catalog, client_for):
    t = world.tenant
    at = utc(2025, 1, 10, 12)
    record(t, [
        usage(t, at=at, model=catalog.gpt, cost=Decimal("0.0020"), input_tokens=1000, cached_input_tokens=100,
              cache_write_tokens=10, output_tokens=200, reasoning_tokens=50),
        usage(t, at=at, model=catalog.gpt, cost=Decimal("0.0015"), status="partial"),
        usage(t, at=at, model=catalog.llama, cost=None, status="ok"),  # used tokens, price unknown
        usage(t, at=at, model=catalog.gpt, cost=None, status="error", input_tokens=0, output_tokens=0),
        usage(t, at=at, model=None, cost=None, status="rejected", input_tokens=0, output_tokens=0),
        usage(t, at=at, model=catalog.gpt, cost=Decimal("0"), status="cache_hit"),
    ])

    for query in (JAN, f"{JAN}&{EVERY_STATUS}"):
        body = summary(client_for(user=world.viewer), query)
        totals = body["totals"]
        assert body["source"] == ("rollups" if query == JAN else "ledger")
        assert (totals["requests"], totals["errors"], totals["error_rate"], totals["cache_hits"]) == (6, 3, 0.5, 1)
        assert totals["cost"] == "0.003500000000"  # the known costs
        assert totals["unpriced_requests"] == 1  # the refusals used no tokens: nothing to price
        assert totals["tokens"] == {"input": 1300, "cached_input": 100, "cache_write": 10, "output": 260,
                                    "reasoning": 50}
        assert body["groups"][0]["cost"] == totals["cost"] and body["groups"][0]["key"] == "2025-01-10"


def test_latency_percentiles_are_exact(world, catalog, client_for):
    t = world.tenant
    gpt_latencies = list(range(1, 101))
    mini_latencies = [10, 20, 30, 40]
    random.Random(7).shuffle(gpt_latencies)
    record(t, [usage(t, at=utc(2025, 1, 3) + timedelta(minutes=i), model=catalog.gpt, latency_ms=ms)
               for i, ms in enumerate(gpt_latencies)]
           + [usage(t, at=utc(2025, 1, 20), model=catalog.mini, latency_ms=ms) for ms in mini_latencies])
    client = client_for(user=world.viewer)

    for query in (f"{JAN}&group_by=model", f"{JAN}&group_by=model&{EVERY_STATUS}"):
        body = summary(client, query)
        by_label = {g["label"]: g["latency_ms"] for g in body["groups"]}
        assert by_label["openai:gpt-4o"] == {"p50": 50.5, "p95": 95.05, "avg": 50.5}
        assert by_label["openai:gpt-4o-mini"] == {"p50": 25.0, "p95": 38.5, "avg": 25.0}
        p50, p95 = quantiles(gpt_latencies + mini_latencies)
        assert body["totals"]["latency_ms"]["p50"] == p50 and body["totals"]["latency_ms"]["p95"] == p95

    by_day = {g["key"]: g["latency_ms"] for g in summary(client, f"{JAN}&group_by=day")["groups"]}
    assert by_day == {"2025-01-03": {"p50": 50.5, "p95": 95.05, "avg": 50.5},
                      "2025-01-20": {"p50": 25.0, "p95": 38.5, "avg": 25.0}}


def test_without_percentiles_the_rollups_answer_alone(world, catalog, client_for):
    t = world.tenant
    record(t, [usage(t, at=utc(2025, 1, 3), model=catalog.gpt, latency_ms=ms) for ms in (100, 200, 600)])

    body = summary(client_for(user=world.viewer), f"{JAN}&group_by=model&percentiles=false")

    assert body["totals"]["latency_ms"] == {"p50": None, "p95": None, "avg": 300.0}
    assert body["groups"][0]["latency_ms"] == {"p50": None, "p95": None, "avg": 300.0}
    filters = usage_filters_build(tenant=t, since=utc(2025, 1, 1).date(), until=utc(2025, 1, 31).date())
    with CaptureQueriesContext(connection) as queries:
        totals = usage_summary(tenant=t, group_by="day", filters=filters, percentiles=False).totals
    assert totals.requests == 3 and totals.cost == Decimal("0.003")
    assert not [q for q in queries if UsageLog._meta.db_table in q["sql"]]  # the ledger is not read


def test_time_groups_follow_the_tenant_time_zone(world, catalog, client_for):
    world.tenant.timezone = "Europe/Berlin"  # UTC+1 in winter
    world.tenant.save()
    t = world.tenant
    record(t, [
        usage(t, at=utc(2024, 12, 31, 23, 30), model=catalog.gpt),  # Wed 1 Jan, 00:30 in Berlin
        usage(t, at=utc(2025, 1, 5, 22, 30), model=catalog.gpt),  # Sun 5 Jan, 23:30
        usage(t, at=utc(2025, 1, 5, 23, 30), model=catalog.gpt),  # Mon 6 Jan, 00:30
        usage(t, at=utc(2025, 1, 31, 23, 30), model=catalog.gpt),  # Sat 1 Feb, 00:30
        usage(t, at=utc(2025, 2, 1, 23, 30), model=catalog.gpt),  # Sun 2 Feb: after the range
    ])
    client = client_for(user=world.viewer)
    expected = {
        "day": [("2025-01-01", "2025-01-01", 1), ("2025-01-05", "2025-01-05", 1), ("2025-01-06", "2025-01-06", 1),
                ("2025-02-01", "2025-02-01", 1)],
        "week": [("2024-12-30", "2025-W01", 2), ("2025-01-06", "2025-W02", 1), ("2025-01-27", "2025-W05", 1)],
        "month": [("2025-01-01", "2025-01", 3), ("2025-02-01", "2025-02", 1)],
    }
    for group_by, groups in expected.items():
        for extra in ("", f"&{EVERY_STATUS}"):
            body = summary(client, f"since=2025-01-01&until=2025-02-01&group_by={group_by}{extra}")
            assert body["source"] == ("ledger" if extra else "rollups")
            assert [(g["key"], g["label"], g["requests"]) for g in body["groups"]] == groups, (group_by, extra)
            assert body["totals"]["requests"] == 4


def test_model_provider_and_key_groups_are_labelled_and_sorted_by_cost(world, catalog, client_for):
    t = world.tenant
    at = utc(2025, 1, 15)
    record(t, [
        usage(t, at=at, model=catalog.gpt, key=catalog.chat_key, cost=Decimal("0.30")),
        usage(t, at=at, model=catalog.gpt, key=catalog.admin_key, cost=Decimal("0.20")),
        usage(t, at=at, model=catalog.mini, key=catalog.admin_key, cost=Decimal("0.05")),
        usage(t, at=at, model=catalog.llama, key=catalog.chat_key, cost=Decimal("0.10")),
        usage(t, at=at, model=None, key=None, cost=None, status="rejected", input_tokens=0, output_tokens=0),
    ])
    client = client_for(user=world.viewer)

    models = summary(client, f"{JAN}&group_by=model")["groups"]
    assert [(g["key"], g["label"], g["display_name"], g["cost"]) for g in models] == [
        (catalog.gpt.pk, "openai:gpt-4o", "GPT-4o", "0.500000000000"),
        (catalog.llama.pk, "ollama:llama3:70b", "Llama 3 70B", "0.100000000000"),
        (catalog.mini.pk, "openai:gpt-4o-mini", "gpt-4o-mini", "0.050000000000"),
        (None, "(no model)", None, "0.000000000000"),
    ]
    providers = summary(client, f"{JAN}&group_by=provider")["groups"]
    assert [(g["label"], g["display_name"], g["requests"]) for g in providers] == [
        ("openai", "OpenAI", 3), ("ollama", "ollama", 1), ("(no provider)", None, 1)]

    response = client.get(f"/api/usage/summary?{JAN}&group_by=key")
    keys = response.json()["groups"]
    assert [(g["key"], g["label"], g["prefix"], g["cost"]) for g in keys] == [
        (catalog.chat_key.pk, catalog.chat_key.name, catalog.chat_key.masked, "0.400000000000"),
        (catalog.admin_key.pk, catalog.admin_key.name, catalog.admin_key.masked, "0.250000000000"),
        (None, "(no key)", None, "0.000000000000"),
    ]
    text = response.content.decode()
    assert world.chat_key not in text and world.admin_key not in text


def test_conversations_by_cost_from_the_ledger(world, catalog, client_for):
    t = world.tenant
    at = utc(2025, 1, 15)
    record(t, [
        usage(t, at=at, model=catalog.gpt, conversation_id="a", cost=Decimal("0.03")),
        usage(t, at=at, model=catalog.gpt, conversation_id="a", cost=Decimal("0.02")),
        usage(t, at=at, model=catalog.gpt, conversation_id="b", cost=Decimal("0.02")),
        usage(t, at=at, model=catalog.gpt, conversation_id="c", cost=Decimal("0.04"), latency_ms=300),
        usage(t, at=at, model=catalog.gpt, conversation_id="d", cost=None),  # unknown: sorts as 0
        usage(t, at=at, model=catalog.gpt, conversation_id="", cost=Decimal("0.01")),
    ])
    client = client_for(user=world.viewer)

    body = summary(client, f"{JAN}&group_by=conversation")
    assert body["source"] == "ledger" and body["more"] is False
    assert [(g["key"], g["label"], g["requests"], g["cost"]) for g in body["groups"]] == [
        ("a", "a", 2, "0.050000000000"), ("c", "c", 1, "0.040000000000"), ("b", "b", 1, "0.020000000000"),
        (None, "(no conversation)", 1, "0.010000000000"), ("d", "d", 1, "0.000000000000"),
    ]
    assert body["groups"][1]["latency_ms"] == {"p50": 300.0, "p95": 300.0, "avg": 300.0}
    assert body["groups"][4]["unpriced_requests"] == 1

    top = summary(client, f"{JAN}&group_by=conversation&limit=2")
    assert [g["key"] for g in top["groups"]] == ["a", "c"] and top["more"] is True
    assert top["totals"]["requests"] == 6  # totals cover every row, not only the groups shown


def test_rollups_answer_exactly_what_the_ledger_would(world, catalog, client_for):
    """The same data read both ways: rollups (no status filter) and ledger (a status filter
    that matches every row) must give the same groups and totals, for every grouping and for
    provider and key filters."""
    world.tenant.timezone = "America/New_York"
    world.tenant.save()
    sample_record(world.tenant, catalog, n=400, seed=11)
    client = client_for(user=world.viewer)

    for group_by in ("day", "week", "month", "model", "provider", "key"):
        for filters in ("", "&provider=openai", f"&key={catalog.admin_key.pk}"):
            query = f"since=2025-01-02&until=2025-02-10&group_by={group_by}{filters}"
            from_rollups = summary(client, query)
            from_ledger = summary(client, f"{query}&{EVERY_STATUS}")
            assert (from_rollups["source"], from_ledger["source"]) == ("rollups", "ledger")
            assert from_rollups["totals"] == from_ledger["totals"], query
            assert from_rollups["groups"] == from_ledger["groups"], query
            assert from_rollups["totals"]["requests"] > 0


def test_python_percentiles_match_postgresql(world, catalog, monkeypatch):
    """The embedded (SQLite) path sums with the ORM and computes percentiles in Python; run
    that path here and compare it with percentile_cont."""
    t = world.tenant
    sample_record(t, catalog, n=300, seed=5)
    filters = usage_filters_build(tenant=t, since=utc(2025, 1, 1).date(), until=utc(2025, 1, 31).date())
    for group_by in usage_selectors.GROUPINGS:
        in_sql = usage_summary(tenant=t, group_by=group_by, filters=filters)
        with monkeypatch.context() as patch:
            patch.setattr(usage_selectors, "connection", type("NotPostgres", (), {"vendor": "sqlite"}))
            in_python = usage_summary(tenant=t, group_by=group_by, filters=filters)
        assert in_sql.totals.p95 is not None
        for mine, theirs in [(in_python.totals, in_sql.totals), *zip(in_python.groups, in_sql.groups, strict=True)]:
            assert (mine.p50, mine.p95) == pytest.approx((theirs.p50, theirs.p95), abs=1e-9), group_by
            assert (mine.requests, mine.cost, getattr(mine, "key", None)) == (
                theirs.requests, theirs.cost, getattr(theirs, "key", None))


def test_what_makes_the_summary_read_the_ledger(world, catalog):
    t = world.tenant
    build = usage_filters_build
    for filters, source in [
        (build(tenant=t), "rollups"),
        (build(tenant=t, provider="openai", key_id=catalog.chat_key.pk), "rollups"),
        (build(tenant=t, model="openai:gpt-4o"), "ledger"),  # may name an alias: not in the rollups
        (build(tenant=t, statuses=["ok"]), "ledger"),
        (build(tenant=t, conversation="c"), "ledger"),
        (build(tenant=t, since=utc(2025, 1, 1, 6)), "ledger"),  # not a whole day
    ]:
        assert usage_summary(tenant=t, group_by="day", filters=filters).source == source
    assert usage_summary(tenant=t, group_by="conversation", filters=build(tenant=t)).source == "ledger"


def test_unknown_grouping_lists_the_allowed_ones(world, client_for):
    response = client_for(user=world.viewer).get("/api/usage/summary?group_by=hour")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["group_by"] == [
        "'hour' is not a grouping; use one of day, week, month, model, provider, key, conversation, api, project."]


def test_outsider_summary_counts_only_their_own_usage(world, catalog, client_for):
    record(world.tenant, [usage(world.tenant, at=utc(2025, 1, 9), model=catalog.gpt) for _ in range(3)])
    record(world.other, [usage(world.other, at=utc(2025, 1, 9))])
    assert summary(client_for(key=world.other_admin_key), JAN)["totals"]["requests"] == 1
    assert summary(client_for(user=world.support), f"{JAN}&tenant=acme")["totals"]["requests"] == 3
