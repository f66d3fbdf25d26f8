"""Writing the ledger: usage records (billing.records.UsageRecord) as rows, and their rollups,
in one transaction.

Records come from the batched writer (billing.writer). A record whose request id is already in
the ledger is skipped, and only the records actually inserted are added to the rollups, so a
retried batch never counts twice and the rollups stay equal to the ledger. Rollups: per tenant
× local day × model × key (UsageDaily), per tenant × local day (TenantDaily), per tenant × local
day × project × end user × model for rows that name an end user (EndUserDaily) and the provider
health histograms (HealthBucket, billing.health). Inserts bypass model instances (the ORM's
per-field work would slow the data plane, this runs beside its event loop): on PostgreSQL a
batch's rows go in one statement, as one JSON array (encoded in C by orjson, unpacked by the
server), which answers with the request ids it inserted; sqlite3 loops one prepared statement
in C.

A batch the database refuses is split in halves until the refused rows are alone; a record it
still refuses is set aside in UsageDeadLetter with the reason (``UsageRecord.set_aside``, and
counted in ``tollgate_usage_dead_letters``), so it never holds up the rows behind it. A lost connection is
not a bad row: it is raised, and the writer keeps the batch for its next attempt."""

import dataclasses
import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import orjson
import psycopg
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from psycopg.types.json import Jsonb

from billing.health import SLOTS, latency_bucket
from billing.models import (
    SUM_MONEY,
    EndUserDaily,
    HealthBucket,
    TenantDaily,
    UsageDaily,
    UsageDeadLetter,
    UsageLog,
)
from billing.records import LEDGER_FIELDS, TEXT_FIELDS, UsageRecord, settlement_row
from config import metrics
from providers.models import Provider, ProviderModel
from tenants.models import ApiKey, Tenant

log = logging.getLogger(__name__)

# A record's ledger columns but the last, created_at (adapted to the database on its own).
_COLUMN_VALUES = attrgetter(*LEDGER_FIELDS[:-1])
assert LEDGER_FIELDS[-1] == "created_at"
ERROR_STATUSES = frozenset({"error", "partial", "rejected"})
ROLLUP_SUMS = ("requests", "errors", "cache_hits", "input_tokens", "cached_input_tokens", "cache_write_tokens",
               "output_tokens", "reasoning_tokens", "cost", "unpriced", "latency_ms_total")
SUM_DIGITS = (SUM_MONEY["max_digits"], SUM_MONEY["decimal_places"])
TENANT_SUMS = ("requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cost", "unpriced")
END_USER_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cost", "unpriced")


# The database is unreachable or went away (psycopg's own errors come from the raw cursor):
# nothing is wrong with the rows, so they are kept for the next attempt.
CONNECTION_ERRORS = (
    OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError,
)
# A foreign key broken by a key, provider or tenant deleted meanwhile.
INTEGRITY_ERRORS = (IntegrityError, psycopg.IntegrityError)


def usage_records_write(records: list[UsageRecord]) -> list[UsageRecord]:
    """Write ``records`` as ledger rows (rolled up on their ``day``) and return the ones that
    were new. A record the database refuses is set aside (its ``set_aside`` says why); a
    connection error is raised, nothing set aside."""
    if not records:
        return []
    for record in records:
        for name in TEXT_FIELDS:  # PostgreSQL text cannot hold NUL; a client may send one
            value = getattr(record, name)
            if isinstance(value, str) and "\x00" in value:
                setattr(record, name, value.replace("\x00", "\ufffd"))
    return _write_or_split(records)


def _write_or_split(rows: list[UsageRecord]) -> list[UsageRecord]:
    try:
        with transaction.atomic():
            return _write(rows)
    except CONNECTION_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - any other refusal is the rows' own: find them
        if len(rows) == 1:
            return _salvage(rows[0], exc)
    middle = len(rows) // 2
    return _write_or_split(rows[:middle]) + _write_or_split(rows[middle:])


