"""The end-user daily rollup (EndUserDaily) the ledger writer keeps beside the ledger: exact per
tenant × local day × project × end user × model, never counting a replayed batch or a row set
aside, and the spend per day the gateway rebuilds per-end-user budgets from."""

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Max, Sum

from billing.ledger import usage_records_write
from billing.models import EndUserDaily, UsageDeadLetter, UsageLog
from billing.periods import local_today
from billing.records import UsageRecord
from billing.spend import SpendSource, spend_by_day, to_nanos, tokens_by_day
from tenants.models import Tenant
from tests.billing.ledger.conftest import utc, write

pytestmark = pytest.mark.django_db

SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cost", "unpriced")


def rollup(tenant) -> dict[tuple, dict]:
    return {(r.pop("day"), r.pop("project_id"), r.pop("end_user"), r.pop("provider_model_id")): r
            for r in EndUserDaily.objects.filter(tenant=tenant)
            .values("day", "project_id", "end_user", "provider_model_id", *SUMS)}


def from_ledger(tenant) -> dict[tuple, dict]:
    """What the rollup must hold, recomputed from the ledger (the day is the UTC day here: the
    test tenants are in UTC)."""
    out = {}
    for row in UsageLog.objects.filter(tenant=tenant).exclude(end_user=""):
        key = (row.created_at.date(), row.project_id or 0, row.end_user, row.provider_model_id or 0)
        acc = out.setdefault(key, {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0,
                                   "cost": Decimal(0), "unpriced": 0})
        acc["requests"] += 1
        acc["errors"] += row.status in ("error", "partial", "rejected")
        acc["input_tokens"] += row.input_tokens
        acc["output_tokens"] += row.output_tokens
        if row.cost is not None:
            acc["cost"] += row.cost
        elif row.input_tokens + row.output_tokens:
            acc["unpriced"] += 1
    return out


def test_the_rollup_equals_the_ledger_per_day_project_end_user_and_model(world, gpt, chat_key):
    tenant = world.tenant
    project = chat_key.project_id
    at = utc(2026, 3, 1, 12)
    # one batch: alice twice on the same model (one row), bob, and rows without an end user
    write(tenant, at, at, model=gpt, key=chat_key, project_id=project, end_user="alice", cost=Decimal("0.25"))
    write(tenant, at, model=gpt, key=chat_key, project_id=project, end_user="bob", status="error", cost=None,
          input_tokens=7, output_tokens=0)
    write(tenant, at, model=gpt, key=chat_key, project_id=project, end_user="")
    write(tenant, at, end_user="alice", status="rejected", input_tokens=0, output_tokens=0, cost=None)  # no model
    write(tenant, at + timedelta(days=1), model=gpt, project_id=project, end_user="alice", status="partial",
          cost=Decimal("0.5"))
    write(world.other, at, model=gpt, end_user="alice", cost=Decimal("9"))

    got = rollup(tenant)
    assert got == from_ledger(tenant)
    assert got[(date(2026, 3, 1), project, "alice", gpt.pk)] == {
        "requests": 2, "errors": 0, "input_tokens": 200, "output_tokens": 40, "cost": Decimal("0.5"), "unpriced": 0}
    assert got[(date(2026, 3, 1), project, "bob", gpt.pk)] == {
        "requests": 1, "errors": 1, "input_tokens": 7, "output_tokens": 0, "cost": Decimal(0), "unpriced": 1}
    assert got[(date(2026, 3, 1), 0, "alice", 0)]["errors"] == 1  # rejected, nothing priced, no project
    assert got[(date(2026, 3, 2), project, "alice", gpt.pk)]["errors"] == 1  # partial
    assert "" not in {k[2] for k in got}
    assert EndUserDaily.objects.filter(tenant=world.other).get().cost == Decimal(9)


