"""Handling the usage rows the database refused (UsageDeadLetter, set aside by billing.ledger):
list them, retry them, discard them. ``manage.py usage_dead_letters`` and the admin's actions
both call these.

**Retry** writes the kept row through the ledger's normal path (``usage_records_write``), which
skips a request id already in the ledger, so a retry never counts a request twice. The dead
letter is deleted once its row is in the ledger (written now, or found there); if the database
refuses it again it stays, with the new reason. A row without a request id is never retried
(nothing would stop it counting twice), nor one whose tenant is gone (there is nobody to bill):
both stay, saying so, for an operator to discard. A retried row counts in the rollups
(dashboards, exports, alerts, and any counter rebuilt from them) and, once its transaction
commits, in the live counters in Redis, which were settled without it when it was set aside:
its cost is added to the budget buckets of its day and its tokens to the tokens-per-day counters
it was admitted under (kept with the row as ``_settle``), each only if Redis holds it (a missing
one is rebuilt from the rollups, which have the row), the way the usage writer settles a row. A
row the writer had written already is not added again. Redis unreachable: logged, nothing else —
the rollups have the row, and a counter Redis lost is rebuilt from them.

**Discard** deletes dead letters and writes one audit event each, holding the whole row and
its reason, so what was given up stays on record.

Nothing is pruned automatically: a dead letter is billing data nobody has looked at yet.
``tollgate_usage_dead_letters_waiting`` (``GET /metrics``) says how many wait."""

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from billing import spend
from billing.ledger import usage_records_write
from billing.models import UsageDeadLetter, UsageLog
from billing.records import UsageRecord, settlement_read
from core.errors import NotFound
from core.redis import REDIS_DOWN, get_redis
from tenants.access import Principal
from tenants.models import Tenant
from tenants.services import audit_record

log = logging.getLogger(__name__)

# --- selectors ---------------------------------------------------------------------------------


def usage_dead_letters(*, ids: Collection[int] | None = None, before: datetime | None = None,
                       tenant_id: int | None = None) -> QuerySet[UsageDeadLetter]:
    """Dead letters, oldest first: the ones named by ``ids`` (NotFound names any missing),
    set aside before ``before``, of one tenant id; all of them without a filter."""
    letters = UsageDeadLetter.objects.order_by("created_at", "id")
    if ids is not None:
        wanted = set(ids)
        missing = sorted(wanted - set(UsageDeadLetter.objects.filter(pk__in=wanted).values_list("pk", flat=True)))
        if missing:
            raise NotFound(f"No dead letter with id {', '.join(map(str, missing))}; "
                           "`manage.py usage_dead_letters --list` shows the ones waiting.")
        letters = letters.filter(pk__in=wanted)
    if before is not None:
        letters = letters.filter(created_at__lt=before)
    if tenant_id is not None:
        letters = letters.filter(tenant_id=tenant_id)
    return letters


def usage_dead_letters_waiting() -> int:
    """How many refused rows wait to be retried or discarded."""
    return UsageDeadLetter.objects.count()


# --- services ----------------------------------------------------------------------------------


@dataclass
class RetryResult:
    written: list[int] = field(default_factory=list)  # dead letter ids now in the ledger (deleted)
    kept: dict[int, str] = field(default_factory=dict)  # dead letter id -> why it is still there


def usage_dead_letters_retry(*, letters: QuerySet[UsageDeadLetter], actor: Principal) -> RetryResult:
    """Write each dead letter's row through the ledger (one transaction each, oldest first); see
    the module docstring. A lost database connection is raised (nothing is changed for the
    letter at hand)."""
    result = RetryResult()
    for letter_id in list(letters.values_list("pk", flat=True)):
        with transaction.atomic():
            letter = UsageDeadLetter.objects.select_for_update(skip_locked=True).filter(pk=letter_id).first()
            if letter is None:  # retried or discarded meanwhile, or another retry holds it
                continue
            reason, written = _retry_one(letter)
            tenant = _tenant_of(letter)
            if written is not None:
                transaction.on_commit(partial(_counters_add, written))
            if reason is None:
                letter.delete()
                result.written.append(letter_id)
            else:
                UsageDeadLetter.objects.filter(pk=letter_id).update(reason=reason)
                result.kept[letter_id] = reason
            audit_record(actor=actor, action="usage_dead_letter.retry", tenant=tenant, target=_target(letter),
                         before={"reason": letter.reason},
                         after={"outcome": "written" if reason is None else "kept", "reason": reason or ""})
    return result


