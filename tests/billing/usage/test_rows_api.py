"""GET /api/usage: the ledger's rows, filtered and keyset-paged; who may read them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.billing.usage.conftest import utc
from tests.billing.usage.factories import record, usage

pytestmark = pytest.mark.django_db

JAN = "since=2025-01-01&until=2025-01-31"


def ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["request_id"] for row in response.json()["results"]]


def test_rows_newest_first_with_everything_a_dashboard_needs(world, catalog, client_for):
    tenant = world.tenant
    older, newer = record(tenant, [
        usage(tenant, at=utc(2025, 1, 5, 10), model=catalog.gpt, key=catalog.chat_key, cost=Decimal("0.0125"),
              provider_cost=Decimal("0.0124"), input_tokens=1000, cached_input_tokens=200, cache_write_tokens=30,
              output_tokens=500, reasoning_tokens=40, latency_ms=812, ttft_ms=120, stream=True,
              conversation_id="conv-1", end_user="user-42"),
        usage(tenant, at=utc(2025, 1, 6, 9), model=catalog.llama, key=None, model_requested="fast", cost=None,
              status="error", error_type="upstream_timeout", attempts=3, tokens_estimated=True),
    ])

    response = client_for(user=world.viewer).get(f"/api/usage?{JAN}")

    body = response.json()
    assert [r["request_id"] for r in body["results"]] == [newer.request_id, older.request_id]
    assert body["next"] is None and body["next_cursor"] is None
    assert body["range"] == {"since": "2025-01-01T00:00:00Z", "until": "2025-02-01T00:00:00Z", "timezone": "UTC"}
    assert body["results"][1] == {
        "request_id": older.request_id, "created_at": "2025-01-05T10:00:00Z", "model_requested": "openai:gpt-4o",
        "provider": "openai", "model": "openai:gpt-4o",
        "key": {"id": catalog.chat_key.pk, "name": catalog.chat_key.name, "prefix": catalog.chat_key.masked},
        "project": None, "status": "ok", "error_type": "", "attempts": 1,
        "tokens": {"input": 1000, "cached_input": 200, "cache_write": 30, "output": 500, "reasoning": 40},
        "tokens_estimated": False, "cost": "0.012500000000", "cost_known": True, "provider_cost": "0.012400000000",
        "latency_ms": 812, "ttft_ms": 120, "stream": True, "conversation_id": "conv-1", "end_user": "user-42",
        "api": "chat",
    }
    unknown = body["results"][0]
    assert unknown["cost"] is None and unknown["cost_known"] is False
    assert unknown["key"] is None and unknown["model_requested"] == "fast"
    assert unknown["model"] == "ollama:llama3:70b"
    assert (unknown["status"], unknown["error_type"], unknown["attempts"]) == ("error", "upstream_timeout", 3)
    assert world.chat_key not in response.content.decode()  # the prefix, never the key


def test_default_range_is_the_last_30_days(world, catalog, client_for):
    now = timezone.now()
    recent, month_old, too_old = record(world.tenant, [
        usage(world.tenant, at=now - timedelta(hours=1), model=catalog.gpt),
        usage(world.tenant, at=now - timedelta(days=28), model=catalog.gpt),
        usage(world.tenant, at=now - timedelta(days=31), model=catalog.gpt),
    ])
    assert ids(client_for(user=world.owner).get("/api/usage")) == [recent.request_id, month_old.request_id]


def test_filters(world, catalog, client_for):
    t = world.tenant
    gpt_direct, via_alias, fell_back, local, rejected, in_conv = record(t, [
        usage(t, at=utc(2025, 1, 2), model=catalog.gpt, key=catalog.chat_key),
        usage(t, at=utc(2025, 1, 3), model=catalog.gpt, key=catalog.admin_key, model_requested="smart"),
        usage(t, at=utc(2025, 1, 4), model=catalog.mini, key=catalog.chat_key, model_requested="openai:gpt-4o",
              status="partial"),
        usage(t, at=utc(2025, 1, 5), model=catalog.llama, key=catalog.chat_key, status="error"),
        usage(t, at=utc(2025, 1, 6), model=None, key=catalog.chat_key, model_requested="smart", status="rejected"),
        usage(t, at=utc(2025, 1, 7), model=catalog.mini, key=catalog.admin_key, conversation_id="c-9"),
    ])
    client = client_for(user=world.viewer)

    def get(query: str) -> set[str]:
        dates = "" if "since=" in query else f"{JAN}&"
        return set(ids(client.get(f"/api/usage?{dates}{query}")))

    # model: what was asked for (an alias or id) or what answered, as provider:model_id
    assert get("model=openai:gpt-4o") == {gpt_direct.request_id, via_alias.request_id, fell_back.request_id}
    assert get("model=smart") == {via_alias.request_id, rejected.request_id}
    assert get("model=ollama:llama3:70b") == {local.request_id}
    assert get("model=nothing-like-it") == set()
    assert get("provider=openai") == {gpt_direct.request_id, via_alias.request_id, fell_back.request_id,
                                      in_conv.request_id}
    assert get("provider=ollama") == {local.request_id}
    assert get(f"key={catalog.admin_key.pk}") == {via_alias.request_id, in_conv.request_id}
    assert get("status=error") == {local.request_id}
    assert get("status=partial,rejected") == {fell_back.request_id, rejected.request_id}
    assert get("status=partial&status=error") == {fell_back.request_id, local.request_id}
    assert get("conversation=c-9") == {in_conv.request_id}
    assert get("since=2025-01-04&until=2025-01-05") == {fell_back.request_id, local.request_id}
    assert get(f"provider=openai&key={catalog.chat_key.pk}&status=ok") == {gpt_direct.request_id}


def test_date_bounds_are_local_days_and_date_times_are_instants(world, catalog, client_for):
    world.tenant.timezone = "Europe/Berlin"  # UTC+1 in January
    world.tenant.save()
    t = world.tenant
    late_on_5th, early_on_6th, on_6th = record(t, [
        usage(t, at=utc(2025, 1, 5, 22, 30), model=catalog.gpt),  # 23:30 on the 5th in Berlin
        usage(t, at=utc(2025, 1, 5, 23, 30), model=catalog.gpt),  # 00:30 on the 6th in Berlin
        usage(t, at=utc(2025, 1, 6, 12), model=catalog.gpt),
    ])
    client = client_for(user=world.viewer)

    day6 = client.get("/api/usage?since=2025-01-06&until=2025-01-06")
    assert ids(day6) == [on_6th.request_id, early_on_6th.request_id]
    assert day6.json()["range"] == {"since": "2025-01-05T23:00:00Z", "until": "2025-01-06T23:00:00Z",
                                    "timezone": "Europe/Berlin"}
    assert ids(client.get("/api/usage?since=2025-01-05&until=2025-01-05")) == [late_on_5th.request_id]
    # date-times: since inclusive, until exclusive; an offset is honoured, none means the tenant's zone
    assert ids(client.get("/api/usage?since=2025-01-05T23:30:00Z&until=2025-01-06T12:00:00Z")) == [
        early_on_6th.request_id]
    assert ids(client.get("/api/usage?since=2025-01-06T00:30:00&until=2025-01-06T13:00:00")) == [
        early_on_6th.request_id]
    assert ids(client.get("/api/usage?since=2025-01-06T00:30:00&until=2025-01-06T13:00:01")) == [
        on_6th.request_id, early_on_6th.request_id]
    # an unencoded "+" in an offset arrives as a space, and is read as "+"
    assert ids(client.get("/api/usage?since=2025-01-06T00:30:00+01:00&until=2025-01-06T13:00:00+01:00")) == [
        early_on_6th.request_id]


def test_keyset_pages_walk_every_row_once_even_with_equal_times(world, catalog, client_for):
    t = world.tenant
    same_time = utc(2025, 1, 10, 12)
    earlier = [usage(t, at=utc(2025, 1, 10, 11) - timedelta(minutes=i), model=catalog.gpt) for i in range(6)]
    rows = record(t, [usage(t, at=same_time, model=catalog.gpt) for _ in range(5)] + earlier)
    client = client_for(key=world.admin_key)

    seen, url, pages = [], f"/api/usage?{JAN}&limit=4", 0
    while url:
        body = client.get(url).json()
        seen += [r["request_id"] for r in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3 and len(seen) == len(set(seen)) == 11
    expected = sorted(rows, key=lambda r: (r.created_at, r.pk), reverse=True)
    assert seen == [r.request_id for r in expected]


def test_limit_is_capped_and_cursor_checked(world, catalog, client_for):
    client = client_for(user=world.viewer)
    too_many = client.get("/api/usage?limit=501")
    assert too_many.status_code == 400 and "limit" in too_many.json()["error"]["fields"]
    bad = client.get("/api/usage?cursor=not-a-cursor")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["cursor"] == [
        "Invalid cursor; pass a previous page's next_cursor unchanged."]


@pytest.mark.parametrize("query, field, says", [
    ("since=2025-13-01", "since", "neither a date (YYYY-MM-DD"),
    ("until=yesterday", "until", "ISO 8601 date-time"),
    ("until=9999-12-31", "until", "years 2000 to 2999"),
    ("since=2025-02-01&until=2025-01-01", "since", "must come before until (2025-01-01)"),
    ("status=done", "status", "ok, error, partial, cache_hit, rejected"),
    ("key=abc", "key", "an integer"),
    ("provider=azure", "provider", "providers of tenant 'acme': ollama, openai"),
    ("sort=cost", "sort", "Allowed fields here"),
    ("model=a&model=b", "model", "Give this parameter once"),
])
def test_invalid_filters_name_the_field_and_what_is_allowed(world, catalog, client_for, query, field, says):
    for url in ("/api/usage", "/api/usage/summary", "/api/usage/export.csv"):
        response = client_for(user=world.viewer).get(f"{url}?{query}")
        assert response.status_code == 400, (url, response)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert says in " ".join(error["fields"][field]), error


def test_key_of_another_tenant_is_refused_like_a_missing_one(world, catalog, client_for):
    client = client_for(user=world.viewer)
    theirs = client.get(f"/api/usage?key={catalog.other_key.pk}").json()["error"]
    missing = client.get("/api/usage?key=999999").json()["error"]
    assert theirs["fields"]["key"][0].startswith(f"API key {catalog.other_key.pk} is not a key of tenant 'acme'")
    assert f"{catalog.chat_key.pk} ({catalog.chat_key.name})" in theirs["message"]
    assert missing["message"].startswith("API key 999999 is not a key of tenant 'acme'")
    assert missing["message"].split(";")[1] == theirs["message"].split(";")[1]


ENDPOINTS = ("/api/usage", "/api/usage/summary", "/api/usage/export.csv")


@pytest.mark.parametrize("url", ENDPOINTS)
def test_members_admin_keys_and_support_read_outsiders_see_nothing(world, catalog, client_for, url):
    mine = record(world.tenant, [usage(world.tenant, at=timezone.now(), model=catalog.gpt)])[0]
    theirs = record(world.other, [usage(world.other, at=timezone.now())])[0]

    def read(client, query=""):
        response = client.get(f"{url}?{query}")
        text = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, text.decode()

    for client in (client_for(user=world.viewer), client_for(user=world.admin), client_for(key=world.admin_key)):
        status, text = read(client)
        assert status == 200
        if url != "/api/usage/summary":
            assert mine.request_id in text and theirs.request_id not in text
    status, text = read(client_for(user=world.support), "tenant=acme")
    assert status == 200 and (url == "/api/usage/summary" or mine.request_id in text)
    assert read(client_for(user=world.support))[0] == 400  # support staff name the tenant
    # outsiders: acme does not exist for them; their own usage is all they get
    assert read(client_for(user=world.other_owner), "tenant=acme")[0] == 404
    assert read(client_for(key=world.other_admin_key), "tenant=acme")[0] == 404
    status, text = read(client_for(key=world.other_admin_key))
    assert status == 200 and mine.request_id not in text
    assert read(client_for(user=world.plain_staff), "tenant=acme")[0] == 404
    # chat keys work on /v1 only; anonymous callers are asked to authenticate
    status, text = read(client_for(key=world.chat_key))
    assert status == 403 and "scope 'chat'" in text
    assert read(client_for())[0] == 401