def _write(rows: list[UsageRecord]) -> list[UsageRecord]:
    new, seen = [], set()
    for row in rows:  # a request id twice in one batch: the first row counts
        if row.request_id not in seen:
            seen.add(row.request_id)
            new.append(row)
    inserted, xid = _insert_ledger(new)
    new = [row for row in new if row.request_id in inserted]
    for row in new:
        row.committed_in = xid
    if new:
        _add_to_rollups(new)
        _add_to_health(new)
    return new


def _execute_many(sql: str, params: list[tuple]) -> None:
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        # psycopg's own Cursor binds on the server: one prepared statement, pipelined. (The
        # connection's default cursor is Django's client-binding one: a new statement per row.)
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.executemany(sql, params)
    else:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def _insert_ledger(rows: list[UsageRecord]) -> tuple[set[str], int | None]:
    """Insert the rows whose request id is not in the ledger yet; return their request ids and
    the id of the transaction writing them (PostgreSQL; None elsewhere): settlement skips a
    counter rebuilt from rollups that already saw it (billing.spend.SETTLE_SCRIPT)."""
    adapt_time = connection.ops.adapt_datetimefield_value
    now = datetime.now(UTC)
    params = [(*_COLUMN_VALUES(row), adapt_time(row.created_at or now)) for row in rows]
    quote = connection.ops.quote_name
    into = f"INSERT INTO {quote(UsageLog._meta.db_table)} ({', '.join(quote(c) for c in LEDGER_FIELDS)})"
    if connection.vendor == "postgresql":
        # One statement, the rows as one JSON array: a third of the CPU of a pipelined INSERT per
        # row plus a SELECT of the ids already there, on a thread that shares the GIL with the
        # event loop (and a fraction of the server's time). Each value is cast to its column's
        # base type (varchar, not varchar(40)): the insert itself checks lengths and scales, as
        # it does a bound parameter's.
        casts = ", ".join(f"(r->>{i})::{UsageLog._meta.get_field(c).db_type(connection).split('(')[0]}"
                          for i, c in enumerate(LEDGER_FIELDS))
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(
                f"{into} SELECT {casts} FROM jsonb_array_elements(%s) AS r "
                f"ON CONFLICT ({quote('request_id')}) DO NOTHING RETURNING {quote('request_id')}, "
                "pg_current_xact_id()::text",
                [Jsonb(params, dumps=_json_array)],
            )
            returned = cursor.fetchall()
            return {request_id for request_id, _ in returned}, int(returned[0][1]) if returned else None
    ids = [row.request_id for row in rows]
    existing = set(UsageLog.objects.filter(request_id__in=ids).values_list("request_id", flat=True))
    _execute_many(
        f"{into} VALUES ({', '.join(['%s'] * len(LEDGER_FIELDS))}) ON CONFLICT ({quote('request_id')}) DO NOTHING",
        [values for request_id, values in zip(ids, params, strict=True) if request_id not in existing],
    )
    return set(ids) - existing, None


def _json_array(params: list[tuple]) -> bytes:
    """Ledger values as JSON: money (Decimal) as a string, exact; datetimes in ISO 8601."""
    return orjson.dumps(params, default=_decimal_text)


def _decimal_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a ledger value")


def rollup_key(row: UsageRecord) -> tuple[int, date, int, int]:
    day = row.day or (row.created_at or datetime.now(UTC)).date()
    return (row.tenant_id, day, row.provider_model_id or 0, row.api_key_id or 0)


