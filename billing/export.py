"""Ledger rows as CSV or JSON Lines, streamed: rows come from a server-side cursor
(``usage_export_rows``, ``EXPORT_CHUNK`` rows per round trip) and leave as text chunks of
``FLUSH_ROWS`` rows, so memory stays flat whatever the range. Used by
``manage.py export_usage``; the cell formatting (``csv_cell``, ``json_value``) and the chunk
generators are meant for the REST CSV export too (``billing.usage_api``).

Values: times are ISO 8601 in UTC (``2025-01-05T10:30:00Z``); money is a plain decimal
string in USD (``0.000012500000``), empty in CSV / null in JSON when the cost is unknown
(never 0); booleans are ``true`` / ``false``. CSV cells a spreadsheet would run as a formula
(``=``, ``+``, ``-``, ``@``, tab, CR first) get a leading ``'``: end-user ids and conversation
ids come from clients. JSON Lines carries values unchanged."""

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

from billing.usage_selectors import EXPORT_COLUMNS, usage_export_rows, usage_filters_build
from tenants.models import Tenant

FORMATS = ("csv", "jsonl")
FLUSH_ROWS = 500  # rows per text chunk handed on
HEADER = tuple(name for name, _ in EXPORT_COLUMNS)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def csv_cell(value):
    """One CSV cell: see the module docstring."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return _utc_iso(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value  # a spreadsheet would run it as a formula
    return value


def json_value(value):
    """One JSON value: money as a decimal string (exact), times as UTC ISO strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return _utc_iso(value)
    return value


def csv_chunks(rows: Iterable[tuple], *, header: tuple[str, ...] = HEADER) -> Iterator[str]:
    """The header, then ``rows`` (tuples in ``header`` order), ``FLUSH_ROWS`` rows per chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for count, row in enumerate(rows, 1):
        writer.writerow([csv_cell(value) for value in row])
        if count % FLUSH_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_chunks(rows: Iterable[tuple], *, header: tuple[str, ...] = HEADER) -> Iterator[str]:
    """One JSON object per row, keys in ``header`` order, ``FLUSH_ROWS`` lines per chunk."""
    lines: list[str] = []
    for row in rows:
        lines.append(json.dumps(dict(zip(header, map(json_value, row), strict=True)), ensure_ascii=False,
                                separators=(",", ":")))
        if len(lines) == FLUSH_ROWS:
            yield "\n".join(lines) + "\n"
            lines.clear()
    if lines:
        yield "\n".join(lines) + "\n"


CHUNKERS: dict[str, Callable[[Iterable[tuple]], Iterator[str]]] = {"csv": csv_chunks, "jsonl": jsonl_chunks}


class _Counted:
    """Passes rows through and counts them."""

    def __init__(self, rows: Iterable[tuple]):
        self.rows = rows
        self.count = 0

    def __iter__(self):
        for row in self.rows:
            self.count += 1
            yield row


def usage_export_write(*, tenant: Tenant, since: date, until: date, fmt: str, write: Callable[[str], object]) -> int:
    """Write ``tenant``'s ledger rows of the local days ``since`` … ``until`` (inclusive, the
    tenant's time zone), newest first, as ``fmt`` through ``write`` (called once per chunk).
    Returns the number of rows. Raises ``InvalidInput`` for a reversed range."""
    if fmt not in CHUNKERS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    filters = usage_filters_build(tenant=tenant, since=since, until=until)
    rows = _Counted(usage_export_rows(tenant=tenant, filters=filters))
    for chunk in CHUNKERS[fmt](rows):
        write(chunk)
    return rows.count
