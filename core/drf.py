"""The DRF edge shared by every app's ``api.py``: one page of a list, strict serializer fields,
and one error shape (the exception handler, REST_FRAMEWORK's EXCEPTION_HANDLER). The JSON
parser is ``core.parsers``, which DRF's settings import before its views exist; the base view
that resolves the caller's tenant is ``tenants.drf.TenantAPIView``.

Every management API error answers ``{"error": {"type", "message", "fields"?}}`` with a
message that names what to fix."""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from core.errors import TollgateError

# --- lists ---------------------------------------------------------------------------------


class Page(LimitOffsetPagination):
    """One page of a list: ``?limit=`` (100 unless given, at most 500) and ``?offset=``."""

    default_limit = 100
    max_limit = 500


def paged(view, request, queryset, serializer_class, **context):
    """One page of ``queryset`` (by ``view.pagination_class``, a :class:`Page`) in the
    ``{count, next, previous, results}`` envelope."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context=context).data
    return paginator.get_paginated_response(data)


# --- strict input --------------------------------------------------------------------------


class StrictFieldsMixin:
    """Reject keys the serializer does not know, naming them and what is allowed."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = [k for k in data if k not in self.fields]
            if unknown:
                allowed = ", ".join(sorted(self.fields))
                raise serializers.ValidationError(
                    {k: [f"Unknown field. Allowed fields here: {allowed}."] for k in unknown}
                )
        return super().to_internal_value(data)


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    pass


class StrictFloatField(serializers.FloatField):
    """A JSON number only: "0.5" (a string) and true (a boolean) are type errors."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise serializers.ValidationError(f"Expected a number, got {_json_type(data)}.")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            if isinstance(data, float) and data.is_integer():
                data = int(data)
            else:
                raise serializers.ValidationError(f"Expected an integer, got {_json_type(data)}.")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            raise serializers.ValidationError(f"Expected true or false, got {_json_type(data)}.")
        return data


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Expected a string, got {_json_type(data)}.")
        return super().to_internal_value(data)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def validated(serializer_class, data, **kwargs) -> dict:
    """Validate ``data`` (which must be a JSON object) and return the clean dict."""
    if not isinstance(data, dict):
        raise exceptions.ValidationError(
            {"non_field_errors": [f"Expected a JSON object, got {_json_type(data)}."]}
        )
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- errors --------------------------------------------------------------------------------


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # a list serializer reports items by index
                path = f"{prefix}[{key}]"
            else:
                name = key if key != "non_field_errors" else ""
                path = f"{prefix}.{name}" if prefix and name else (name or prefix)
            for k, v in _flatten(value, path).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        for i, item in enumerate(detail):
            path = f"{prefix}[{i}]" if isinstance(item, (dict, list)) else prefix
            for k, v in _flatten(item, path).items():
                out.setdefault(k, []).extend(v)
    else:
        out.setdefault(prefix, []).append(str(detail))
    return out


def error_response(status_code: int, type_: str, message: str, fields=None, headers=None):
    body: dict[str, Any] = {"error": {"type": type_, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return Response(body, status=status_code, headers=headers)


@csrf_exempt
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    """Any /api path no route matches (an id that is not a number, a typo): the JSON error
    shape, not Django's HTML page."""
    message = f"No API route matches {request.path!r}; the routes are listed at /api/docs/."
    return JsonResponse({"error": {"type": "not_found", "message": message}}, status=404)


def exception_handler(exc, context):
    if isinstance(exc, TollgateError):
        fields = {exc.field: [exc.message]} if exc.field else None
        return error_response(exc.status, exc.type, exc.message, fields)
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, "request_too_large", "Request body is too large.")
    if isinstance(exc, Http404):
        return error_response(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "; ".join(
            f"{name}: {' '.join(msgs)}" if name else " ".join(msgs) for name, msgs in fields.items()
        )
        return error_response(400, "invalid_request_error", message, fields)
    if isinstance(exc, exceptions.ParseError):
        return error_response(
            400, "invalid_json", f"Request body is not valid JSON ({exc.detail}). Send a JSON object."
        )
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return error_response(
            415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json."
        )
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        message = str(exc.detail)
        if isinstance(exc, exceptions.NotAuthenticated):
            message = (
                "Authentication required: send 'Authorization: Bearer <admin key>' or log in."
            )
        return error_response(
            401, "authentication_error", message, headers={"WWW-Authenticate": 'Bearer realm="tollgate"'}
        )
    if isinstance(exc, exceptions.PermissionDenied):
        return error_response(403, "permission_denied", str(exc.detail))
    if isinstance(exc, exceptions.NotFound):
        return error_response(404, "not_found", str(exc.detail))
    if isinstance(exc, exceptions.MethodNotAllowed):
        return error_response(405, "method_not_allowed", str(exc.detail))
    if isinstance(exc, exceptions.Throttled):
        return error_response(
            429, "rate_limit_exceeded", str(exc.detail), headers={"Retry-After": str(exc.wait or 1)}
        )
    if isinstance(exc, exceptions.APIException):
        return error_response(exc.status_code, "error", str(exc.detail))
    return None  # a bug: let Django answer 500 and log it

