"""Domain errors raised by services and selectors. The edges (DRF, the gateway, management
commands) turn them into their own shapes; the message is written for the person who has to
fix the request."""


class TollgateError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(TollgateError):
    status = 400
    type = "invalid_request_error"


class NotFound(TollgateError):
    status = 404
    type = "not_found"


class Forbidden(TollgateError):
    status = 403
    type = "permission_denied"


class Conflict(TollgateError):
    status = 409
    type = "conflict"


class Unavailable(TollgateError):
    """A backing service (Redis, the task queue) cannot be reached; retrying later may work."""

    status = 503
    type = "service_unavailable"
