"""REST API for usage: the ledger's rows (keyset-paged), grouped totals, and a CSV export.
Every member of a tenant may read them (viewers included), admin keys too, support staff with
?tenant=; chat keys are refused by the base view. A member with roles on some projects only reads
those projects' rows (``visible_projects``). Views parse, authorize, call a selector and
render."""

import base64
import binascii
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from billing.export import csv_chunks
from billing.models import UsageApi, UsageLog, UsageStatus
from billing.usage_selectors import (
    GROUPINGS,
    UsageFilters,
    project_slugs,
    usage_export_rows,
    usage_filters_build,
    usage_rows,
    usage_summary,
)
from core.drf import StrictSerializer, validated
from tenants.access import TenantAccess
from tenants.drf import TENANT_PARAM, TenantAPIView
from tenants.models import Tenant

PAGE_DEFAULT, PAGE_MAX = 100, 500


# --- input ---------------------------------------------------------------------------------


class DateOrDateTimeField(serializers.CharField):
    """``2025-01-31`` (a day in the tenant's time zone) or an ISO 8601 date-time
    (``2025-01-31T12:00:00Z``; without an offset, the tenant's time zone)."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        if len(text) > 10 and text[-6] == " ":  # an unencoded "+02:00" arrives as " 02:00"
            text = f"{text[:-6]}+{text[-5:]}"
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise serializers.ValidationError(
                f"'{text}' is neither a date (YYYY-MM-DD, a day in the tenant's time zone) nor an "
                "ISO 8601 date-time (2025-01-31T12:00:00Z)."
            ) from None
        if not 2000 <= value.year <= 2999:
            raise serializers.ValidationError(f"'{text}' is out of range: use a date in the years 2000 to 2999.")
        return value


class ValueListField(serializers.CharField):
    """Comma-separated values (status, api); the selector checks them."""

    def to_internal_value(self, data):
        values = [s.strip() for s in super().to_internal_value(data).split(",") if s.strip()]
        return tuple(dict.fromkeys(values))


class CursorField(serializers.CharField):
    """Opaque to clients: base64 of the (created_at, id) of the last row of a page."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            at, row_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().split("|")
            at = datetime.fromisoformat(at)
            if at.tzinfo is None:
                raise ValueError
            return at, int(row_id)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise serializers.ValidationError("Invalid cursor; pass a previous page's next_cursor unchanged.") from None


def cursor_for(row: UsageLog) -> str:
    raw = f"{row.created_at.isoformat()}|{row.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class UsageFiltersIn(StrictSerializer):
    since = DateOrDateTimeField(
        required=False,
        help_text="First day (YYYY-MM-DD, tenant's time zone) or instant counted. Default: 29 days "
        "before until (30 days in all).",
    )
    until = DateOrDateTimeField(
        required=False,
        help_text="Last day counted (inclusive), or an ISO date-time (exclusive). Default: today.",
    )
    model = serializers.CharField(
        required=False, allow_blank=True, max_length=400,
        help_text="What the client asked for (an alias or id) or the model that answered, as provider:model_id.",
    )
    provider = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                     help_text="Provider name, e.g. openai.")
    key = serializers.IntegerField(
        required=False, min_value=1, help_text="API key id (one of the tenant's keys).",
        error_messages={"invalid": "Expected an API key id (an integer); GET /api/keys lists them."},
    )
    status = ValueListField(
        required=False, allow_blank=True,
        help_text=f"One or more of {', '.join(UsageStatus.values)}, comma-separated.",
    )
    conversation = serializers.CharField(required=False, allow_blank=True, max_length=128,
                                         help_text="Conversation id.")
    api = ValueListField(
        required=False, allow_blank=True,
        help_text=f"The /v1 door: one or more of {', '.join(UsageApi.values)}, comma-separated.",
    )
    project = serializers.CharField(required=False, allow_blank=True, max_length=50,
                                    help_text="Project id or slug (GET /api/projects lists them).")


class UsageListIn(UsageFiltersIn):
    cursor = CursorField(required=False, help_text="next_cursor of the previous page.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=PAGE_MAX,
                                     help_text=f"Rows per page (default {PAGE_DEFAULT}, at most {PAGE_MAX}).")


class UsageSummaryIn(UsageFiltersIn):
    group_by = serializers.ChoiceField(
        choices=GROUPINGS, default="day",
        help_text="day, week (starting Monday) and month are in the tenant's time zone.",
        error_messages={"invalid_choice": f"'{{input}}' is not a grouping; use one of {', '.join(GROUPINGS)}."},
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=PAGE_MAX,
                                     help_text=f"Most conversation groups returned, by cost (default "
                                     f"{PAGE_DEFAULT}, at most {PAGE_MAX}).")
    percentiles = serializers.BooleanField(
        default=True,
        help_text="false leaves latency p50 / p95 out (null): they read every request in range, while "
        "totals by day, week, month, model, provider or key come from daily rollups.",
    )


