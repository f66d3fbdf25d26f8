"""Errors the data plane answers with, in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``, so SDKs raise the right exception."""

import orjson


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


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def not_found_model(message: str) -> GatewayError:
    return GatewayError(404, message, param="model", code="model_not_found")


def unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, type="invalid_request_error", code="invalid_api_key", usage_status="rejected")


def rate_limited(message: str, retry_after: float, *, code: str = "rate_limit_exceeded") -> GatewayError:
    return GatewayError(429, message, type="rate_limit_error", code=code, retry_after=retry_after,
                        usage_status="rejected")
