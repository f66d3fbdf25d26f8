"""Shared machinery for the loopback fake LLM provider servers.

`FakeServer` runs a real HTTP/1.1 server (``http.server.ThreadingHTTPServer``) on 127.0.0.1 with an
OS-assigned port in a daemon thread. It records every request, routes it to a ``route_<name>``
method of the protocol subclass, and applies switchable faults on the way out. Protocol subclasses
only describe their routes, auth check, error bodies and response/stream shapes (see
``/work/shared/reference/wire-formats.md``).

Fault kinds (``FakeServer.set_fault``):

``slow``         ``delay`` seconds before responding; ``chunk_delay`` seconds between stream frames;
                 ``end_delay`` seconds after a stream's last frame before its end (an upstream that
                 closes its side late).
``status``       answer ``status`` with the protocol's documented error body (``message`` and
                 ``variant`` override the default text / error type; ``retry_after`` and ``headers``
                 add response headers; by default 429 carries ``retry-after: 1``).
``reset``        abort the TCP connection with RST (SO_LINGER 0): before any response byte when
                 ``after_chunks`` is None, else after that many stream frames (for a non-stream
                 answer: after the headers and half the body).
``malformed``    200 with an invalid JSON body; in a stream, an invalid frame is inserted after
                 ``after_chunks`` frames (default 1) and the stream then continues normally.
``huge``         200 answer of about ``size`` bytes (default 20 MiB), written out in 64 KiB pieces:
                 on chat routes a protocol-valid reply whose text is ``size`` bytes long (streamed
                 as 64 KiB deltas when the request streams), elsewhere ``{"padding": "xxx…"}``.
``not_json``     200 ``text/html`` page, as a web server that is not an LLM API would answer.
``no_usage``     replies and streams carry no usage fields / no usage chunk.
``stream_error`` the protocol's documented mid-stream error frame after ``after_chunks`` frames
                 (default 1), then the stream ends.
``redirect``     answer ``status`` (default 307) with ``location: <location>`` and a small JSON
                 error body quoting ``message``, as a server that moved (or an attacker's server
                 pointing at cloud metadata) would.
``context_window`` the protocol's documented "prompt too long for the model" error
                 (``context_window_reply``; ``variant`` picks another documented shape).
``content_policy`` the protocol's documented content-policy refusal (``content_policy_reply``;
                 ``variant`` picks another documented shape).

Every request consumes one use of each matching fault (at most one per kind); ``times=N`` removes a
fault after N uses; ``path`` limits it to one request path (absolute, or relative to ``base_path``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

CREATED = 1_700_000_000  # fixed unix timestamp used for every "created" field (determinism)
MiB = 1024 * 1024
PIECE = 64 * 1024  # write size for big bodies and huge-stream deltas
FAULT_KINDS = frozenset(
    {"slow", "status", "reset", "malformed", "huge", "not_json", "no_usage", "stream_error",
     "redirect", "context_window", "content_policy"}
)
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
    b"<body><h1>Welcome to nginx!</h1><p>This is not an API.</p></body></html>\n"
)
_DEFAULT: Any = object()  # "retry_after not given" marker


@dataclass
class RecordedRequest:
    """One request as received by a fake (headers lower-cased, body parsed when it is JSON)."""

    method: str
    path: str  # without query string
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON; raw bytes if not JSON; None if empty
    raw: bytes

    @property
    def json(self) -> dict[str, Any]:
        """The body if it is a JSON object, else an empty dict."""
        return self.body if isinstance(self.body, dict) else {}


@dataclass
class Fault:
    """A switchable misbehaviour; see the module docstring for the meaning of each option."""

    kind: str
    path: str | None = None
    times: int | None = None  # remaining uses; None = until cleared
    delay: float = 0.0
    chunk_delay: float = 0.0
    end_delay: float = 0.0
    status: int = 500  # for ``redirect``: 307 unless a 3xx is given
    message: str | None = None
    location: str = ""
    variant: str | None = None
    retry_after: Any = _DEFAULT
    headers: dict[str, str] = field(default_factory=dict)
    after_chunks: int | None = None
    size: int = 20 * MiB
    hits: int = 0  # how many requests this fault has affected


@dataclass
class Usage:
    """Protocol-neutral token counts; each fake maps them onto its own wire names.

    ``cached_tokens`` is OpenAI ``prompt_tokens_details.cached_tokens`` / Anthropic
    ``cache_read_input_tokens``; ``cache_creation_tokens`` is Anthropic
    ``cache_creation_input_tokens`` / OpenRouter ``cache_write_tokens``, of which
    ``cache_creation_1h_tokens`` are Anthropic's 1-hour tier; ``cost`` is OpenRouter's
    ``usage.cost`` (computed from the model's pricing when None).
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


USAGE_FIELDS = frozenset(f.name for f in fields(Usage))
USAGE_ALIASES = {  # native names accepted in the ``usage=`` override
    "input_tokens": "prompt_tokens",
    "prompt_eval_count": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "eval_count": "completion_tokens",
    "cache_read_input_tokens": "cached_tokens",
    "cache_creation_input_tokens": "cache_creation_tokens",
    "cache_write_tokens": "cache_creation_tokens",
    "ephemeral_1h_input_tokens": "cache_creation_1h_tokens",
}


@dataclass
class Reply:
    """What a route produces: a JSON/bytes body, or (``frames`` set) a chunked stream."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    frames: Iterable[bytes] | None = None


@dataclass
class Call:
    """A request being served plus the faults that apply to it."""

    req: RecordedRequest
    route: str
    faults: dict[str, Fault]

    @property
    def body(self) -> dict[str, Any]:
        return self.req.json

    def fault(self, kind: str) -> Fault | None:
        return self.faults.get(kind)


def make_models(n: int, prefix: str = "fake-model") -> list[str]:
    """Return ``n`` deterministic model ids (``<prefix>-0001`` …), e.g. 500 for benchmarks."""
    return [f"{prefix}-{i:04d}" for i in range(1, n + 1)]


def split_words(text: str, n: int) -> list[str]:
    """Split ``text`` into at most ``n`` word-aligned pieces whose concatenation is ``text``."""
    words = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    n = max(1, min(n, len(words) or 1))
    size = -(-len(words) // n)  # ceil
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def split_even(text: str, n: int) -> list[str]:
    """Split ``text`` into at most ``n`` character-aligned pieces (for JSON argument deltas)."""
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def embedding_vector(text: str, dim: int) -> list[float]:
    """A deterministic pseudo-embedding of ``text`` with ``dim`` components in [-1, 1]."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = (digest * (dim // len(digest) + 1))[:dim]
    return [round((b - 127.5) / 127.5, 6) for b in raw]


def prompt_text(body: dict[str, Any]) -> str:
    """All prompt text of a chat/embedding request (messages, system, input, prompt)."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            walk(value.get("text") if "text" in value else value.get("content"))

    for key in ("system", "messages", "input", "prompt"):
        walk(body.get(key))
    return " ".join(parts)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for idle keep-alive connections
    request_queue_size = 128
    fake: FakeServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections die eventually
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def _serve(self) -> None:
        try:
            self.server.fake._dispatch(self)
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            self.close_connection = True
            with self.server.fake._lock:
                self.server.fake.abandoned += 1

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass



class IssuedTokens:
    """What a fake token endpoint keeps of the access tokens it issued (``issued``, in order):
    ``issue`` makes one that lives ``expires_in`` seconds, ``valid`` says whether one is still
    good, ``revoke()`` invalidates them all. Call ``_tokens_init`` from ``__init__``."""

    expires_in: int
    issued: list[str]

    def _tokens_init(self, prefix: str, suffix: str = "") -> None:
        self.issued = []
        self._token_shape = (prefix, suffix)
        self._expiry: dict[str, float] = {}
        self._counter = itertools.count(1)
        self._tokens_lock = threading.Lock()

    def issue(self, *, then=None) -> str:
        """A new token (``then()`` runs under the same lock, to record what goes with it)."""
        prefix, suffix = self._token_shape
        token = f"{prefix}{next(self._counter)}{suffix}"
        with self._tokens_lock:
            self.issued.append(token)
            self._expiry[token] = time.time() + self.expires_in
            if then is not None:
                then()
        return token

    def valid(self, token: str) -> bool:
        with self._tokens_lock:
            return self._expiry.get(token, 0) > time.time()

    def revoke(self) -> None:
        with self._tokens_lock:
            self._expiry.clear()


class FakeServer:
    """Base class: server lifecycle, request recording, routing, faults, body/stream writing."""

    protocol: ClassVar[str] = "base"
    base_path: ClassVar[str] = ""
    default_models: ClassVar[list[str]] = []
    model_prefix: ClassVar[str] = "fake-model"
    routes: ClassVar[dict[tuple[str, str], str]] = {}
    prefix_routes: ClassVar[tuple[tuple[str, str, str], ...]] = ()  # (method, prefix, route)
    stream_content_type: ClassVar[str] = "text/event-stream; charset=utf-8"
    retry_after_statuses: ClassVar[tuple[int, ...]] = (429,)
    json_bodies: ClassVar[bool] = True  # POST/PUT/PATCH bodies must be JSON objects (not OAuth forms)

    def __init__(
        self,
        *,
        models: list[str | dict[str, Any]] | int | None = None,
        api_key: str | None = None,
        reply: str | None = None,
        usage: dict[str, Any] | None = None,
        tool_call: dict[str, Any] | None = None,
        stream_chunks: int = 4,
        embedding_dim: int = 8,
        strict_models: bool = False,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        """Configure the fake (all attributes may also be changed while it runs).

        models: catalog (ids, or dicts merged over the protocol's defaults; an int N generates
            N ids with ``make_models``). api_key: when set, requests must carry it.
        reply: the assistant text. usage: token-count override (``Usage`` field names or native
            aliases such as ``input_tokens``); unset counts are derived from word counts.
        tool_call: ``{"name"?, "arguments", "id"?}`` — answer with this tool call whenever the
            request offers ``tools`` (name defaults to the first offered tool).
        stream_chunks: how many content deltas a stream splits the reply into.
        strict_models: unknown model ids get the protocol's "model not found" error.
        extra_headers: added to every response.
        """
        self.models: list[str | dict[str, Any]] = (
            make_models(models, self.model_prefix)
            if isinstance(models, int)
            else list(models if models is not None else self.default_models)
        )
        self.api_key = api_key
        self.reply = (
            reply if reply is not None
            else f"Hello from fake-{self.protocol}! This is a deterministic test reply."
        )
        unknown = set(usage or {}) - USAGE_FIELDS - set(USAGE_ALIASES)
        if unknown:
            raise ValueError(f"unknown usage keys: {sorted(unknown)}")
        self.usage = usage
        self.tool_call = tool_call
        self.stream_chunks = stream_chunks
        self.embedding_dim = embedding_dim
        self.strict_models = strict_models
        self.extra_headers = dict(extra_headers or {})
        self.requests: list[RecordedRequest] = []
        self.abandoned = 0  # responses the client hung up on before they were complete
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> FakeServer:
        """Bind 127.0.0.1:<free port> and serve in a daemon thread. Returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.protocol}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (sleeping handlers wake up at once)."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"fake-{self.protocol} is not running; call start() first")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Server root, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client SDK is configured with (root + the protocol's ``base_path``)."""
        return self.url + self.base_path

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    # ----------------------------------------------------------------- requests
    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self.requests[-1] if self.requests else None

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path equals ``path`` (absolute or relative to base_path)."""
        with self._lock:
            return [r for r in self.requests if self._path_matches(path, r.path)]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ----------------------------------------------------------------- faults
    def set_fault(
        self, kind: str, *, path: str | None = None, times: int | None = None, **opts: Any
    ) -> Fault:
        """Install a fault (replacing one of the same kind and path). Returns it (see ``hits``)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for unlimited)")
        fault = Fault(kind=kind, path=path, times=times, **opts)
        with self._lock:
            self._faults = [f for f in self._faults if (f.kind, f.path) != (kind, path)]
            self._faults.append(fault)
        return fault

    def clear_faults(self, kind: str | None = None) -> None:
        """Remove all faults, or only those of ``kind``."""
        with self._lock:
            self._faults = [f for f in self._faults if kind is not None and f.kind != kind]

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def _path_matches(self, wanted: str, path: str) -> bool:
        return path in (wanted, self.base_path + wanted)

    def _take_faults(self, path: str) -> dict[str, Fault]:
        taken: dict[str, Fault] = {}
        with self._lock:
            for f in self._faults:
                if f.kind in taken or (f.path is not None and not self._path_matches(f.path, path)):
                    continue
                taken[f.kind] = f
                f.hits += 1
                if f.times is not None:
                    f.times -= 1
            self._faults = [f for f in self._faults if f.times is None or f.times > 0]
        return taken

    # ----------------------------------------------------------------- helpers for routes
    def new_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):06d}"

    def model_entries(self) -> list[dict[str, Any]]:
        """The catalog as dicts with at least ``id``."""
        models = self.models
        if isinstance(models, int):
            models = make_models(models, self.model_prefix)
        return [dict(m) if isinstance(m, dict) else {"id": m} for m in models]

    def normalize_model(self, model: str) -> str:
        return model

    def check_model(self, call: Call) -> Reply | None:
        """With ``strict_models``, the protocol's "model not found" error for unknown ids."""
        model = str(call.body.get("model", ""))
        if not self.strict_models:
            return None
        known = {self.normalize_model(str(e["id"])) for e in self.model_entries()}
        return None if self.normalize_model(model) in known else self.model_not_found(model)

    def reply_text(self, call: Call) -> str:
        huge = call.fault("huge")
        return "x" * huge.size if huge else self.reply

    def text_chunks(self, call: Call, text: str) -> list[str]:
        if call.fault("huge"):
            return [text[i : i + PIECE] for i in range(0, len(text), PIECE)]
        return split_words(text, self.stream_chunks)

    def tool_call_for(self, call: Call) -> tuple[str, str, dict[str, Any]] | None:
        """(id, name, arguments) when the request offers tools and a tool call is configured."""
        tools = call.body.get("tools")
        if not self.tool_call or not tools:
            return None
        first = tools[0] if isinstance(tools[0], dict) else {}
        name = (
            self.tool_call.get("name")
            or first.get("name")
            or (first.get("function") or {}).get("name")
            or "tool"
        )
        return self.tool_call.get("id") or "", name, dict(self.tool_call.get("arguments") or {})

    def usage_for(self, call: Call, completion_text: str) -> Usage:
        usage = Usage(
            prompt_tokens=max(1, len(prompt_text(call.body).split())),
            completion_tokens=len(completion_text.split()),
        )
        for key, value in (self.usage or {}).items():
            setattr(usage, USAGE_ALIASES.get(key, key), value)
        return usage

    def stream(self, frames: Iterable[bytes]) -> Reply:
        return Reply(frames=frames, content_type=self.stream_content_type)

    # ----------------------------------------------------------------- protocol hooks
    def check_auth(self, call: Call) -> Reply | None:
        """The protocol's 401 reply if the request lacks the right key, else None."""
        return None

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        """The protocol's documented error reply for ``status``."""
        raise NotImplementedError

    def model_not_found(self, model: str) -> Reply:
        return self.error(404, model=model)

    def context_window_reply(self, call: Call, fault: Fault) -> Reply:
        """The protocol's error for a prompt longer than the model's context window."""
        raise NotImplementedError(f"fake-{self.protocol} has no documented context-window error")

    def content_policy_reply(self, call: Call, fault: Fault) -> Reply:
        """The protocol's refusal of content by its safety system."""
        raise NotImplementedError(f"fake-{self.protocol} has no documented content-policy error")

    def response_headers(self) -> dict[str, str]:
        """Headers added to every response (e.g. a request id)."""
        return {}

    def malformed_body(self) -> bytes:
        return b'{"id": "broken", "choices": [{"message": {"content": "trunc'

    def malformed_frame(self) -> bytes:
        return b'data: {"id": "broken", "choices": [{"delta": {"content": "tru\n\n'

    def stream_error_frame(self, fault: Fault) -> bytes:
        raise NotImplementedError

    def stream_error_frame_for(self, call: Call, fault: Fault) -> bytes:
        """The mid-stream error frame for ``call``'s route (a protocol with several stream
        shapes overrides this)."""
        return self.stream_error_frame(fault)

    # ----------------------------------------------------------------- serving
    def _read_request(self, h: _Handler) -> RecordedRequest:
        parts = urlsplit(h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while (size := int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            while h.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            raw = b"".join(chunks)
        else:
            raw = h.rfile.read(int(headers.get("content-length") or 0))
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return RecordedRequest(h.command, parts.path, query, headers, body, raw)

    def _route(self, method: str, path: str) -> str | None:
        name = self.routes.get((method, path))
        if name is None:
            for m, prefix, route in self.prefix_routes:
                if m == method and path.startswith(prefix) and len(path) > len(prefix):
                    return route
        return name

    def _dispatch(self, h: _Handler) -> None:
        req = self._read_request(h)
        with self._lock:
            self.requests.append(req)
        route = self._route(req.method, req.path)
        call = Call(req, route or "", self._take_faults(req.path))
        if (slow := call.fault("slow")) and slow.delay:
            self._stopping.wait(slow.delay)
        if (reset := call.fault("reset")) and reset.after_chunks is None:
            return self._reset(h)
        if status := call.fault("status"):
            reply = self._status_reply(call, status)
        elif redirect := call.fault("redirect"):
            code = redirect.status if 300 <= redirect.status < 400 else 307
            reply = Reply(status=code, headers={"location": redirect.location},
                          body={"error": {"message": redirect.message or "Moved"}})
        elif fault := call.fault("context_window"):
            reply = self.context_window_reply(call, fault)
        elif fault := call.fault("content_policy"):
            reply = self.content_policy_reply(call, fault)
        elif call.fault("not_json"):
            reply = Reply(body=HTML_PAGE, content_type="text/html; charset=utf-8")
        elif route is None:
            reply = self.error(404, f"Unknown request URL: {req.method} {req.path}")
        elif self.json_bodies and req.method in ("POST", "PUT", "PATCH") and not isinstance(req.body, dict):
            reply = self.check_auth(call) or self.error(400, "Request body must be a JSON object")
        else:
            reply = self.check_auth(call) or getattr(self, f"route_{route}")(call)
        self._send(h, call, reply)

    def _status_reply(self, call: Call, fault: Fault) -> Reply:
        reply = self.error(fault.status, fault.message, variant=fault.variant,
                           model=str(call.body.get("model") or "unknown"))
        retry_after = fault.retry_after
        if retry_after is _DEFAULT:
            retry_after = 1 if fault.status in self.retry_after_statuses else None
        if retry_after is not None:
            reply.headers["retry-after"] = str(retry_after)
        reply.headers.update(fault.headers)
        return reply

    def _send(self, h: _Handler, call: Call, reply: Reply) -> None:
        headers = {**self.response_headers(), **self.extra_headers, **reply.headers}
        if reply.frames is not None:
            return self._send_stream(h, call, reply, headers)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        if reply.status == 200 and reply.content_type.startswith("application/json"):
            if call.fault("malformed"):
                body = self.malformed_body()
            elif (huge := call.fault("huge")) and call.route != "chat":
                body = json.dumps({"padding": "x" * huge.size}).encode()
        h.send_response(reply.status)
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        reset = call.fault("reset")
        end = len(body) // 2 if reset else len(body)
        view = memoryview(body)
        for offset in range(0, end, PIECE):
            h.wfile.write(view[offset : min(offset + PIECE, end)])
        if reset:
            self._reset(h)

    def _send_stream(self, h: _Handler, call: Call, reply: Reply, headers: dict[str, str]) -> None:
        h.send_response(reply.status)
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        slow, reset = call.fault("slow"), call.fault("reset")
        bad, broken = call.fault("malformed"), call.fault("stream_error")

        def write(data: bytes) -> None:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        frames: Iterator[bytes] = iter(reply.frames or ())
        for sent, frame in enumerate(frames):
            if slow and slow.chunk_delay and sent:
                self._stopping.wait(slow.chunk_delay)
            if reset and sent >= (reset.after_chunks or 0):
                return self._reset(h)
            if bad and sent == (1 if bad.after_chunks is None else bad.after_chunks):
                write(self.malformed_frame())
            if broken and sent == (1 if broken.after_chunks is None else broken.after_chunks):
                write(self.stream_error_frame_for(call, broken))
                break
            write(frame)
        else:
            if reset:
                return self._reset(h)
            if slow and slow.end_delay:
                h.wfile.flush()
                self._stopping.wait(slow.end_delay)
        h.wfile.write(b"0\r\n\r\n")

    def _reset(self, h: _Handler) -> None:
        """Close the connection abruptly: SO_LINGER 0 makes close() send RST instead of FIN."""
        h.close_connection = True
        sock = h.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            h.rfile.close()  # its makefile() reference would otherwise keep the fd open
        except OSError:
            pass
        sock.close()
