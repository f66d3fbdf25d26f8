"""Upstream failures: an error answer (status, headers, body) or an error inside a 200 answer
or a stream, classified onto ``UpstreamFailure`` for the retry logic, with words a tenant
admin can act on and no secret in them (``scrub``).

Two error classes matter to routing beyond retrying (an alias's ``context_window_fallbacks``
and ``content_policy_fallbacks``): ``context_window`` (the prompt does not fit the model) and
``content_policy`` (the provider refused the content). Every adapter asks :func:`error_class`
(one copy) with the codes and message its error body carries; both are final (not retried,
the same target would answer the same) and keep the upstream's status."""

import math
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

from orjson import JSONDecodeError, loads

from providers.adapters.types import Deployment, UpstreamFailure

DETAIL_CHARS = 300  # how much of an upstream's own error message we quote

_SECRET = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9._*\-]*[A-Za-z0-9*]|\bBearer\s+\S+", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
KEY_HIDDEN = "[key hidden]"

CONTEXT_WINDOW = ("context_window", False, "context window exceeded")
CONTENT_POLICY = ("content_policy", False, "refused by content policy")
# error codes that name an error class, whatever the status (OpenAI, Azure, OpenRouter, vLLM …)
CLASS_CODES: dict[str, tuple[str, bool, str]] = {
    "context_length_exceeded": CONTEXT_WINDOW,  # OpenAI, Azure, OpenAI-compatible servers
    "content_policy_violation": CONTENT_POLICY,  # OpenAI (safety system)
    "content_filter": CONTENT_POLICY,  # Azure's content filter (400, innererror ResponsibleAIPolicyViolation)
    "ResponsibleAIPolicyViolation": CONTENT_POLICY,  # Azure's innererror code
    "invalid_prompt": CONTENT_POLICY,  # OpenAI: "your prompt was flagged as potentially violating our usage policy"
}
# The words of a context-window error when no code says so: vLLM-style servers ("This model's
# maximum context length is 8192 tokens", code null or 400), Anthropic ("prompt is too long:
# 208656 tokens > 200000 maximum"; "input length and `max_tokens` exceed context limit"), Gemini
# ("The input token count (3475108) exceeds the maximum number of tokens allowed (1048576)"),
# Ollama ("the input length exceeds the context length").
_CONTEXT_WORDS = re.compile(
    r"maximum context length|context length exceeded|context_length_exceeded|prompt is too long"
    r"|exceeds? (?:the )?context (?:length|limit|window)|exceed context limit"
    r"|input token count .{0,40}exceeds the maximum",
    re.IGNORECASE,
)
# statuses a context-window error comes with (None: inside a 200 answer or a stream)
_CLIENT_STATUSES = frozenset({None, 400, 413, 422})

# status -> (kind, retryable, words)
STATUS_KINDS: dict[int, tuple[str, bool, str]] = {
    400: ("bad_request", False, "bad request"),
    401: ("auth", False, "authentication failed"),
    402: ("quota", False, "payment required"),
    403: ("auth", False, "permission denied"),
    404: ("not_found", False, "not found"),
    408: ("timeout", True, "request timeout"),
    409: ("server_error", True, "conflict"),
    413: ("bad_request", False, "request too large"),
    422: ("bad_request", False, "unprocessable request"),
    429: ("rate_limit", True, "rate limited"),
    499: ("server_error", True, "request cancelled upstream"),
    500: ("server_error", True, "server error"),
    502: ("server_error", True, "bad gateway"),
    503: ("server_error", True, "service unavailable"),
    504: ("server_error", True, "gateway timeout"),
    529: ("server_error", True, "overloaded"),
}
# error "type"/"code" strings seen inside error bodies and mid-stream error events
ERROR_TYPE_KINDS: dict[str, tuple[str, bool, str]] = {
    "insufficient_quota": ("quota", False, "quota exceeded"),
    "billing_error": ("quota", False, "billing error"),
    "payment_required": ("quota", False, "payment required"),
    "rate_limit_error": ("rate_limit", True, "rate limited"),
    "rate_limit_exceeded": ("rate_limit", True, "rate limited"),
    "tokens": ("rate_limit", True, "rate limited"),
    "requests": ("rate_limit", True, "rate limited"),
    "overloaded_error": ("server_error", True, "overloaded"),
    "provider_overloaded": ("server_error", True, "overloaded"),
    "api_error": ("server_error", True, "server error"),
    "server_error": ("server_error", True, "server error"),
    "server": ("server_error", True, "server error"),
    "timeout_error": ("timeout", True, "timeout"),
    "timeout": ("timeout", True, "timeout"),
    "invalid_request_error": ("bad_request", False, "bad request"),
    "invalid_request": ("bad_request", False, "bad request"),
    "request_too_large": ("bad_request", False, "request too large"),
    "authentication_error": ("auth", False, "authentication failed"),
    "authentication": ("auth", False, "authentication failed"),
    "permission_error": ("auth", False, "permission denied"),
    "not_found_error": ("not_found", False, "not found"),
    "not_found": ("not_found", False, "not found"),
    "model_not_found": ("not_found", False, "model not found"),
}


