"""manage.py export_usage: a tenant's ledger rows as CSV or JSON Lines, streamed."""

import csv
import io
import json
import tracemalloc
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from billing.export import HEADER
from billing.models import UsageLog
from billing.usage_selectors import EXPORT_COLUMNS
from tests.billing.ledger.conftest import utc, write

pytestmark = pytest.mark.django_db


def export(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_usage", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def three_rows(world, gpt, chat_key):
    """acme's January: a priced streamed row, an unpriced one and an error; plus rows that
    must not be exported (another tenant's, and acme's outside the range)."""
    t = world.tenant
    priced = write(t, utc(2025, 1, 5, 10, 30), model=gpt, key=chat_key, cost=Decimal("0.0000125"),
                   provider_cost=Decimal("0.00001"), input_tokens=1200, cached_input_tokens=200,
                   cache_write_tokens=3, output_tokens=340, reasoning_tokens=12, latency_ms=950, ttft_ms=210,
                   stream=True, conversation_id="conv-7", end_user='=HYPERLINK("http://evil")')[0]
    unpriced = write(t, utc(2025, 1, 6, 8), model=gpt, cost=None, model_requested="smart",
                     tokens_estimated=True, end_user="user-ü")[0]
    failed = write(t, utc(2025, 1, 31, 23, 59), status="error", error_type="upstream_5xx", attempts=3,
                   cost=Decimal("0"), input_tokens=0, output_tokens=0)[0]
    write(t, utc(2024, 12, 31, 23, 59), utc(2025, 2, 1), model=gpt)  # just outside January
    write(world.other, utc(2025, 1, 10), model=gpt)
    return priced, unpriced, failed


def test_csv(world, three_rows, chat_key):
    priced, unpriced, failed = three_rows

    out, err = export("--tenant", "acme", "--since", "2025-01-01", "--until", "2025-01-31", "--format", "csv")

    table = list(csv.reader(io.StringIO(out)))
    assert tuple(table[0]) == HEADER
    rows = [dict(zip(HEADER, r, strict=True)) for r in table[1:]]
    assert [r["request_id"] for r in rows] == [failed, unpriced, priced]  # newest first, until included
    assert rows[2] == {
        "request_id": priced, "created_at": "2025-01-05T10:30:00Z", "model_requested": "openai:gpt-4o",
        "provider": "openai", "model": "gpt-4o", "key_name": chat_key.name, "key_prefix": chat_key.prefix,
        "project": "", "status": "ok", "error_type": "", "attempts": "1", "input_tokens": "1200",
        "cached_input_tokens": "200",
        "cache_write_tokens": "3", "output_tokens": "340", "reasoning_tokens": "12", "tokens_estimated": "false",
        "cost": "0.000012500000", "provider_cost": "0.000010000000", "latency_ms": "950", "ttft_ms": "210",
        "stream": "true", "conversation_id": "conv-7",
        "end_user": "'=HYPERLINK(\"http://evil\")",  # a spreadsheet must not run it
        "api": "chat",
    }
    assert (rows[1]["cost"], rows[1]["model_requested"], rows[1]["tokens_estimated"]) == ("", "smart", "true")
    assert rows[1]["end_user"] == "user-ü"
    assert (rows[0]["cost"], rows[0]["provider"], rows[0]["key_prefix"], rows[0]["ttft_ms"]) == (
        "0.000000000000", "", "", "")
    assert world.chat_key not in out
    assert err.strip() == "exported 3 row(s) of tenant 'acme', 2025-01-01 to 2025-01-31 (UTC), as csv to stdout"


def test_jsonl(three_rows, chat_key):
    priced, unpriced, failed = three_rows

    out, _ = export("--tenant", "acme", "--since", "2025-01-01", "--until", "2025-01-31", "--format", "jsonl")

    lines = out.splitlines()
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]
    assert [list(r) for r in rows] == [list(HEADER)] * 3
    assert rows[2] == {
        "request_id": priced, "created_at": "2025-01-05T10:30:00Z", "model_requested": "openai:gpt-4o",
        "provider": "openai", "model": "gpt-4o", "key_name": chat_key.name, "key_prefix": chat_key.prefix,
        "project": None, "status": "ok", "error_type": "", "attempts": 1, "input_tokens": 1200,
        "cached_input_tokens": 200,
        "cache_write_tokens": 3, "output_tokens": 340, "reasoning_tokens": 12, "tokens_estimated": False,
        "cost": "0.000012500000", "provider_cost": "0.000010000000", "latency_ms": 950, "ttft_ms": 210,
        "stream": True, "conversation_id": "conv-7",
        "end_user": '=HYPERLINK("http://evil")',  # data, unchanged: JSON is not opened by spreadsheets
        "api": "chat",
    }
    assert (rows[1]["request_id"], rows[1]["cost"], rows[1]["end_user"]) == (unpriced, None, "user-ü")
    assert (rows[0]["request_id"], rows[0]["provider"], rows[0]["ttft_ms"]) == (failed, None, None)


def test_days_are_the_tenants_local_days(world, gpt):
    world.tenant.timezone = "Asia/Tokyo"  # UTC+9
    world.tenant.save()
    t = world.tenant
    late_5th, early_6th, late_6th, early_7th = write(
        t, utc(2025, 1, 5, 14, 59), utc(2025, 1, 5, 15), utc(2025, 1, 6, 14, 59), utc(2025, 1, 6, 15), model=gpt)

    out, err = export("--tenant", "acme", "--since", "2025-01-06", "--until", "2025-01-06", "--format", "jsonl")

    assert [json.loads(line)["request_id"] for line in out.splitlines()] == [late_6th, early_6th]
    assert "2025-01-06 to 2025-01-06 (Asia/Tokyo)" in err