def query_data(request) -> dict:
    """The query string as a dict, without ``tenant`` (the base view resolves it). A parameter
    given twice is an error, except ``status`` and ``api``, whose values add up."""
    data, repeated = {}, {}
    for name, values in request.query_params.lists():
        if name == "tenant":
            continue
        if len(values) > 1 and name not in ("status", "api"):
            repeated[name] = ["Give this parameter once."]
        data[name] = ",".join(values)
    if repeated:
        raise serializers.ValidationError(repeated)
    return data


def filters_from(access: TenantAccess, data: dict) -> UsageFilters:
    return usage_filters_build(
        tenant=access.tenant, since=data.get("since"), until=data.get("until"), model=data.get("model", ""),
        provider=data.get("provider", ""), key_id=data.get("key"), statuses=data.get("status", ()),
        conversation=data.get("conversation", ""), apis=data.get("api", ()), project=data.get("project"),
        visible_projects=access.project_ids,
    )


# --- output --------------------------------------------------------------------------------


class UsageRangeOut(serializers.Serializer):
    since = serializers.DateTimeField(source="start", help_text="First instant counted.")
    until = serializers.DateTimeField(source="end", help_text="First instant not counted.")
    timezone = serializers.CharField(help_text="The tenant's; dates were read in it.")


class UsageKeyOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(source="masked", help_text="The visible start of the key; never the key.")


class UsageTokensOut(serializers.Serializer):
    input = serializers.IntegerField(source="input_tokens")
    cached_input = serializers.IntegerField(source="cached_input_tokens")
    cache_write = serializers.IntegerField(source="cache_write_tokens")
    output = serializers.IntegerField(source="output_tokens")
    reasoning = serializers.IntegerField(source="reasoning_tokens")


