"""A usage row the database refuses is set aside in the dead-letter table with the reason, and
the rows around it are written as usual; a database that is down is not a bad row."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import OperationalError, connection
from django.db.models import Sum
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from billing.ledger import usage_records_write
from billing.models import TenantDaily, UsageDaily, UsageDeadLetter, UsageLog
from billing.pricing import MAX_TOKENS, usage_cost
from billing.records import UsageRecord
from providers.models import MAX_PRICE
from tests.utils.procs import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def dead_letters_counted(error: str) -> float:
    """tollgate_usage_dead_letters_total{error=…} as /metrics would report it."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry.get_sample_value("tollgate_usage_dead_letters_total", {"error": error}) or 0.0


def rows(tenant, n: int, prefix: str) -> list[UsageRecord]:
    day = datetime.now(UTC).date()
    return [UsageRecord(request_id=f"{prefix}{i:03d}", tenant_id=tenant.pk, status="ok", input_tokens=10,
                        output_tokens=20, cost=Decimal("0.001"), day=day) for i in range(n)]


def test_a_poisoned_row_is_set_aside_and_every_good_row_lands_with_its_rollups(world):
    before = dead_letters_counted("NumericValueOutOfRange")
    good = rows(world.tenant, 40, "req_good")
    huge_tokens = replace(good[0], request_id="req_poison_tokens", input_tokens=2**40)
    huge_cost = replace(good[0], request_id="req_poison_cost", cost=Decimal("1e30"))
    batch = [*good[:13], huge_tokens, *good[13:31], huge_cost, *good[31:]]

    written = usage_records_write(batch)

    assert {r.request_id for r in written} == {r.request_id for r in good}
    assert set(UsageLog.objects.values_list("request_id", flat=True)) == {r.request_id for r in good}
    daily = UsageDaily.objects.filter(tenant=world.tenant).aggregate(n=Sum("requests"), cost=Sum("cost"),
                                                                     inp=Sum("input_tokens"))
    assert daily == {"n": 40, "cost": Decimal("0.040"), "inp": 400}
    assert TenantDaily.objects.get(tenant=world.tenant).requests == 40
    letters = {d.request_id: d for d in UsageDeadLetter.objects.all()}
    assert set(letters) == {"req_poison_tokens", "req_poison_cost"}
    tokens = letters["req_poison_tokens"]
    assert tokens.tenant_id == world.tenant.pk and "out of range" in tokens.reason
    assert json.loads(tokens.row)["input_tokens"] == 2**40
    assert json.loads(tokens.row)["_day"] == good[0].day.isoformat()  # the layout of earlier releases
    assert huge_tokens.set_aside == tokens.reason and not good[0].set_aside
    assert "overflow" in letters["req_poison_cost"].reason
    assert json.loads(letters["req_poison_cost"].row)["cost"] == "1E+30"
    assert dead_letters_counted("NumericValueOutOfRange") == before + 2
    # Written again (a retried batch): nothing doubles, nothing is set aside twice.
    assert usage_records_write(batch) == []
    assert UsageDaily.objects.get(tenant=world.tenant).requests == 40
    assert UsageDeadLetter.objects.count() == 2 and dead_letters_counted("NumericValueOutOfRange") == before + 2


def test_text_the_database_cannot_store_is_made_storable_not_refused(world):
    [row] = rows(world.tenant, 1, "req_nul")
    row.end_user, row.model_requested, row.conversation_id = "alice\x00bob", "gpt\x00x", "c\x00"
    assert len(usage_records_write([row])) == 1
    stored = UsageLog.objects.get(request_id="req_nul000")
    assert (stored.end_user, stored.model_requested, stored.conversation_id) == ("alice\ufffdbob", "gpt\ufffdx",
                                                                                 "c\ufffd")
    assert not UsageDeadLetter.objects.exists()


def test_a_database_that_is_down_is_not_a_bad_row(world):
    """Connection problems raise (the writer keeps the batch and retries); nothing is set aside,
    and the next call, with the database back, reconnects and writes."""
    batch = rows(world.tenant, 3, "req_down")
    working = connection.settings_dict
    connection.close()
    connection.settings_dict = {**working, "HOST": "127.0.0.1", "PORT": str(free_port())}
    try:
        with pytest.raises((OperationalError, psycopg.OperationalError)):
            usage_records_write(batch)
    finally:
        connection.settings_dict = working
        connection.close()
    assert not UsageDeadLetter.objects.exists() and not UsageLog.objects.exists()
    assert len(usage_records_write(batch)) == 3


def test_a_connection_lost_mid_write_is_dropped_so_the_retry_reconnects(world):
    batch = rows(world.tenant, 2, "req_lost")
    connection.ensure_connection()
    s = connection.settings_dict
    with psycopg.connect(dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"], host=s["HOST"] or "127.0.0.1",
                         port=s["PORT"] or 5432, autocommit=True) as admin:  # as a database restart would
        admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    with pytest.raises((OperationalError, psycopg.OperationalError)):
        usage_records_write(batch)
    assert not UsageDeadLetter.objects.exists()
    assert len(usage_records_write(batch)) == 2


def test_support_reads_dead_letters_in_the_admin_and_nobody_edits_them(world, client):
    [row] = rows(world.tenant, 1, "req_admin")
    usage_records_write([replace(row, output_tokens=2**35)])
    letter = UsageDeadLetter.objects.get()
    client.force_login(world.support)
    listing = client.get("/admin/billing/usagedeadletter/")
    assert listing.status_code == 200 and "req_admin000" in listing.content.decode()
    page = client.get(f"/admin/billing/usagedeadletter/{letter.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert "out of range" in page.content.decode()
    assert client.get("/admin/billing/usagedeadletter/add/").status_code == 403
    client.force_login(world.plain_staff)
    assert client.get("/admin/billing/usagedeadletter/").status_code == 403


def test_the_rollups_hold_a_day_of_the_dearest_requests(world):
    """A ledger row's cost is bounded by its column (< $1e8); the rollups beside it sum many rows
    and are wider, so no plausible day overflows them."""
    dearest = usage_cost(input_tokens=MAX_TOKENS, cached_input_tokens=0, output_tokens=MAX_TOKENS,
                         input_price=MAX_PRICE, output_price=MAX_PRICE, cached_input_price=None)
    batch = rows(world.tenant, 3, "req_dear")
    for row in batch:
        row.input_tokens, row.output_tokens, row.cost = MAX_TOKENS, MAX_TOKENS, dearest
    assert len(usage_records_write(batch[:1])) == 1
    day = {"cost": dearest * 100_000, "input_tokens": MAX_TOKENS * 100_000, "requests": 100_000}
    UsageDaily.objects.filter(tenant=world.tenant).update(**day)  # as if 100,000 were written today
    TenantDaily.objects.filter(tenant=world.tenant).update(**day)
    assert len(usage_records_write(batch[1:])) == 2
    assert not UsageDeadLetter.objects.exists()
    assert UsageDaily.objects.get(tenant=world.tenant).cost == dearest * 100_002
    assert TenantDaily.objects.get(tenant=world.tenant).cost == dearest * 100_002