def _add_to_rollups(rows: list[UsageRecord]) -> None:
    totals: dict[tuple, dict[str, Any]] = {}
    provider_of: dict[tuple, int] = {}
    keys = [rollup_key(row) for row in rows]  # one day per row for every rollup
    for row, key in zip(rows, keys, strict=True):
        acc = totals.get(key)
        if acc is None:
            acc = totals[key] = dict.fromkeys(ROLLUP_SUMS, 0)
            acc["cost"] = Decimal(0)
        provider_of[key] = row.provider_id or 0
        status = row.status
        acc["requests"] += 1
        acc["errors"] += status in ERROR_STATUSES
        acc["cache_hits"] += status == "cache_hit"
        for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"):
            acc[name] += getattr(row, name) or 0
        if row.cost is not None:
            acc["cost"] += row.cost
        elif (row.input_tokens or 0) + (row.output_tokens or 0) > 0:
            acc["unpriced"] += 1
        acc["latency_ms_total"] += row.latency_ms or 0
    sql = _upsert_sql(UsageDaily, ("tenant_id", "day", "provider_id", "provider_model_id", "api_key_id"), ROLLUP_SUMS,
                      conflict=("tenant_id", "day", "provider_model_id", "api_key_id"))
    adapt_date = connection.ops.adapt_datefield_value
    adapt_money = connection.ops.adapt_decimalfield_value
    params = [
        (tenant_id, adapt_date(day), provider_of[(tenant_id, day, pm, key)], pm, key,
         *[adapt_money(acc[n], *SUM_DIGITS) if n == "cost" else acc[n] for n in ROLLUP_SUMS])
        # sorted: concurrent writers lock shared rollup rows in the same order (no deadlock)
        for (tenant_id, day, pm, key), acc in sorted(totals.items())
    ]
    _execute_many(sql, params)

    per_tenant: dict[tuple[int, date], dict[str, Any]] = {}
    for (tenant_id, day, _, _), acc in totals.items():
        into = per_tenant.get((tenant_id, day))
        if into is None:
            per_tenant[(tenant_id, day)] = {n: acc[n] for n in TENANT_SUMS}
        else:
            for n in TENANT_SUMS:
                into[n] += acc[n]
    _execute_many(
        _upsert_sql(TenantDaily, ("tenant_id", "day"), TENANT_SUMS),
        [(tenant_id, adapt_date(day),
          *[adapt_money(acc[n], *SUM_DIGITS) if n == "cost" else acc[n] for n in TENANT_SUMS])
         for (tenant_id, day), acc in sorted(per_tenant.items())],
    )
    _add_to_end_users(rows, keys)


def _add_to_end_users(rows: list[UsageRecord], keys: list[tuple[int, date, int, int]]) -> None:
    """EndUserDaily: the rows that name an end user, per tenant × local day × project × end
    user × model, counted as UsageDaily counts them (``keys``: each row's UsageDaily key, so
    both rollups file a row under the same day)."""
    totals: dict[tuple, dict[str, Any]] = {}
    for row, (tenant_id, day, model_id, _) in zip(rows, keys, strict=True):
        if not row.end_user:
            continue
        key = (tenant_id, day, row.project_id or 0, row.end_user, model_id)
        acc = totals.get(key)
        if acc is None:
            acc = totals[key] = dict.fromkeys(END_USER_SUMS, 0)
            acc["cost"] = Decimal(0)
        acc["requests"] += 1
        acc["errors"] += row.status in ERROR_STATUSES
        acc["input_tokens"] += row.input_tokens or 0
        acc["output_tokens"] += row.output_tokens or 0
        if row.cost is not None:
            acc["cost"] += row.cost
        elif (row.input_tokens or 0) + (row.output_tokens or 0) > 0:
            acc["unpriced"] += 1
    if not totals:
        return
    adapt_date = connection.ops.adapt_datefield_value
    adapt_money = connection.ops.adapt_decimalfield_value
    _execute_many(
        _upsert_sql(EndUserDaily, ("tenant_id", "day", "project_id", "end_user", "provider_model_id"), END_USER_SUMS),
        [(tenant_id, adapt_date(day), project_id, end_user, model_id,
          *[adapt_money(acc[n], *SUM_DIGITS) if n == "cost" else acc[n] for n in END_USER_SUMS])
         # sorted, as above: concurrent writers lock shared rows in one order
         for (tenant_id, day, project_id, end_user, model_id), acc in sorted(totals.items())],
    )