def test_output_file(three_rows, tmp_path):
    target = tmp_path / "acme.csv"
    target.write_text("an older export\n")

    out, err = export("--tenant", "acme", "--since", "2025-01-01", "--until", "2025-01-31", "--format", "csv",
                      "--output", str(target))

    assert out == ""
    assert f"as csv to {target}" in err
    text = target.read_bytes().decode()
    assert text.startswith("request_id,created_at,") and text.count("\r\n") == 4
    assert [p.name for p in tmp_path.iterdir()] == ["acme.csv"]  # no partial file left behind


def test_an_empty_range_is_a_header_or_nothing(three_rows):
    args = ("--tenant", "acme", "--since", "2023-01-01", "--until", "2023-12-31", "--format")
    assert export(*args, "csv")[0] == ",".join(HEADER) + "\r\n"
    assert export(*args, "jsonl")[0] == ""


@pytest.mark.parametrize("args, message", [
    (("--tenant", "acm"), "No tenant with slug 'acm'. Did you mean: acme?"),
    (("--tenant", "zzz"), "No tenant with slug 'zzz'."),
    (("--since", "2025-02-30"), "--since '2025-02-30' is not a date; use YYYY-MM-DD"),
    (("--until", "31/01/2025"), "--until '31/01/2025' is not a date; use YYYY-MM-DD"),
    (("--since", "2025-02-01"), "--since 2025-02-01 is after --until 2025-01-31"),
    (("--format", "xlsx"), "argument --format: invalid choice: 'xlsx' (choose from"),
    (("--output", "/nonexistent/folder/usage.csv"), "the folder /nonexistent/folder does not exist"),
])
def test_errors_say_what_to_fix(world, args, message):
    given = {"--tenant": "acme", "--since": "2025-01-01", "--until": "2025-01-31", "--format": "csv"}
    given.update(zip(args[::2], args[1::2], strict=True))
    with pytest.raises(CommandError) as error:
        export(*[part for pair in given.items() for part in pair])
    assert message in str(error.value)
    for secret in (world.chat_key, world.admin_key, world.other_chat_key, "other"):
        assert secret not in str(error.value)  # nothing about other tenants, no keys


def test_100k_rows_stream_in_flat_memory(world, gpt, chat_key, tmp_path):
    # given 100,000 ledger rows over 3 weeks of March 2025 (written in one statement: the export
    # reads only the ledger), and 1,000 of another tenant in the same weeks
    table = UsageLog._meta.db_table
    with connection.cursor() as cursor:
        for tenant, count in ((world.tenant, 100_000), (world.other, 1_000)):
            cursor.execute(
                f"""INSERT INTO {table} (request_id, tenant_id, api_key_id, provider_id, provider_model_id,
                        model_requested, attempts, status, error_type, input_tokens, cached_input_tokens,
                        cache_write_tokens, output_tokens, reasoning_tokens, tokens_estimated, cost,
                        provider_cost, latency_ms, ttft_ms, stream, conversation_id, end_user, created_at)
                    SELECT 'req_big_' || %s || '_' || g, %s, %s, %s, %s, 'openai:gpt-4o', 1, 'ok', '',
                        1000 + g %% 500, 0, 0, 200 + g %% 50, 0, false,
                        CASE WHEN g %% 11 = 0 THEN NULL ELSE g / 1e7 END, NULL, g %% 3000, NULL, g %% 2 = 0,
                        'conversation-' || g %% 500, 'user-' || g %% 97,
                        timestamptz '2025-03-01 00:00:00+00' + g * interval '18 seconds'
                    FROM generate_series(0, %s - 1) AS g""",
                [tenant.slug, tenant.pk, chat_key.pk if tenant == world.tenant else None, gpt.provider_id,
                 gpt.pk, count],
            )
    target = tmp_path / "march.csv"
    args = ("--tenant", "acme", "--since", "2025-03-01", "--until", "2025-03-31", "--format", "csv",
            "--output", str(target))
    export(*args[:5], "2025-03-01", *args[6:])  # warm up (imports, caches) on a one-day range

    # when it is exported while every Python allocation is traced
    tracemalloc.start()
    try:
        _, err = export(*args)
        streamed_peak = tracemalloc.get_traced_memory()[1]
        # for scale: the same rows merely held in memory, as a non-streaming export would
        tracemalloc.reset_peak()
        held = list(UsageLog.objects.filter(tenant=world.tenant).values_list(*(c for _, c in EXPORT_COLUMNS)))
        held_peak = tracemalloc.get_traced_memory()[1]
        del held
    finally:
        tracemalloc.stop()

    # then every row is there, and the peak stays a small fraction of the file and of the rows
    with target.open(encoding="utf-8", newline="") as f:
        lines = sum(1 for _ in f)
    size = target.stat().st_size
    assert "exported 100000 row(s)" in err
    assert lines == 100_001
    assert size > 15_000_000
    assert streamed_peak < 8_000_000, streamed_peak
    assert streamed_peak * 10 < held_peak, (streamed_peak, held_peak)
    assert streamed_peak * 2 < size, (streamed_peak, size)

