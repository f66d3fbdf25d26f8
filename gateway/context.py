"""What every /v1 door shares: one request's context as the ledger will see it (``Ctx``, whose
``api`` says the door), request ids, and the ASGI helpers that read a JSON body and send
answers. The doors themselves are gateway/app.py (Chat Completions, embeddings, models) and
one module per other protocol."""

import itertools
import secrets
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from billing import spend
from billing.records import UsageRecord
from config.bodylimit import RequestTooLarge
from gateway.auth import KeyInfo
from gateway.engine import Call
from gateway.errors import GatewayError, bad_request

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
DONE = b"data: [DONE]\n\n"
# Names the request's end user on every door; it wins over the body's `user` / `metadata.user_id`.
END_USER_HEADER = b"x-tollgate-end-user"

_ID_PREFIX = secrets.token_hex(6)  # random per process: ids stay unique across workers
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """``req_`` + 12 random hex digits fixed per process + a 12-digit counter: unique across
    workers and restarts without a system call per request."""
    return f"req_{_ID_PREFIX}{next(_ID_COUNTER):012x}"


@dataclass
class Ctx:
    """One request, as the ledger will see it."""

    request_id: str
    started: float
    api: str = "chat"  # the door: chat, messages, responses or embeddings (billing.models.UsageApi)
    key: KeyInfo | None = None
    model_requested: str = ""
    stream: bool = False
    status: str = "ok"
    error_type: str = ""
    conversation_id: str = ""
    end_user: str = ""
    session: str = ""  # what session affinity keys on (x-tollgate-session, metadata.user_id or user)
    ttft_ms: int | None = None
    estimated_prompt_chars: int = 0
    cache_hit: bool = False
    call: Call | None = None
    prompt_bytes: int = 0
    day: date | None = None  # the tenant's local day (rollups, budget buckets)
    settle: spend.Settlement | None = None  # what settling it takes: reservations, token counters
    record: UsageRecord | None = None  # what the ledger got, once it is recorded
    opened: Any = None  # the stream being relayed (an OpenStream or a door's), once it opened
    headers_sent: bool = False
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def project_id(self) -> int | None:
        """The project of the request's key (tenants.Project): its ledger row's, and the scope
        per-project limits and budgets will admit it in."""
        return self.key.project_id if self.key is not None else None

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


def header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def client_address(scope) -> str:
    """The client's address as the server saw it (uvicorn's --proxy-headers puts the one a
    trusted proxy forwarded here)."""
    client = scope.get("client")
    return client[0] if client else "-"


def model_header(ctx: Ctx) -> list[tuple[bytes, bytes]]:
    """x-tollgate-model (the deployment that answered) and any notes for the client."""
    d = ctx.call.deployment if ctx.call else None
    return [(b"x-tollgate-model", d.public_id.encode())] + ctx.extra_headers if d else list(ctx.extra_headers)


async def read_json(scope, receive) -> tuple[dict[str, Any], int]:
    """The request's JSON object and its size in bytes; 400 / 413 / 499 as GatewayError."""
    raw = await read_body(receive)
    return parse_json(raw), len(raw)


async def read_body(receive) -> bytes:
    """The request body's bytes (413 past the body limit, 499 when the client left)."""
    chunks = []
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise GatewayError(499, "Client closed the request.", code="client_closed")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
    except RequestTooLarge as exc:  # config/bodylimit.py counts every route's body
        raise GatewayError(413, str(exc), code="request_too_large") from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw:
        raise bad_request("Empty body: send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Request body is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object.")
    return body


async def send_json(send, status: int, body: bytes, request_id: str, extra=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", request_id.encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


async def wait_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