class UsageProjectOut(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField(allow_null=True, help_text="null: the project was deleted since.")


class UsageRowOut(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.name", allow_null=True, default=None)
    project = serializers.SerializerMethodField(help_text="The key's project when the request ran.")
    model = serializers.SerializerMethodField(help_text="The model that answered, as provider:model_id.")
    key = UsageKeyOut(source="api_key", allow_null=True)
    tokens = UsageTokensOut(source="*")
    cost = serializers.DecimalField(max_digits=20, decimal_places=12, allow_null=True,
                                    help_text="USD, as a string; null when the price is unknown.")
    cost_known = serializers.SerializerMethodField()
    provider_cost = serializers.DecimalField(max_digits=20, decimal_places=12, allow_null=True,
                                             help_text="What the provider reported, if it did (OpenRouter).")

    class Meta:
        model = UsageLog
        fields = [
            "request_id", "created_at", "model_requested", "provider", "model", "key", "project", "status",
            "error_type",
            "attempts", "tokens", "tokens_estimated", "cost", "cost_known", "provider_cost", "latency_ms",
            "ttft_ms", "stream", "conversation_id", "end_user", "api",
        ]

    def get_model(self, row) -> str | None:
        if row.provider_model is None:
            return None
        return f"{row.provider_model.provider.name}:{row.provider_model.model_id}"

    def get_cost_known(self, row) -> bool:
        return row.cost is not None

    @extend_schema_field(UsageProjectOut(allow_null=True))
    def get_project(self, row) -> dict | None:
        if row.project_id is None:
            return None
        return {"id": row.project_id, "slug": self.context.get("projects", {}).get(row.project_id)}


class UsagePageOut(serializers.Serializer):
    range = UsageRangeOut()
    next = serializers.URLField(allow_null=True, help_text="The next page (older rows), or null at the end.")
    next_cursor = serializers.CharField(allow_null=True)
    results = UsageRowOut(many=True)


class UsageLatencyOut(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    avg = serializers.FloatField(source="latency_ms_avg", allow_null=True)

    def to_representation(self, instance):
        return {k: None if v is None else round(v, 2) for k, v in super().to_representation(instance).items()}


class UsageMetricsOut(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Status error, partial or rejected.")
    error_rate = serializers.FloatField(help_text="errors / requests.")
    cache_hits = serializers.IntegerField()
    tokens = UsageTokensOut(source="*")
    cost = serializers.DecimalField(max_digits=None, decimal_places=12,
                                    help_text="USD, as a string: the sum of the known costs.")
    unpriced_requests = serializers.IntegerField(source="unpriced",
                                                 help_text="Requests that used tokens but whose price is "
                                                 "unknown (their cost is not in cost).")
    latency_ms = UsageLatencyOut(source="*")


class UsageGroupOut(UsageMetricsOut):
    key = serializers.SerializerMethodField(
        help_text="First day (YYYY-MM-DD) of a day, week or month; the model, provider, key or project id; "
        "the conversation id; the api (chat, messages, responses, embeddings). null: requests with none."
    )
    label = serializers.CharField(help_text="2025-01-31, 2025-W05, 2025-01, provider:model_id, provider "
                                  "name, key name, conversation id, api or project slug.")
    display_name = serializers.CharField(allow_null=True, help_text="Model, provider and project groups.")
    prefix = serializers.CharField(allow_null=True, help_text="Key groups: the visible start of the key.")

    @extend_schema_field({"oneOf": [{"type": "string", "nullable": True}, {"type": "integer"}]})
    def get_key(self, group):
        return group.key.isoformat() if isinstance(group.key, date) else group.key

    def to_representation(self, instance):
        data = super().to_representation(instance)
        return {"key": data.pop("key"), "label": data.pop("label"), "display_name": data.pop("display_name"),
                "prefix": data.pop("prefix"), **data}


class UsageSummaryOut(serializers.Serializer):
    group_by = serializers.CharField()
    source = serializers.CharField(help_text="rollups (daily totals) or ledger (request rows): where the "
                                   "totals were read. Latency percentiles always come from the ledger.")
    range = UsageRangeOut(source="filters")
    totals = UsageMetricsOut()
    groups = UsageGroupOut(many=True)
    more = serializers.BooleanField(help_text="True when conversation groups beyond limit were left out.")


# --- views ---------------------------------------------------------------------------------


class UsageListAPI(TenantAPIView):
    @extend_schema(
        parameters=[TENANT_PARAM, UsageListIn], responses=UsagePageOut,
        summary="Ledger rows, newest first, one page at a time (follow next)",
    )
    def get(self, request):
        access = self.access(request, projects=True)
        data = validated(UsageListIn, query_data(request))
        filters = filters_from(access, data)
        limit = data.get("limit", PAGE_DEFAULT)
        rows = usage_rows(tenant=access.tenant, filters=filters, before=data.get("cursor"))
        page = list(rows.select_related("provider", "provider_model__provider", "api_key")[: limit + 1])
        next_cursor = next_url = None
        if len(page) > limit:
            next_cursor = cursor_for(page[limit - 1])
            next_url = replace_query_param(request.build_absolute_uri(), "cursor", next_cursor)
        return Response(UsagePageOut({
            "range": filters,
            "next": next_url,
            "next_cursor": next_cursor,
            "results": page[:limit],
        }, context={"projects": project_slugs(tenant=access.tenant)}).data)


class UsageSummaryAPI(TenantAPIView):
    @extend_schema(
        parameters=[TENANT_PARAM, UsageSummaryIn], responses=UsageSummaryOut,
        summary="Totals grouped by day, week, month, model, provider, key, conversation, api or project",
        description="Requests, errors and error rate, cache hits, tokens, cost (known costs; "
        "unpriced_requests counts the others) and latency p50 / p95 / average, for the whole range and "
        "per group.",
    )
    def get(self, request):
        access = self.access(request, projects=True)
        data = validated(UsageSummaryIn, query_data(request))
        filters = filters_from(access, data)
        summary = usage_summary(tenant=access.tenant, group_by=data["group_by"], filters=filters,
                                limit=data.get("limit", PAGE_DEFAULT), percentiles=data["percentiles"])
        return Response(UsageSummaryOut(summary).data)


class _AlwaysJson(DefaultContentNegotiation):
    """The export answers CSV whatever the Accept header says; errors are JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class UsageExportAPI(TenantAPIView):
    content_negotiation_class = _AlwaysJson

    @extend_schema(
        parameters=[TENANT_PARAM, UsageFiltersIn], responses={(200, "text/csv"): OpenApiTypes.STR},
        summary="The ledger rows as CSV (streamed; same filters as GET /api/usage)",
        description="One header row, then one row per request, newest first. Money is a plain decimal "
        "string in USD; an unknown cost is empty. Times are ISO 8601 in UTC.",
    )
    def get(self, request):
        access = self.access(request, projects=True)
        data = validated(UsageFiltersIn, query_data(request))
        filters = filters_from(access, data)
        return usage_csv_response(request._request, tenant=access.tenant, filters=filters)


def usage_csv_response(request: HttpRequest, *, tenant: Tenant, filters: UsageFilters) -> StreamingHttpResponse:
    """The tenant's ledger rows as a streamed CSV download, for the REST API and the console."""
    chunks = csv_chunks(usage_export_rows(tenant=tenant, filters=filters))
    if isinstance(request, ASGIRequest):
        chunks = chunks_for_asgi(chunks)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export_filename(tenant.slug, filters)}"'
    response["Cache-Control"] = "no-store"
    return response


def export_filename(slug: str, filters: UsageFilters) -> str:
    zone = ZoneInfo(filters.timezone)
    first = filters.start.astimezone(zone).date()
    last = (filters.end - timedelta(microseconds=1)).astimezone(zone).date()
    return f"usage-{slug}-{first.isoformat()}-to-{last.isoformat()}.csv"


async def chunks_for_asgi(chunks: Iterator[str]) -> AsyncIterator[str]:
    """Under an ASGI server (uvicorn in production) Django reads a synchronous iterator whole
    before sending the first byte; this hands it chunk by chunk instead. Each chunk is still
    made in the request's sync thread, where its database connection and cursor live."""
    pull = sync_to_async(next, thread_sensitive=True)
    try:
        while (chunk := await pull(chunks, None)) is not None:
            yield chunk
    finally:  # a download cut short: close the server-side cursor now, not at garbage collection
        await sync_to_async(chunks.close, thread_sensitive=True)()

