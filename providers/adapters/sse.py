"""Helpers every wire-protocol adapter shares on the data plane: request headers for a
``Deployment``, incremental SSE / NDJSON splitters (bytes may arrive split anywhere), OpenAI
chunk building, usage conversion and the mapping of upstream error answers onto
``UpstreamFailure``.

Everything here is on the gateway's hot path: no per-request regex compilation, JSON through
``orjson``, bytes in and bytes out where possible."""

from __future__ import annotations

import math
import re
import time
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from django.conf import settings

from providers.adapters.types import Deployment, UpstreamFailure, Usage

ANTHROPIC_VERSION = "2023-06-01"
USER_AGENT = "Tollgate/1.0"
MAX_LINE_BYTES = 32 * 1024 * 1024  # one SSE/NDJSON line larger than this is not a sane stream
DETAIL_CHARS = 300  # how much of an upstream's own error message we quote

JSONDecodeError = orjson.JSONDecodeError
loads = orjson.loads
dumps = orjson.dumps


# ----------------------------------------------------------------------------- headers
def upstream_headers(kind: str, api_key: str, extra_headers, *, accept: str = "application/json",
                     json_body: bool = True) -> dict[str, str]:
    """Auth and attribution headers for a provider of type ``kind`` (a ProviderType value),
    its ``extra_headers`` ((name, value) pairs) last so they can override. The one place both
    the data plane (a Deployment) and catalog syncs (a Provider) build them."""
    headers = {"Accept": accept, "User-Agent": USER_AGENT}
    if json_body:
        headers["Content-Type"] = "application/json"
    if kind == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key
    elif api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if kind == "openrouter":
        site = getattr(settings, "OPENROUTER_SITE_URL", "")
        app = getattr(settings, "OPENROUTER_APP_NAME", "")
        if site:
            headers["HTTP-Referer"] = site
        if app:
            headers["X-Title"] = app
    for name, value in extra_headers:
        headers[name] = value
    return headers


def deployment_headers(deployment: Deployment, *, accept: str = "application/json") -> dict[str, str]:
    """The headers of a request to ``deployment`` (a JSON body)."""
    return upstream_headers(deployment.provider_type, deployment.api_key, deployment.extra_headers, accept=accept)