def error_class(status: int | None, codes: tuple[Any, ...], message: Any) -> tuple[str, bool, str] | None:
    """``CONTEXT_WINDOW`` or ``CONTENT_POLICY`` when one of the error's ``codes`` (its code, type,
    inner code …) names the class, or, for a 400-like status, its ``message`` says the prompt
    does not fit; None otherwise (the caller classifies as before)."""
    for code in codes:
        if isinstance(code, str) and code in CLASS_CODES:
            return CLASS_CODES[code]
    if status in _CLIENT_STATUSES and isinstance(message, str) and _CONTEXT_WORDS.search(message):
        return CONTEXT_WINDOW
    return None


def status_kind(status: int) -> tuple[str, bool, str]:
    known = STATUS_KINDS.get(status)
    if known is not None:
        return known
    if status >= 500:
        return "server_error", True, "server error"
    if status >= 400:
        return "bad_request", False, "client error"
    return "bad_response", True, "unexpected status"


def scrub(text: str, deployment: Deployment | None = None) -> str:
    """``text`` without anything that looks like an API key (and without the deployment's own)."""
    if deployment is not None and deployment.api_key and len(deployment.api_key) >= 6:
        text = text.replace(deployment.api_key, KEY_HIDDEN)
    if "-" in text or "earer" in text:
        text = _SECRET.sub(KEY_HIDDEN, text)
    return text


def clip(text: str, limit: int = DETAIL_CHARS) -> str:
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def body_detail(body: bytes) -> str:
    """Words for a non-JSON (or shapeless) error body."""
    stripped = body.strip()
    if not stripped:
        return "no error details"
    if stripped[:1] == b"<":
        return "an HTML page instead of an API error"
    return stripped[:2000].decode("utf-8", "replace")


def parse_retry_after(headers: dict[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (milliseconds) or ``retry-after`` (seconds or an
    HTTP date), None when absent or unreadable."""
    raw = headers.get("retry-after-ms")
    if raw:
        try:
            value = float(raw) / 1000
        except ValueError:
            value = None
        if value is not None and math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - time.time())
    return value if math.isfinite(value) and value >= 0 else None


def failure(
    deployment: Deployment,
    status: int | None,
    headers: dict[str, str] | None,
    detail: str,
    *,
    classified: tuple[str, bool, str] | None = None,
) -> UpstreamFailure:
    """An ``UpstreamFailure`` named after the provider, quoting (scrubbed, clipped) ``detail``.
    ``classified`` overrides the (kind, retryable, words) that ``status`` implies. A 3xx is a
    redirect, whatever the body says: see :func:`redirect_failure`."""
    if status is not None and 300 <= status < 400:
        return redirect_failure(deployment, status)
    if classified is None:
        classified = status_kind(status) if status is not None else ("server_error", True, "server error")
    kind, retryable, words = classified
    retry_after = parse_retry_after(headers) if headers else None
    if headers and headers.get("x-should-retry", "").lower() == "false":
        retryable = False
    detail = clip(scrub(detail[:2000], deployment)) or "no error details"
    if status is not None:
        message = f"{deployment.provider_name} answered {status} ({words}): {detail}"
    else:  # an error object inside a 200 answer or a stream
        message = f"{deployment.provider_name} reported an error ({words}): {detail}"
    return UpstreamFailure(kind=kind, message=message, status=status, retryable=retryable,
                           retry_after=retry_after)


def redirect_failure(deployment: Deployment, status: int) -> UpstreamFailure:
    """The upstream answered 3xx. The data plane never follows a redirect (it could lead to cloud
    metadata or the private network, with the provider's key), and neither the body nor the
    ``Location`` is quoted. Not retried: the same target would answer the same way."""
    return UpstreamFailure(
        kind="redirect",
        message=f"{deployment.provider_name} answered with a redirect ({status}) to another "
                "address; Tollgate does not follow redirects — fix the provider's base URL.",
        status=status, retryable=False,
    )


def bad_response(deployment: Deployment, what: str) -> UpstreamFailure:
    """A 200 answer we cannot read: a server fault worth falling back from."""
    return UpstreamFailure(kind="bad_response", message=f"{deployment.provider_name} {what}",
                           status=200, retryable=True)


def load_json(deployment: Deployment, body: bytes, what: str) -> Any:
    try:
        return loads(body)
    except JSONDecodeError:
        stripped = body.lstrip()[:1]
        if stripped == b"<":
            raise bad_response(
                deployment, f"answered with an HTML page instead of {what}; is the base URL right?"
            ) from None
        raise bad_response(deployment, f"answered with invalid JSON instead of {what}.") from None


def truncated_stream(deployment: Deployment) -> UpstreamFailure:
    return UpstreamFailure(
        kind="connection",
        message=f"{deployment.provider_name}'s stream ended before the answer was complete.",
        retryable=True,
    )