def _upsert_sql(model, key: tuple[str, ...], sums: tuple[str, ...], conflict: tuple[str, ...] = ()) -> str:
    """INSERT one row of ``key`` + ``sums`` columns, or add the sums to the row already there
    (the one with the same ``conflict`` columns: the key by default)."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [*key, *sums]
    sets = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in sums)
    return (f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT ({', '.join(quote(c) for c in conflict or key)}) DO UPDATE SET {sets}")


def _add_to_health(rows: list[UsageRecord]) -> None:
    counts: dict[tuple, list[int]] = {}
    now = datetime.now(UTC)
    for row in rows:
        seconds = int((row.created_at or now).timestamp())  # slots as in health.slot_start
        bucket = latency_bucket(row.latency_ms or 0)
        error = row.status in ERROR_STATUSES
        for span in SLOTS:
            key = (span, seconds - seconds % span, row.provider_id or 0, row.provider_model_id or 0, bucket)
            acc = counts.get(key)
            if acc is None:
                acc = counts[key] = [0, 0]
            acc[0] += 1
            acc[1] += error
    adapt_time = connection.ops.adapt_datetimefield_value
    _execute_many(
        _upsert_sql(HealthBucket, ("span", "start", "provider_id", "provider_model_id", "bucket"),
                    ("requests", "errors")),
        [(span, adapt_time(datetime.fromtimestamp(start, UTC)), provider, model, bucket, n, e)
         for (span, start, provider, model, bucket), (n, e) in sorted(counts.items())],
    )


def _salvage(row: UsageRecord, exc: Exception) -> list[UsageRecord]:
    """One record the database refused with ``exc``: kept without a key, provider or model
    deleted meanwhile (dropped if its tenant is gone), else set aside."""
    if isinstance(exc, INTEGRITY_ERRORS) and _is_id(row.tenant_id):
        if not Tenant.objects.filter(pk=row.tenant_id).exists():
            log.error("usage row %s dropped: tenant %s no longer exists", row.request_id, row.tenant_id)
            return []
        gone = {}
        for field, model in (("api_key_id", ApiKey), ("provider_id", Provider), ("provider_model_id", ProviderModel)):
            value = getattr(row, field)
            if _is_id(value) and not model.objects.filter(pk=value).exists():
                gone[field] = None
        if gone:
            fixed = dataclasses.replace(row, **gone)
            try:
                with transaction.atomic():
                    written = _write([fixed])
                row.committed_in = fixed.committed_in  # the caller settles the record it gave
                return written
            except CONNECTION_ERRORS:
                raise
            except Exception as again:  # noqa: BLE001
                exc = again
    _set_aside(row, exc)
    return []


def _set_aside(row: UsageRecord, exc: Exception) -> None:
    """Keep ``row`` in UsageDeadLetter with the database's reason (once per request id)."""
    detail = getattr(getattr(exc, "diag", None), "message_detail", None)  # psycopg's DETAIL line
    reason = f"{type(exc).__name__}: {exc}"
    if detail and detail not in reason:
        reason += f" ({detail})"
    reason = reason.replace("\x00", "\ufffd")
    row.set_aside = reason
    request_id = str(row.request_id or "").replace("\x00", "\ufffd")[:40]
    tenant_id = row.tenant_id
    kept = row.as_row()
    if row.settlement is not None:  # its budget buckets and token counters, for a retry to count it in
        kept["_settle"] = settlement_row(row.settlement)
    try:
        data = orjson.dumps(kept, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an int beyond 64 bits, a lone surrogate: the slower encoder escapes them
        data = json.dumps(kept, default=str)
    # Nothing of the row can make this insert fail (text, a checked id): if it fails, the
    # database does, and the error goes up so the writer keeps the batch.
    with transaction.atomic():
        if request_id and UsageDeadLetter.objects.filter(request_id=request_id).exists():
            return
        UsageDeadLetter.objects.create(
            request_id=request_id, tenant_id=tenant_id if _is_id(tenant_id) else None, row=data, reason=reason,
        )
    metrics.usage_dead_letters.labels(type(exc).__name__).inc()
    log.error("usage row %s set aside in the dead-letter table: %s", request_id, reason)


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 < value < 2**63