# ----------------------------------------------------------------------------- splitters
class SSEDecoder:
    """Incremental Server-Sent Events parser.

    ``feed`` takes raw bytes split anywhere (even inside a ``\\r\\n``) and returns the complete
    events as ``(event_name, data)`` pairs (``event_name`` is ``b""`` when the event had no
    ``event:`` field; multi-line ``data`` is joined with ``\\n``). Comment lines (``:`` …) and
    ``id:`` / ``retry:`` fields are skipped. LF, CRLF and CR line endings are all accepted."""

    __slots__ = ("_pending", "_pending_size", "_data", "_event")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # bytes of the current, incomplete line
        self._pending_size = 0
        self._data: list[bytes] = []  # data lines of the current event
        self._event = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        if not chunk:
            return []
        has_cr = b"\r" in chunk
        if not has_cr and b"\n" not in chunk:
            self._keep(chunk)
            return []
        if self._pending:
            self._pending.append(chunk)
            buf = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            has_cr = has_cr or b"\r" in buf
        else:
            buf = chunk
        hold = b""
        if has_cr:
            if buf[-1:] == b"\r":  # maybe the first half of a CRLF: decide with the next bytes
                buf, hold = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        rest = lines.pop()
        if rest or hold:
            self._keep(rest + hold)
        return self._lines(lines)

    def finish(self) -> list[tuple[bytes, bytes]]:
        """Flush at end of body: a last line or event without its terminator still counts."""
        lines: list[bytes] = []
        if self._pending:
            buf = b"".join(self._pending).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self._pending.clear()
            self._pending_size = 0
            lines = buf.split(b"\n")
        lines.append(b"")
        return self._lines(lines)

    def _keep(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > MAX_LINE_BYTES:
            raise UpstreamFailure(
                kind="bad_response",
                message=f"The upstream stream sent a line longer than {MAX_LINE_BYTES} bytes.",
                retryable=True,
            )

    def _lines(self, lines: list[bytes]) -> list[tuple[bytes, bytes]]:
        events: list[tuple[bytes, bytes]] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data.clear()
                self._event = b""
                continue
            if line[0] == 58:  # b":" — a comment / keep-alive (": OPENROUTER PROCESSING")
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
            elif line.startswith(b"event:"):
                value = line[6:]
                self._event = (value[1:] if value[:1] == b" " else value).strip()
            # id:, retry: and unknown fields are ignored
        return events


class NDJSONDecoder:
    """Incremental newline-delimited JSON splitter: returns complete, non-blank lines."""

    __slots__ = ("_pending", "_pending_size")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._pending_size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if b"\n" not in chunk:
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size > MAX_LINE_BYTES:
                raise UpstreamFailure(
                    kind="bad_response",
                    message=f"The upstream stream sent a line longer than {MAX_LINE_BYTES} bytes.",
                    retryable=True,
                )
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
            self._pending_size = len(rest)
        return [line for line in lines if line.strip()]

    def finish(self) -> list[bytes]:
        rest = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return [rest] if rest.strip() else []


# ----------------------------------------------------------------------------- chunks
_CHUNK_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'


class ChunkBuilder:
    """Builds OpenAI ``chat.completion.chunk`` SSE events with a pre-serialised head."""

    __slots__ = ("_head", "id", "created", "model")

    def __init__(self, chunk_id: str, created: int, model: str) -> None:
        self.id = chunk_id
        self.created = created
        self.model = model
        self._head = (
            b'data: {"id":' + dumps(chunk_id) + b',"object":"chat.completion.chunk","created":'
            + str(int(created)).encode() + b',"model":' + dumps(model)
            + b',"choices":[{"index":0,"delta":'
        )

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if finish_reason is None:
            return self._head + dumps(delta) + _CHUNK_TAIL
        return (self._head + dumps(delta) + b',"logprobs":null,"finish_reason":'
                + dumps(finish_reason) + b"}]}\n\n")

    def content(self, text: str) -> bytes:
        return self._head + b'{"content":' + dumps(text) + b"}" + _CHUNK_TAIL

    def role(self, content: str = "") -> bytes:
        return self._head + b'{"role":"assistant","content":' + dumps(content) + b"}" + _CHUNK_TAIL

    def finish(self, finish_reason: str) -> bytes:
        return self.delta({}, finish_reason)


def sse_event(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def chat_completion(
    *,
    completion_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: dict[str, Any] | None,
    created: int | None = None,
) -> bytes:
    """An OpenAI ``chat.completion`` body with one choice."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return dumps(body)


# ----------------------------------------------------------------------------- usage
def as_int(value: Any) -> int:
    """A token count from JSON: ints as they are, floats truncated, anything else 0."""
    if type(value) is int:
        return value if value > 0 else 0
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return int(value)
    return 0


def as_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def usage_from_openai(u: Any, *, with_cost: bool = False) -> Usage | None:
    """``Usage`` from an OpenAI-shaped usage object (``None`` if it is not one)."""
    if not isinstance(u, dict):
        return None
    prompt_details = u.get("prompt_tokens_details")
    completion_details = u.get("completion_tokens_details")
    usage = Usage(input_tokens=as_int(u.get("prompt_tokens")), output_tokens=as_int(u.get("completion_tokens")))
    if isinstance(prompt_details, dict):
        usage.cached_input_tokens = as_int(prompt_details.get("cached_tokens"))
        usage.cache_write_tokens = as_int(prompt_details.get("cache_write_tokens"))
    if isinstance(completion_details, dict):
        usage.reasoning_tokens = as_int(completion_details.get("reasoning_tokens"))
    if with_cost:
        usage.provider_cost = as_decimal(u.get("cost"))
    return usage


def usage_to_openai(usage: Usage, *, cache_known: bool = False) -> dict[str, Any]:
    """The OpenAI ``usage`` object for ``usage``. ``prompt_tokens_details`` is included when
    the provider reports cache counts (``cache_known``) or any are non-zero;
    ``completion_tokens_details`` when reasoning tokens were reported."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if cache_known or usage.cached_input_tokens or usage.cache_write_tokens:
        details: dict[str, int] = {"cached_tokens": usage.cached_input_tokens}
        if usage.cache_write_tokens:
            details["cache_write_tokens"] = usage.cache_write_tokens  # OpenRouter's name
        out["prompt_tokens_details"] = details
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def estimate_tokens(chars: int) -> int:
    """Rough token count for ``chars`` characters of text (4 per token, at least 1)."""
    return max(1, -(-chars // 4))


# ----------------------------------------------------------------------------- content
def text_of(content: Any) -> str:
    """The text of an OpenAI message ``content`` (string, or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif isinstance(part.get("refusal"), str):
                    parts.append(part["refusal"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64_data)`` of a ``data:<type>;base64,<data>`` URL, else None."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    media_type = header[: -len(";base64")].split(";")[0] or "application/octet-stream"
    return media_type, data


def image_url_of(part: dict[str, Any]) -> str:
    value = part.get("image_url")
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) else ""


def tool_arguments(raw: Any, *, provider: str) -> dict[str, Any]:
    """An OpenAI tool call's ``arguments`` (a JSON string) as the object other APIs want."""
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            value = loads(raw)
        except JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    raise UpstreamFailure(
        kind="bad_request",
        message=f"A tool call's arguments must be a JSON object to be sent to {provider}; got {str(raw)[:80]!r}.",
    )


# ----------------------------------------------------------------------------- errors
_SECRET = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9._*\-]*[A-Za-z0-9*]|\bBearer\s+\S+", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
KEY_HIDDEN = "[key hidden]"

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
            raise bad_response(deployment, f"answered with an HTML page instead of {what}; is the base URL right?") from None
        raise bad_response(deployment, f"answered with invalid JSON instead of {what}.") from None


def truncated_stream(deployment: Deployment) -> UpstreamFailure:
    return UpstreamFailure(
        kind="connection",
        message=f"{deployment.provider_name}'s stream ended before the answer was complete.",
        retryable=True,
    )
