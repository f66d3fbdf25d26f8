"""Handling refused usage rows: retry writes them through the ledger (never twice), a row
refused again stays with the new reason, discard deletes with an audit event holding the row;
the management command, the admin actions (superusers only) and the waiting gauge."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum

from billing.dead_letter_services import usage_dead_letters, usage_dead_letters_discard, usage_dead_letters_retry
from billing.ledger import usage_records_write
from billing.models import UsageDaily, UsageDeadLetter, UsageLog
from billing.records import UsageRecord
from core.errors import NotFound
from tenants.access import SYSTEM
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


def record(tenant, request_id: str, **fields) -> UsageRecord:
    row = {"status": "ok", "input_tokens": 10, "output_tokens": 20, "cost": Decimal("0.25"),
           "day": datetime.now(UTC).date(), **fields}
    return UsageRecord(request_id=request_id, tenant_id=tenant.pk, **row)


def spent(tenant) -> tuple[int | None, Decimal | None]:
    totals = UsageDaily.objects.filter(tenant=tenant).aggregate(n=Sum("requests"), cost=Sum("cost"))
    return totals["n"], totals["cost"]


@pytest.fixture
def refusing_777():
    """The database refuses ledger rows with 777 input tokens (as a constraint or a column too
    narrow for a value would) until ``allow()``: a refusal whose cause an operator can fix."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE billing_usagelog ADD CONSTRAINT test_no_777 CHECK (input_tokens <> 777)")

    def allow():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction checks its foreign keys now
            cursor.execute("ALTER TABLE billing_usagelog DROP CONSTRAINT test_no_777")

    return allow


def set_aside(tenant, request_id: str, **fields) -> UsageDeadLetter:
    assert usage_records_write([record(tenant, request_id, input_tokens=777, **fields)]) == []
    return UsageDeadLetter.objects.get(request_id=request_id)


def test_a_row_refused_again_stays_with_the_new_reason_then_is_written_once_the_cause_is_fixed(world, refusing_777):
    usage_records_write([record(world.tenant, "req_ok")])
    letter = set_aside(world.tenant, "req_refused", end_user="alice")
    assert "test_no_777" in letter.reason
    UsageDeadLetter.objects.filter(pk=letter.pk).update(reason="an old reason")

    first = usage_dead_letters_retry(letters=usage_dead_letters(), actor=SYSTEM)

    assert first.written == [] and "test_no_777" in first.kept[letter.pk]
    assert UsageDeadLetter.objects.get(pk=letter.pk).reason == first.kept[letter.pk]  # the new reason
    assert UsageDeadLetter.objects.count() == 1  # not set aside a second time
    assert spent(world.tenant) == (1, Decimal("0.25"))

    refusing_777()  # the operator fixed the cause
    second = usage_dead_letters_retry(letters=usage_dead_letters(ids=[letter.pk]), actor=SYSTEM)

    assert second.written == [letter.pk] and second.kept == {}
    assert not UsageDeadLetter.objects.exists()
    stored = UsageLog.objects.get(request_id="req_refused")
    assert (stored.input_tokens, stored.cost, stored.end_user) == (777, Decimal("0.25"), "alice")
    assert spent(world.tenant) == (2, Decimal("0.50"))  # the rollups count it, once
    events = list(AuditEvent.objects.filter(action="usage_dead_letter.retry").order_by("pk")
                  .values_list("tenant_id", "after"))
    assert [after["outcome"] for _, after in events] == ["kept", "written"]
    assert {tenant_id for tenant_id, _ in events} == {world.tenant.pk}


def test_a_row_already_in_the_ledger_is_not_counted_twice(world, refusing_777):
    letter = set_aside(world.tenant, "req_twice")
    refusing_777()
    usage_records_write([replace(record(world.tenant, "req_twice"), input_tokens=777)])  # the writer got it in
    before = spent(world.tenant)

    result = usage_dead_letters_retry(letters=usage_dead_letters(), actor=SYSTEM)

    assert result.written == [letter.pk] and not UsageDeadLetter.objects.exists()
    assert spent(world.tenant) == before == (1, Decimal("0.25"))


def test_rows_that_cannot_be_retried_safely_stay_and_say_so(world):
    no_id = UsageDeadLetter.objects.create(request_id="", tenant_id=world.tenant.pk, reason="r",
                                           row=json.dumps({"request_id": "", "tenant_id": world.tenant.pk}))
    gone = UsageDeadLetter.objects.create(request_id="req_gone", tenant_id=999_999, reason="r",
                                          row=json.dumps({"request_id": "req_gone", "tenant_id": 999_999}))
    garbled = UsageDeadLetter.objects.create(request_id="req_garbled", tenant_id=world.tenant.pk, reason="r",
                                             row="{not json")

    result = usage_dead_letters_retry(letters=usage_dead_letters(), actor=SYSTEM)

    assert result.written == []
    assert "no request id, so nothing would stop it counting twice" in result.kept[no_id.pk]
    assert "tenant 999999 no longer exists" in result.kept[gone.pk]
    assert "the kept row cannot be read" in result.kept[garbled.pk]
    assert UsageDeadLetter.objects.count() == 3 and not UsageLog.objects.exists()