def test_two_rows_of_one_end_user_in_one_batch_and_a_replayed_batch_count_once(world, gpt, chat_key):
    at = utc(2026, 3, 1, 12)
    base = UsageRecord(request_id="req_eu_1", tenant_id=world.tenant.pk, created_at=at, day=at.date(),
                       api_key_id=chat_key.pk, project_id=chat_key.project_id, provider_id=gpt.provider_id,
                       provider_model_id=gpt.pk, status="ok", input_tokens=10, output_tokens=5,
                       cost=Decimal("0.000000000001"), end_user="carol")
    batch = [base, replace(base, request_id="req_eu_2", cost=Decimal("0.1")),
             replace(base, request_id="req_eu_3", end_user="dave")]
    assert len(usage_records_write(batch)) == 3
    carol = EndUserDaily.objects.get(tenant=world.tenant, end_user="carol")
    assert (carol.requests, carol.input_tokens, carol.cost) == (2, 20, Decimal("0.100000000001"))

    # The writer retries the same batch (its commit was lost), then again with one new row.
    assert usage_records_write([replace(r) for r in batch]) == []
    assert len(usage_records_write([*[replace(r) for r in batch], replace(base, request_id="req_eu_4")])) == 1
    carol.refresh_from_db()
    assert (carol.requests, carol.cost) == (3, Decimal("0.100000000002"))
    assert EndUserDaily.objects.get(end_user="dave").requests == 1
    assert rollup(world.tenant) == from_ledger(world.tenant)


def test_a_row_set_aside_is_not_counted_and_the_rest_of_its_batch_is(world, gpt):
    at = utc(2026, 3, 1, 12)
    rows = [UsageRecord(request_id=f"req_eu_dl_{i}", tenant_id=world.tenant.pk, created_at=at, day=at.date(),
                        status="ok", input_tokens=1, output_tokens=1, cost=Decimal("0.01"), end_user="erin")
            for i in range(5)]
    rows[2] = replace(rows[2], cost=Decimal("1e30"))  # the database refuses it
    assert len(usage_records_write(rows)) == 4
    assert UsageDeadLetter.objects.filter(request_id="req_eu_dl_2").exists()
    erin = EndUserDaily.objects.get(end_user="erin")
    assert (erin.requests, erin.cost) == (4, Decimal("0.04"))


def test_the_rollup_day_is_the_tenants_local_day(world):
    Tenant.objects.filter(pk=world.tenant.pk).update(timezone="Pacific/Auckland")
    world.tenant.refresh_from_db()
    write(world.tenant, utc(2026, 3, 1, 20), end_user="frank")  # 09:00 on 2 March in Auckland
    assert EndUserDaily.objects.get(end_user="frank").day == date(2026, 3, 2)


def end_user_spend_by_day(*, tenant_id, end_user, project_id, days, provider_model_ids):
    """What the data plane rebuilds an end user's budget buckets from (billing.spend.spend_by_day)."""
    models = None if provider_model_ids is None else frozenset(provider_model_ids)
    return spend_by_day(tenant_id=tenant_id, days=list(days),
                        source=SpendSource(project_id=project_id, end_user=end_user, provider_models=models))


def test_spend_by_day_per_project_and_model_in_nano_dollars(world, gpt, chat_key):
    tenant, project = world.tenant, chat_key.project_id
    day1, day2, day3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
    write(tenant, utc(2026, 3, 1, 9), model=gpt, project_id=project, end_user="gina", cost=Decimal("0.1"))
    write(tenant, utc(2026, 3, 1, 10), project_id=None, end_user="gina", cost=Decimal("0.0000000001"))
    write(tenant, utc(2026, 3, 2, 9), model=gpt, project_id=project, end_user="gina", cost=Decimal("2"))
    write(tenant, utc(2026, 3, 2, 9), model=gpt, project_id=project, end_user="hank", cost=Decimal("5"))
    write(world.other, utc(2026, 3, 2, 9), model=gpt, end_user="gina", cost=Decimal("7"))
    days = [day1, day2, day3]

    everywhere = end_user_spend_by_day(tenant_id=tenant.pk, end_user="gina", project_id=None, days=days,
                                       provider_model_ids=None)
    assert everywhere == {day1: 100_000_001, day2: 2_000_000_000, day3: 0}  # 0.1 nano-dollar rounds up
    assert end_user_spend_by_day(tenant_id=tenant.pk, end_user="gina", project_id=project, days=days,
                                 provider_model_ids=None) == {day1: 100_000_000, day2: 2_000_000_000, day3: 0}
    assert end_user_spend_by_day(tenant_id=tenant.pk, end_user="gina", project_id=None, days=days,
                                 provider_model_ids={0}) == {day1: 1, day2: 0, day3: 0}
    assert end_user_spend_by_day(tenant_id=tenant.pk, end_user="gina", project_id=None, days=days,
                                 provider_model_ids=set()) == dict.fromkeys(days, 0)
    assert end_user_spend_by_day(tenant_id=tenant.pk, end_user="nobody", project_id=None, days=[day1],
                                 provider_model_ids=None) == {day1: 0}
    # the same arithmetic as the ledger rows, summed per day
    ledger = UsageLog.objects.filter(tenant=tenant, end_user="gina", created_at__date=day1)
    assert everywhere[day1] == to_nanos(ledger.aggregate(s=Sum("cost"))["s"])


