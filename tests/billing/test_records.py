"""The one usage record and its one builder: what a finished request becomes in the ledger, the
JSON layout the spool and the dead-letter table keep, and /v1 and /api/test/llm recording
through the same builder and settling the same way."""

import asyncio
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from billing import records, spend
from billing.models import Budget, UsageLog
from billing.pricing import MAX_TOKENS
from billing.records import LEDGER_FIELDS, UsageRecord, usage_record_build
from core.redis import get_redis
from gateway import app as gateway_app
from gateway.app import gateway
from providers.adapters.types import Deployment, Usage
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider

SETTLEMENT = spend.Settlement(reserved_keys=("tg:resv:t1",), bucket_keys=("tg:spend:t1:d20260301",))


def deployment(**kw) -> Deployment:
    values = dict(provider_id=3, provider_name="up", provider_type="openai", base_url="http://x", api_key="",
                  extra_headers=(), provider_model_id=4, model_id="m", timeout=5, max_retries=0,
                  input_price=Decimal("1"), output_price=Decimal("2"), cached_input_price=None)
    return Deployment(**{**values, **kw})


def build(**kw) -> UsageRecord:
    values = dict(request_id="req_1", tenant_id=1, api_key_id=2, day=date(2026, 3, 1), model_requested="smart",
                  deployment=deployment(), usage=Usage(input_tokens=1000, output_tokens=500), cache_hit=False,
                  attempts=1, status="ok", error_type="", latency_ms=12.7, ttft_ms=None, stream=False,
                  conversation_id="c1", end_user="alice", api="chat", settlement=SETTLEMENT)
    return usage_record_build(**{**values, **kw})


# --- the builder -------------------------------------------------------------------------------


def test_an_answered_request_is_priced_at_its_deployment_and_keeps_its_day_and_settlement():
    record = build()
    assert (record.provider_id, record.provider_model_id, record.status, record.error_type) == (3, 4, "ok", "")
    assert (record.input_tokens, record.output_tokens, record.latency_ms) == (1000, 500, 12)
    assert record.cost == Decimal("0.002")  # 1000 × $1 + 500 × $2 per million
    assert (record.day, record.settlement, record.set_aside) == (date(2026, 3, 1), SETTLEMENT, "")


def test_a_cache_hit_costs_nothing_and_counts_no_tokens():
    record = build(cache_hit=True, status="cache_hit")
    assert (record.status, record.cost, record.input_tokens, record.output_tokens) == ("cache_hit", 0, 0, 0)


def test_a_request_without_usage_that_claims_success_is_an_error_with_no_cost():
    record = build(usage=None, deployment=None)
    assert (record.status, record.cost, record.provider_id, record.input_tokens) == ("error", None, None, 0)
    rejected = build(usage=None, deployment=None, status="rejected", error_type="budget_exceeded")
    assert (rejected.status, rejected.error_type) == ("rejected", "budget_exceeded")


def test_usage_out_of_range_is_cut_to_fit_and_flagged_unless_the_request_failed_otherwise():
    record = build(usage=Usage(input_tokens=2**40, output_tokens=5))
    assert (record.input_tokens, record.error_type) == (MAX_TOKENS, "usage_clamped")
    failed = build(usage=Usage(input_tokens=2**40, output_tokens=5), status="partial", error_type="timeout")
    assert (failed.input_tokens, failed.error_type) == (MAX_TOKENS, "timeout")


def test_an_unknown_price_leaves_the_cost_unknown_and_long_texts_are_cut_to_their_columns():
    record = build(deployment=deployment(output_price=None), model_requested="m" * 300, error_type="e" * 50)
    assert record.cost is None and record.input_tokens == 1000
    assert (len(record.model_requested), len(record.error_type)) == (255, 40)


def test_a_request_refused_before_its_tenant_day_is_known_counts_on_the_utc_day():
    assert build(day=None).day == datetime.now(UTC).date()