def test_discard_deletes_and_keeps_the_row_in_the_audit_log(world, refusing_777):
    letter = set_aside(world.tenant, "req_discard")
    other = set_aside(world.other, "req_other")

    assert usage_dead_letters_discard(letters=usage_dead_letters(ids=[letter.pk]), actor=SYSTEM) == 1

    assert list(UsageDeadLetter.objects.values_list("pk", flat=True)) == [other.pk]
    event = AuditEvent.objects.get(action="usage_dead_letter.discard")
    assert event.tenant_id == world.tenant.pk and event.actor == "system"
    assert event.before["request_id"] == "req_discard" and "test_no_777" in event.before["reason"]
    assert event.before["row"]["input_tokens"] == 777 and event.before["row"]["cost"] == "0.25"


def test_unknown_ids_are_named(world):
    with pytest.raises(NotFound, match="No dead letter with id 424242"):
        usage_dead_letters(ids=[424242])


# --- the management command -------------------------------------------------------------------


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("usage_dead_letters", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_lists_retries_and_discards(world, refusing_777):
    old = set_aside(world.tenant, "req_old")
    UsageDeadLetter.objects.filter(pk=old.pk).update(created_at=datetime.now(UTC) - timedelta(days=40))
    new = set_aside(world.tenant, "req_new")

    out, err = run()  # --list is the default
    assert [line.split("\t")[3] for line in out.splitlines()] == ["req_old", "req_new"]  # oldest first
    assert "test_no_777" in out and "2 dead letter(s) waiting" in err
    out, _ = run("--list", "--older-than", "30")
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(old.pk)]

    with pytest.raises(CommandError, match="1 dead letter.*refused again"):
        run("--retry", str(new.pk))
    refusing_777()
    _, err = run("--retry", str(new.pk))
    assert "1 written to the ledger, 0 kept" in err and UsageLog.objects.filter(request_id="req_new").exists()

    with pytest.raises(CommandError, match="name the dead letters .* --older-than DAYS"):
        run("--discard")
    _, err = run("--discard", "--older-than", "30")
    assert "discarded 1 dead letter(s)" in err and not UsageDeadLetter.objects.exists()


@pytest.mark.parametrize("args, message", [
    (["--retry", "424242"], "No dead letter with id 424242"),
    (["--list", "--older-than", "soon"], "--older-than takes a whole number of days"),
])
def test_the_command_says_what_is_wrong(world, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


# --- the admin --------------------------------------------------------------------------------


def test_superusers_retry_and_discard_in_the_admin_support_only_reads(world, client, refusing_777):
    first = set_aside(world.tenant, "req_admin_1")
    second = set_aside(world.tenant, "req_admin_2")
    url = "/admin/billing/usagedeadletter/"

    client.force_login(world.support)  # view-only: no actions
    page = client.get(url)
    assert page.status_code == 200 and 'value="retry"' not in page.content.decode()
    client.post(url, {"action": "discard", "_selected_action": [first.pk]})
    assert UsageDeadLetter.objects.count() == 2
    client.force_login(world.plain_staff)
    assert client.post(url, {"action": "discard", "_selected_action": [first.pk]}).status_code == 403

    root = get_user_model().objects.create_superuser("root@tollgate.test", "root@tollgate.test", "pw")
    client.force_login(root)
    page = client.get(url)
    assert 'value="retry"' in page.content.decode() and 'value="discard"' in page.content.decode()
    kept = client.post(url, {"action": "retry", "_selected_action": [first.pk]}, follow=True)
    assert f"Dead letter {first.pk} kept" in kept.content.decode()
    refusing_777()
    written = client.post(url, {"action": "retry", "_selected_action": [first.pk]}, follow=True)
    assert "1 row(s) written to the ledger" in written.content.decode()
    client.post(url, {"action": "discard", "_selected_action": [second.pk]})
    assert not UsageDeadLetter.objects.exists()
    assert AuditEvent.objects.get(action="usage_dead_letter.discard").actor == "user:root@tollgate.test"


# --- the gauge --------------------------------------------------------------------------------


def test_metrics_say_how_many_wait(world, client, settings, refusing_777):
    settings.METRICS_TOKEN = "t0ken"
    set_aside(world.tenant, "req_gauge_1")
    set_aside(world.tenant, "req_gauge_2")

    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()

    assert "\ntollgate_usage_dead_letters_waiting 2.0\n" in text