def _retry_one(letter: UsageDeadLetter) -> tuple[str | None, UsageRecord | None]:
    """Write the letter's row: (None once it is in the ledger, else why it stays; the record if
    this retry wrote it, with its settlement when the row kept one)."""
    if not letter.request_id:
        return ("Not retried: the row has no request id, so nothing would stop it counting twice; "
                "discard it. (Set aside because: " + letter.reason + ")"), None
    try:
        row = json.loads(letter.row)
        record = UsageRecord.from_row(row)
        if row.get("_settle") is not None:
            record.settlement = settlement_read(row["_settle"])
    except (ValueError, TypeError, AttributeError) as exc:
        return f"Not retried: the kept row cannot be read ({type(exc).__name__}: {exc}); discard it.", None
    if UsageLog.objects.filter(request_id=record.request_id).exists():
        return None, None  # written before (by an earlier retry or the writer): counted once
    if not Tenant.objects.filter(pk=record.tenant_id).exists():
        return (f"Not retried: tenant {record.tenant_id} no longer exists, so there is nobody to bill; "
                "discard it."), None
    if usage_records_write([record]):
        return None, record
    if record.set_aside:
        return record.set_aside, None
    if UsageLog.objects.filter(request_id=record.request_id).exists():
        return None, None  # written meanwhile by another writer (which settles it)
    return "Not retried: the ledger dropped the row (its tenant is gone); discard it.", None


def _counters_add(record: UsageRecord) -> None:
    """A retried row, committed: its cost added to its budget buckets and its tokens to its
    tokens-per-day counters in Redis — those Redis holds (SETTLE_SCRIPT adds only to those) —,
    as the usage writer settles a row. Its reservation was released when it was set aside."""
    settlement = record.settlement
    redis = get_redis()
    if settlement is None or redis is None:  # kept before settlements were, or no Redis (embedded)
        return
    adds: dict[tuple[str, int | None], int] = {}
    cost = spend.to_nanos(record.cost)
    tokens = record.input_tokens + record.output_tokens
    for key in settlement.bucket_keys if cost else ():
        adds[(key, record.committed_in)] = cost
    for key in settlement.token_keys if tokens else ():
        adds[(key, record.committed_in)] = tokens
    if not adds:
        return
    try:
        redis.register_script(spend.SETTLE_SCRIPT)(*spend.settle_arguments([], adds))
    except REDIS_DOWN as exc:
        log.warning("retried usage row %s is in the ledger and rollups, but Redis is unreachable (%s: %s): live "
                    "budget and tokens-per-day counters miss it until they are rebuilt from the rollups",
                    record.request_id, type(exc).__name__, exc)


def usage_dead_letters_discard(*, letters: QuerySet[UsageDeadLetter], actor: Principal) -> int:
    """Delete the dead letters, each with an audit event holding its row and reason. Returns how
    many were discarded."""
    discarded = 0
    for letter_id in list(letters.values_list("pk", flat=True)):
        with transaction.atomic():
            letter = UsageDeadLetter.objects.select_for_update(skip_locked=True).filter(pk=letter_id).first()
            if letter is None:
                continue
            audit_record(actor=actor, action="usage_dead_letter.discard", tenant=_tenant_of(letter),
                         target=_target(letter), before=_audit_view(letter), after=None)
            letter.delete()
            discarded += 1
    return discarded


def _tenant_of(letter: UsageDeadLetter) -> Tenant | None:
    return Tenant.objects.filter(pk=letter.tenant_id).first() if letter.tenant_id else None


def _target(letter: UsageDeadLetter) -> str:
    return f"usage dead letter {letter.pk} ({letter.request_id or 'no request id'})"[:200]


def _audit_view(letter: UsageDeadLetter) -> dict[str, Any]:
    try:
        row: Any = json.loads(letter.row)
    except ValueError:
        row = letter.row  # kept as text: the audit holds it whatever it is
    return {"request_id": letter.request_id, "tenant_id": letter.tenant_id, "created_at": letter.created_at.isoformat(),
            "reason": letter.reason, "row": row}

