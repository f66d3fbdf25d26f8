"""The ledger's one usage record (``UsageRecord``) and its one builder (``usage_record_build``):
what a finished request did and cost, as every caller hands it to the writer (billing.writer),
which writes it (billing.ledger) and then settles its budget reservations.

The record carries the ledger row's columns, the tenant's local day (the rollups' and the
budget buckets' day) and the settlement (billing.spend.Settlement). ``as_row`` / ``from_row``
are its JSON layout, shared by the journal and the spool on disk and the dead-letter table: the
ledger's columns plus ``_day``; the journal and the dead-letter table add the settlement under
``_settle`` (``settlement_row`` / ``settlement_read``)."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from billing.pricing import deployment_cost, usage_bounded
from billing.spend import Settlement
from providers.adapters.types import Deployment, Usage

# The ledger's columns (billing.models.UsageLog), in the order the ledger inserts them.
LEDGER_FIELDS = (
    "request_id", "tenant_id", "api_key_id", "project_id", "model_requested", "provider_id", "provider_model_id",
    "attempts",
    "status", "error_type", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "tokens_estimated", "cost", "provider_cost", "latency_ms", "ttft_ms", "stream",
    "conversation_id", "end_user", "api", "created_at",
)
TEXT_FIELDS = ("model_requested", "error_type", "conversation_id", "end_user")


@dataclass(slots=True)
class UsageRecord:
    """One request, as the ledger keeps it (one UsageLog row), and what settling it takes."""

    request_id: str
    tenant_id: int
    api_key_id: int | None = None
    project_id: int | None = None  # the key's project (tenants.Project)
    model_requested: str = ""  # the alias or model id as the client sent it
    provider_id: int | None = None
    provider_model_id: int | None = None
    attempts: int = 0
    status: str = "ok"  # a UsageStatus value
    error_type: str = ""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    tokens_estimated: bool = False
    cost: Decimal | None = None  # None: the price is unknown (never recorded as $0)
    provider_cost: Decimal | None = None
    latency_ms: int = 0
    ttft_ms: int | None = None
    stream: bool = False
    conversation_id: str = ""
    end_user: str = ""
    api: str = "chat"  # the /v1 door it came through (a UsageApi value)
    created_at: datetime | None = None  # None: when the writer takes it
    # Beyond the row:
    day: date | None = None  # the tenant's local day (None: the UTC day of created_at)
    settlement: Settlement | None = None  # the budget reservations it holds, settled once it is written
    set_aside: str = ""  # why the ledger set it aside in UsageDeadLetter instead of writing it
    committed_in: int | None = None  # the PostgreSQL transaction that wrote its row here (billing.spend.SETTLE_SCRIPT)

    def as_row(self) -> dict[str, Any]:
        """The ledger's columns and ``_day``: what the journal, the spool and the dead-letter table keep."""
        row = {name: getattr(self, name) for name in LEDGER_FIELDS}
        if self.day is not None:
            row["_day"] = self.day
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "UsageRecord":
        """A record from ``as_row``'s layout, as Python values or as decoded JSON (money as
        strings, times in ISO 8601). Other keys starting with ``_`` are ignored: earlier writers
        kept private markers there."""
        values = {name: value for name, value in row.items() if not name.startswith("_")}
        for money in ("cost", "provider_cost"):
            value = values.get(money)
            if value is not None and not isinstance(value, Decimal):
                values[money] = Decimal(str(value))
        created = values.get("created_at")
        if isinstance(created, str):
            values["created_at"] = datetime.fromisoformat(created) if created else None
        day = row.get("_day")
        if isinstance(day, str):
            day = date.fromisoformat(day) if day else None
        return cls(**values, day=day)


def settlement_row(settlement: Settlement) -> tuple:
    """A settlement as kept beside a row (``_settle``): reservation keys, budget buckets,
    tokens-per-day counters, tokens-per-minute counters and what each reserved."""
    return (settlement.reserved_keys, settlement.bucket_keys, settlement.token_keys, settlement.tpm)


def settlement_read(value) -> Settlement:
    """``settlement_row``'s value back (rows written before issue #16 have no token keys nor
    tokens-per-minute counters). TypeError or ValueError if it is not one."""
    reserved, buckets, *tokens = value
    days, minutes = (list(tokens) + [(), ()])[:2]
    return Settlement(reserved_keys=tuple(reserved), bucket_keys=tuple(buckets), token_keys=tuple(days),
                      tpm=tuple((k, int(n)) for k, n in minutes))


def usage_record_build(
    *, request_id: str, tenant_id: int, api_key_id: int | None, project_id: int | None = None, day: date | None,
    model_requested: str,
    deployment: Deployment | None, usage: Usage | None, cache_hit: bool, attempts: int, status: str,
    error_type: str, latency_ms: float, ttft_ms: int | None, stream: bool, conversation_id: str, end_user: str,
    api: str, settlement: Settlement | None,
) -> UsageRecord:
    """The record of a finished request (the /v1 data plane's and /api/test/llm's alike).

    ``usage`` is bounded here, in place, to what a row holds; a request without usage that
    claims success is an error; a cache hit costs $0 and counts no tokens; an unknown price
    leaves the cost None. ``deployment`` is the one that answered (None if none did); ``api`` is
    the door the request came through (chat, messages, responses or embeddings)."""
    usage = None if cache_hit or usage is None else usage_bounded(usage)
    cost = provider_cost = None
    if usage is not None and deployment is not None:
        cost = deployment_cost(deployment, usage)
        provider_cost = usage.provider_cost
    if cache_hit:
        cost = Decimal(0)
    if status == "ok" and usage is None and not cache_hit:
        status = "error"
    clamped = "usage_clamped" if usage and usage.clamped else ""  # out-of-range usage, cut to fit
    return UsageRecord(
        request_id=request_id,
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        project_id=project_id,
        model_requested=model_requested[:255],
        provider_id=deployment.provider_id if deployment else None,
        provider_model_id=deployment.provider_model_id if deployment else None,
        attempts=attempts,
        status=status,
        error_type=(error_type or clamped)[:40],
        input_tokens=usage.input_tokens if usage else 0,
        cached_input_tokens=usage.cached_input_tokens if usage else 0,
        cache_write_tokens=usage.cache_write_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
        tokens_estimated=bool(usage and usage.estimated),
        cost=cost,
        provider_cost=provider_cost,
        latency_ms=int(latency_ms),
        ttft_ms=ttft_ms,
        stream=stream,
        conversation_id=conversation_id,
        end_user=end_user,
        api=api,
        day=day or datetime.now(UTC).date(),
        settlement=settlement,
    )