def test_tokens_by_day_read_the_same_rows_as_spend_per_scope(world, gpt, chat_key):
    """What a lost tokens-per-day counter is rebuilt from: input plus output tokens of the scope's
    rows that day — the tenant's, a key's, a project's keys', an end user's, of some models."""
    tenant, project = world.tenant, chat_key.project_id
    day1, day2 = date(2026, 3, 1), date(2026, 3, 2)
    write(tenant, utc(2026, 3, 1, 9), model=gpt, key=chat_key, project_id=project, end_user="ivy")  # 100 + 20
    write(tenant, utc(2026, 3, 1, 10), key=chat_key, project_id=project, input_tokens=5, output_tokens=0)
    write(tenant, utc(2026, 3, 1, 11), end_user="ivy", input_tokens=1, output_tokens=2)  # no key, no model
    write(tenant, utc(2026, 3, 2, 9), model=gpt, key=chat_key, project_id=project, output_tokens=7)
    write(world.other, utc(2026, 3, 1, 9), model=gpt, end_user="ivy", input_tokens=10**6)

    def tokens(**source) -> dict:
        return tokens_by_day(tenant_id=tenant.pk, days=[day1, day2], source=SpendSource(**source))

    assert tokens() == {day1: 128, day2: 107}
    assert tokens(key_id=chat_key.pk) == tokens(project_id=project) == {day1: 125, day2: 107}
    assert tokens(project_id=project + 1000) == {day1: 0, day2: 0}
    assert tokens(provider_models=frozenset({gpt.pk})) == {day1: 120, day2: 107}
    assert tokens(end_user="ivy") == {day1: 123, day2: 0}
    assert tokens(end_user="ivy", project_id=project, provider_models=frozenset({gpt.pk})) == {day1: 120, day2: 0}


def test_one_grouped_query_reads_the_top_list_of_thousands_of_end_users(world, django_assert_max_num_queries):
    from billing.end_users import top_end_users

    today = local_today("UTC")
    EndUserDaily.objects.bulk_create([
        EndUserDaily(tenant=world.tenant, day=today - timedelta(days=d), project_id=0, end_user=f"user-{u}",
                     provider_model_id=d % 2, requests=1, cost=Decimal(u * 7919 % 1000 + d) / 1000)
        for u in range(1500) for d in (0, 3, 9)  # the day 9 days ago is outside 7d
    ])
    with django_assert_max_num_queries(4):  # the grouped rollup, project slugs, blocks, budgets
        top = top_end_users(tenant=world.tenant, period="7d", limit=50)
    assert len(top.rows) == 50
    expected = (EndUserDaily.objects.filter(tenant=world.tenant, day__gt=today - timedelta(days=7)).values("end_user")
                .annotate(c=Sum("cost"), n=Count("id"), last=Max("day")).order_by("-c", "-n", "end_user")[:50])
    assert [(r.end_user, r.cost, r.requests, r.last_day) for r in top.rows] == [
        (e["end_user"], e["c"], e["n"], e["last"]) for e in expected]
    assert {r.requests for r in top.rows} == {2} and {r.last_day for r in top.rows} == {today}
