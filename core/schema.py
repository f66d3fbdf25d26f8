"""The OpenAPI description's shared parts (drf-spectacular): the schema class every /api view uses
(REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS), which declares the one error shape
(``core.drf.error_response``) for every operation's 4xx answers."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailOut(serializers.Serializer):
    type = serializers.CharField(
        help_text="invalid_request_error, not_found, permission_denied, conflict, …"
    )
    message = serializers.CharField(help_text="What went wrong and what to do about it.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Input errors by field path (e.g. name, targets[0].model, extra_headers.X-Team).",
    )


class ErrorOut(serializers.Serializer):
    error = ErrorDetailOut()


ERROR_RESPONSE = OpenApiResponse(
    ErrorOut,
    description="The request was refused: bad input (400), authentication (401), permission (403), "
    "not found (404), conflict (409), body too large (413), media type (415), rate limit (429).",
)


UPSTREAM_ERROR = OpenApiResponse(
    ErrorOut,
    description="The provider failed or could not be reached (502), timed out (504), or the "
    "request could not be admitted right now (503); the message says what happened.",
)


class AutoSchema(SpectacularAutoSchema):
    """Adds the error shape as the ``4XX`` response of every operation."""

    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        if direction == "response":
            bodies.setdefault(
                "4XX", self._get_response_for_code(ERROR_RESPONSE, "4XX", direction=direction)
            )
        return bodies
