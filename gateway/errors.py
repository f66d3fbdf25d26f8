"""Errors the data plane answers with, in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``, or, at the Anthropic Messages door,
Anthropic's ``{"type": "error", "error": {"type", "message"}}``, so SDKs raise the right
exception."""

import orjson

# HTTP status -> Anthropic error type (its documented table; other statuses by class).
ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        usage_status: str = "error",
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.usage_status = usage_status  # how the ledger records it (error or rejected)

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )

    @property
    def anthropic_type(self) -> str:
        """The Anthropic error type: by status, but an exhausted budget is a billing error."""
        if self.code == "budget_exceeded":
            return "billing_error"
        return ANTHROPIC_TYPES.get(self.status) or ("api_error" if self.status >= 500 else "invalid_request_error")

    def anthropic_body(self) -> bytes:
        return orjson.dumps({"type": "error", "error": {"type": self.anthropic_type, "message": self.message}})


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def not_found_model(message: str) -> GatewayError:
    return GatewayError(404, message, param="model", code="model_not_found")


def unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, type="invalid_request_error", code="invalid_api_key", usage_status="rejected")


def rate_limited(message: str, retry_after: float, *, code: str = "rate_limit_exceeded") -> GatewayError:
    return GatewayError(429, message, type="rate_limit_error", code=code, retry_after=retry_after,
                        usage_status="rejected")