# --- the JSON layout (spool, dead letters) ----------------------------------------------------


def test_a_record_round_trips_through_the_json_layout_of_the_ledger_columns_and_day():
    record = build(usage=Usage(input_tokens=10, output_tokens=3, provider_cost=Decimal("0.25")))
    record.created_at = datetime(2026, 3, 2, 1, 30, 0, 123456, tzinfo=UTC)
    row = orjson.loads(orjson.dumps(record.as_row(), default=str))
    assert set(row) == {*LEDGER_FIELDS, "_day"} and row["_day"] == "2026-03-01"
    assert row["cost"] == "0.000016000000" and row["provider_cost"] == "0.25"
    again = UsageRecord.from_row(row)
    assert again.settlement is None  # a settlement is not kept on disk
    assert again == UsageRecord(**{**{f.name: getattr(record, f.name) for f in fields(UsageRecord)},
                                   "settlement": None})


def test_reading_a_row_ignores_the_private_markers_of_earlier_writers():
    row = {"request_id": "req_x", "tenant_id": 1, "_day": "2026-03-01", "_settle": [0, [], []], "_spool": "/x",
           "cost": "1.5", "created_at": ""}
    record = UsageRecord.from_row(row)
    assert (record.day, record.cost, record.created_at, record.settlement) == (date(2026, 3, 1), Decimal("1.5"),
                                                                               None, None)


# --- /v1 and /api/test/llm: one builder, one settlement ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_v1_and_the_test_endpoint_record_through_the_one_builder_and_both_settle(world, client_for, live,
                                                                                 monkeypatch):
    built: list[UsageRecord] = []

    def spy(**kw):
        record = records.usage_record_build(**kw)
        built.append(record)
        return record

    monkeypatch.setattr(gateway_app, "usage_record_build", spy)
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 5}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        Budget.objects.create(tenant=world.tenant, name="Watch", amount=Decimal("100"), action="block")
        v1 = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                        json={"model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                              "user": "alice"}, timeout=20)
        tested = client_for(key=world.admin_key).post("/api/test/llm", {"model": "up:gpt-4o-mini", "prompt": "hi"},
                                                      format="json")
        assert v1.status_code == 200 and tested.status_code == 200, tested.json()
        asyncio.run_coroutine_threadsafe(gateway.usage.flush(), gateway.usage._task.get_loop()).result(timeout=10)

    ids = [v1.headers["x-request-id"], tested.json()["request_id"]]
    by_id = {record.request_id: record for record in built}
    assert set(ids) <= set(by_id), "each path hands the writer a record from billing's builder"
    today = datetime.now(ZoneInfo(world.tenant.timezone)).date()
    reserved = spend.reserved_key(world.tenant.pk, None)
    expected = spend.Settlement(reserved_keys=(reserved,),
                                bucket_keys=(spend.bucket_key(world.tenant.pk, None, today),))
    assert [by_id[i].settlement for i in ids] == [expected, expected]

    rows = [UsageLog.objects.get(request_id=i) for i in ids]

    def filled(row) -> set[str]:
        columns = {f.attname for f in UsageLog._meta.concrete_fields} - {"id", "latency_ms"}
        return {c for c in columns if getattr(row, c) not in (None, "", 0, False)}

    assert filled(rows[0]) == filled(rows[1])
    assert [(r.status, r.input_tokens, r.output_tokens, r.model_requested) for r in rows] == [
        ("ok", 10, 5, "up:gpt-4o-mini")] * 2
    assert rows[0].cost == rows[1].cost == Decimal(tested.json()["cost"]) > 0

    redis = get_redis()
    total, _, amounts = spend.reservation_keys(reserved)
    assert int(redis.get(total) or 0) == 0 and not redis.hgetall(amounts)  # both released
    assert int(redis.get(expected.bucket_keys[0])) == sum(spend.to_nanos(r.cost) for r in rows)  # both counted
