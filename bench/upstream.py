"""A fast loopback OpenAI-compatible upstream for benchmarking the gateway's data plane.

Run it as::

    python bench/upstream.py --port 18001 [--workers 1] [--stream-chunk-delay-ms 0]

It is a raw ``asyncio.Protocol`` HTTP/1.1 server (no framework) on ``uvloop`` when that is
installed, so that the upstream is never the bottleneck when a proxy sits in front of it. Every
answer is a fixed, pre-encoded byte string:

``POST /v1/chat/completions``  a ``chat.completion`` object with ``usage``; when the body has
                               ``"stream": true``, an SSE stream (``Transfer-Encoding: chunked``):
                               a role chunk, content chunks, a ``finish_reason`` chunk, a usage
                               chunk with ``"choices": []``, then ``data: [DONE]``.
``POST /v1/messages``          Anthropic's Messages format: a ``message`` with ``usage``; streamed
                               (``"stream": true``): ``message_start``, ``content_block_start``,
                               ``ping``, six ``content_block_delta``, ``content_block_stop``,
                               ``message_delta`` (usage), ``message_stop`` (named SSE events).
``POST /v1/responses``         OpenAI's Responses format: a ``response`` with ``usage``; streamed:
                               ``response.created`` … six ``response.output_text.delta`` …
                               ``response.completed`` (with usage), named SSE events, no [DONE].
``POST /v1/embeddings``        a ``list`` with one ``embedding`` of ``--embedding-dim`` floats.
``GET  /v1/models``            a ``list`` with the one model (``--model``).
``GET  /health``               ``{"status":"ok"}``; anything else is a 404 (405 for a wrong method)
                               with the OpenAI error envelope.

Authentication is not checked (any or no ``Authorization`` / ``x-api-key`` header is accepted).

HTTP handling: keep-alive by default (HTTP/1.1) and ``Connection: close`` / HTTP/1.0 honoured;
pipelined requests are answered in order, with the answers to one read batched into one write;
request bodies by ``Content-Length`` or ``Transfer-Encoding: chunked``; ``Expect: 100-continue``;
431 for heads over 64 KiB, 413 for bodies over ``--max-body``; the transport is paused while the
client is not reading (write flow control).

With ``--workers K > 1`` the parent forks K processes that each bind the port with
``SO_REUSEPORT`` (the kernel spreads connections) and runs none of the serving itself; SIGTERM or
SIGINT to the parent stops them all. The line ``upstream ready on http://HOST:PORT`` is printed
(stdout, flushed) once every worker listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import sys
from typing import Any, cast

MAX_HEAD = 64 * 1024
CREATED = 1_700_000_000
COMPLETION_ID = "chatcmpl-bench0000000000000000000000"
MESSAGE_ID = "msg_bench00000000000000000000"
RESPONSE_ID = "resp_bench0000000000000000000000"
OUTPUT_ITEM_ID = "msg_bench_item0000000000000000"
CONTENT_PIECES = ("Hello", " from", " the", " bench", " upstream", ".")
USAGE = {"prompt_tokens": 12, "completion_tokens": len(CONTENT_PIECES), "total_tokens": 12 + 6}
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
# POST paths answered with a completion, by the kind of answer (and stream) they get.
_POSTED = {
    b"/v1/chat/completions": "chat",
    b"/chat/completions": "chat",
    b"/v1/messages": "messages",
    b"/v1/responses": "responses",
    b"/responses": "responses",
}


# --------------------------------------------------------------------------------------------
# Pre-encoded responses
# --------------------------------------------------------------------------------------------


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    """A complete keep-alive HTTP/1.1 response with a Content-Length body."""
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\n"
        b"Server: bench-upstream\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"\r\n" + body
    )


def _error_body(
    message: str, kind: str = "invalid_request_error", code: str | None = None
) -> bytes:
    return _dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _with_close(response: bytes) -> bytes:
    """The same response with ``Connection: close`` added to its head."""
    return response.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)


class Responses:
    """Every byte string the server can send, built once at start-up."""

    def __init__(self, model: str, embedding_dim: int) -> None:
        self.model = model
        completion = {
            "id": COMPLETION_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(CONTENT_PIECES),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
        self.chat = _response("200 OK", _dumps(completion))

        embedding = [round(((i * 7919) % 2000) / 1000.0 - 1.0, 6) for i in range(embedding_dim)]
        embeddings = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
            "model": model,
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
        self.embeddings = _response("200 OK", _dumps(embeddings))

        models = {
            "object": "list",
            "data": [{"id": model, "object": "model", "created": CREATED, "owned_by": "bench"}],
        }
        self.models = _response("200 OK", _dumps(models))
        self.health = _response("200 OK", b'{"status":"ok"}')
        self.not_found = _response(
            "404 Not Found", _error_body("Unknown request URL.", code="unknown_url")
        )
        self.not_allowed = _response(
            "405 Method Not Allowed", _error_body("Method not allowed.", code="method_not_allowed")
        )
        self.bad_request = _with_close(
            _response("400 Bad Request", _error_body("Malformed HTTP request."))
        )
        self.too_large = _with_close(
            _response("413 Payload Too Large", _error_body("Request body too large."))
        )
        self.head_too_large = _with_close(
            _response("431 Request Header Fields Too Large", _error_body("Header too large."))
        )
        self.continue_ = b"HTTP/1.1 100 Continue\r\n\r\n"

        # SSE stream: head + one HTTP chunk per SSE event + the terminating zero chunk.
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\n"
            b"Server: bench-upstream\r\n"
            b"Content-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"\r\n"
        )
        events = [_sse(self._chunk({"role": "assistant", "content": "", "refusal": None}, None))]
        events += [_sse(self._chunk({"content": piece}, None)) for piece in CONTENT_PIECES]
        events.append(_sse(self._chunk({}, "stop")))
        usage_chunk = self._chunk_base()
        usage_chunk["choices"] = []
        usage_chunk["usage"] = USAGE
        events.append(_sse(usage_chunk))
        events.append(b"data: [DONE]\n\n")
        self.stream_end = b"0\r\n\r\n"
        # Each streamed answer as its HTTP chunks (one per SSE event), and as one write.
        self.stream_events: dict[str, list[bytes]] = {"chat": [_http_chunk(event) for event in events]}
        self.messages = _response("200 OK", _dumps(self._message()))
        self.stream_events["messages"] = [_http_chunk(_named_sse(event)) for event in self._message_events()]
        self.responses = _response("200 OK", _dumps(self._response_obj("completed")))
        self.stream_events["responses"] = [_http_chunk(_named_sse(event)) for event in self._response_events()]
        self.streams = {
            kind: self.stream_head + b"".join(chunks) + self.stream_end
            for kind, chunks in self.stream_events.items()
        }
        self.stream = self.streams["chat"]

    # -- Anthropic Messages -----------------------------------------------------------------

    def _message(self, *, streaming: bool = False) -> dict[str, Any]:
        return {
            "id": MESSAGE_ID,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [] if streaming else [{"type": "text", "text": "".join(CONTENT_PIECES)}],
            "stop_reason": None if streaming else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": USAGE["prompt_tokens"],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1 if streaming else USAGE["completion_tokens"],
            },
        }

    def _message_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": self._message(streaming=True)},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "ping"},
        ]
        events += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            for piece in CONTENT_PIECES
        ]
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": USAGE["completion_tokens"]},
            },
            {"type": "message_stop"},
        ]
        return events

    # -- OpenAI Responses -------------------------------------------------------------------

    def _output_item(self, status: str) -> dict[str, Any]:
        done = status == "completed"
        return {
            "type": "message",
            "id": OUTPUT_ITEM_ID,
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": "".join(CONTENT_PIECES), "annotations": []}]
            if done
            else [],
        }

    def _response_obj(self, status: str) -> dict[str, Any]:
        done = status == "completed"
        return {
            "id": RESPONSE_ID,
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": None,
            "model": self.model,
            "output": [self._output_item("completed")] if done else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": {
                "input_tokens": USAGE["prompt_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": USAGE["completion_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": USAGE["total_tokens"],
            }
            if done
            else None,
            "metadata": {},
        }

    def _response_events(self) -> list[dict[str, Any]]:
        where = {"item_id": OUTPUT_ITEM_ID, "output_index": 0, "content_index": 0}
        text = "".join(CONTENT_PIECES)
        part = {"type": "output_text", "text": text, "annotations": []}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": self._response_obj("in_progress")},
            {"type": "response.in_progress", "response": self._response_obj("in_progress")},
            {"type": "response.output_item.added", "output_index": 0, "item": self._output_item("in_progress")},
            {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        ]
        events += [{"type": "response.output_text.delta", **where, "delta": piece} for piece in CONTENT_PIECES]
        events += [
            {"type": "response.output_text.done", **where, "text": text},
            {"type": "response.content_part.done", **where, "part": part},
            {"type": "response.output_item.done", "output_index": 0, "item": self._output_item("completed")},
            {"type": "response.completed", "response": self._response_obj("completed")},
        ]
        return [{**event, "sequence_number": n} for n, event in enumerate(events)]

    def _chunk_base(self) -> dict[str, Any]:
        return {
            "id": COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": "fp_bench",
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        chunk = self._chunk_base()
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        return chunk


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _named_sse(obj: dict[str, Any]) -> bytes:
    """An SSE event named by the object's ``type`` (how Anthropic and the Responses API stream)."""
    return b"event: " + obj["type"].encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


# --------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------


class _Incomplete(Exception):
    """More bytes are needed to finish parsing the current request."""


class _BadRequest(Exception):
    """The request cannot be parsed; answer 400 (or ``response``) and close."""

    def __init__(self, response: bytes | None = None) -> None:
        super().__init__()
        self.response = response


def _decode_chunked(buf: bytearray, start: int, limit: int) -> tuple[bytes, int]:
    """Decode a chunked body starting at ``buf[start]``; return (body, index after it).

    Raises `_Incomplete` when the body has not fully arrived and `_BadRequest` when it is
    malformed or longer than ``limit`` bytes. Trailer fields are skipped.
    """
    pos = start
    parts: list[bytes] = []
    size_total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 1024:
                raise _BadRequest()
            raise _Incomplete()
        size_field = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise _BadRequest() from None
        if size < 0:
            raise _BadRequest()
        pos = eol + 2
        if size == 0:
            # Trailer section: header lines until an empty line.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    raise _Incomplete()
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        size_total += size
        if size_total > limit:
            raise _BadRequest()
        if len(buf) < pos + size + 2:
            raise _Incomplete()
        parts.append(bytes(buf[pos : pos + size]))
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise _BadRequest()
        pos += size + 2


class UpstreamProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parse requests from the buffer and answer them in order."""

    __slots__ = (
        "buf",
        "chunk_delay",
        "closing",
        "continue_sent",
        "max_body",
        "paused",
        "r",
        "streaming",
        "transport",
    )

    def __init__(self, responses: Responses, max_body: int, chunk_delay: float) -> None:
        self.r = responses
        self.max_body = max_body
        self.chunk_delay = chunk_delay
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.paused = False  # the client is not reading: stop parsing until it drains
        self.streaming = False  # a delayed stream is being written: later requests wait
        self.closing = False
        self.continue_sent = False

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not (self.paused or self.streaming or self.closing):
            self._process()

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
            if not self.streaming:
                self._process()

    # -- parsing ----------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer every complete request in the buffer, with one write for all of them."""
        out: list[bytes] = []
        buf = self.buf
        transport = self.transport
        while buf and transport is not None:
            try:
                response, consumed, close, delayed_stream = self._parse_one(buf, out)
            except _Incomplete:
                break
            except _BadRequest as bad:
                out.append(bad.response or self.r.bad_request)
                self.closing = True
                break
            self.continue_sent = False
            del buf[:consumed]
            if delayed_stream:
                if out:
                    transport.write(b"".join(out))
                    out.clear()
                self.streaming = True
                asyncio.get_running_loop().create_task(self._write_stream(delayed_stream, close))
                return
            if close:
                out.append(_with_close(response))
                self.closing = True
                break
            out.append(response)
            if self.paused:
                break
        if out and transport is not None:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing and transport is not None:
            transport.close()

    def _parse_one(self, buf: bytearray, out: list[bytes]) -> tuple[bytes, int, bool, str | None]:
        """Parse the request at the start of ``buf``.

        Returns (response, bytes consumed, close after it, the kind of delayed stream to write or None).
        """
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise _BadRequest(self.r.head_too_large)
            raise _Incomplete()
        if end > MAX_HEAD:
            raise _BadRequest(self.r.head_too_large)
        head = bytes(buf[:end])
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise _BadRequest()
        method, target, version = parts
        lower = head.lower()
        body_start = end + 4

        close = False
        if version == b"HTTP/1.0":
            close = b"\r\nconnection: keep-alive" not in lower
        elif b"\r\nconnection:" in lower:
            close = re.search(rb"\r\nconnection:[^\r]*\bclose\b", lower) is not None

        body = b""
        if b"\r\ntransfer-encoding:" in lower:
            if b"chunked" not in lower.split(b"\r\ntransfer-encoding:", 1)[1].split(b"\r\n", 1)[0]:
                raise _BadRequest()
            self._maybe_continue(lower, out)
            body, consumed = _decode_chunked(buf, body_start, self.max_body)
        else:
            cl_at = lower.find(b"\r\ncontent-length:")
            length = 0
            if cl_at >= 0:
                value_end = lower.find(b"\r\n", cl_at + 17)
                raw = lower[cl_at + 17 : value_end if value_end >= 0 else len(lower)].strip()
                if not raw.isdigit():
                    raise _BadRequest()
                length = int(raw)
                if length > self.max_body:
                    raise _BadRequest(self.r.too_large)
            consumed = body_start + length
            if len(buf) < consumed:
                if length:
                    self._maybe_continue(lower, out)
                raise _Incomplete()
            body = bytes(buf[body_start:consumed])

        response, delayed = self._route(method, target, body)
        return response, consumed, close, delayed

    def _maybe_continue(self, lower: bytes, out: list[bytes]) -> None:
        """Send ``100 Continue`` once per request when the client asked for it."""
        if not self.continue_sent and b"\r\nexpect: 100-continue" in lower:
            self.continue_sent = True
            if self.transport is not None:
                if out:
                    self.transport.write(b"".join(out))
                    out.clear()
                self.transport.write(self.r.continue_)

    def _route(self, method: bytes, target: bytes, body: bytes) -> tuple[bytes, str | None]:
        """The response for one request, and the kind of stream to write with delays (or None)."""
        path = target.split(b"?", 1)[0]
        if path.endswith(b"/") and len(path) > 1:
            path = path[:-1]
        r = self.r
        kind = _POSTED.get(path)
        if kind is not None:
            if method != b"POST":
                return r.not_allowed, None
            if b'"stream"' in body and _STREAM_TRUE.search(body) is not None:
                if self.chunk_delay > 0:
                    return b"", kind
                return r.streams[kind], None
            return (r.chat if kind == "chat" else r.messages if kind == "messages" else r.responses), None
        if path == b"/v1/embeddings" or path == b"/embeddings":
            return (r.embeddings if method == b"POST" else r.not_allowed), None
        if path == b"/v1/models" or path == b"/models":
            return (r.models if method == b"GET" else r.not_allowed), None
        if path == b"/health" or path == b"/":
            return (r.health if method in (b"GET", b"HEAD") else r.not_allowed), None
        return r.not_found, None

    async def _write_stream(self, kind: str, close: bool) -> None:
        """Write the SSE stream with ``chunk_delay`` between events, then resume parsing."""
        r = self.r
        try:
            transport = self.transport
            if transport is None:
                return
            head = r.stream_head if not close else _with_close(r.stream_head)
            events = r.stream_events[kind]
            transport.write(head + events[0])
            for event in events[1:]:
                await asyncio.sleep(self.chunk_delay)
                if self.transport is None:
                    return
                self.transport.write(event)
            if self.transport is None:
                return
            self.transport.write(r.stream_end)
            if close:
                self.closing = True
                self.transport.close()
        finally:
            self.streaming = False
        if not self.closing and not self.paused and self.buf:
            self._process()


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------


def _install_uvloop() -> str:
    """Use uvloop's event loop policy when uvloop is importable; return the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def serve(sock: socket.socket, args: argparse.Namespace, announce: bool) -> None:
    """Serve on an already bound socket until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    responses = Responses(args.model, args.embedding_dim)
    chunk_delay = args.stream_chunk_delay_ms / 1000.0
    server = await loop.create_server(
        lambda: UpstreamProtocol(responses, args.max_body, chunk_delay),
        sock=sock,
        backlog=4096,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if announce:
        host, port = sock.getsockname()[:2]
        print(f"upstream ready on http://{host}:{port} ({args.loop_name})", flush=True)
    async with server:
        await stop.wait()


def _run_worker(sock: socket.socket, args: argparse.Namespace, announce: bool) -> None:
    asyncio.run(serve(sock, args, announce))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--workers", type=int, default=1, help="processes (SO_REUSEPORT)")
    parser.add_argument("--model", default="bench-model", help="model id in every answer")
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--max-body", type=int, default=16 * 1024 * 1024, help="bytes")
    parser.add_argument(
        "--stream-chunk-delay-ms",
        type=float,
        default=0.0,
        help="pause between SSE events (0: the whole stream in one write)",
    )
    args = parser.parse_args(argv)
    args.loop_name = _install_uvloop()

    if args.workers <= 1:
        sock = _bind(args.host, args.port, reuse_port=False)
        _run_worker(sock, args, announce=True)
        return 0

    # Multi-process: bind once to fix the port (when 0 was asked), then every worker binds its
    # own SO_REUSEPORT socket on it so that the kernel balances connections between them.
    probe = _bind(args.host, args.port, reuse_port=True)
    port = probe.getsockname()[1]
    children: list[int] = []
    ready_r, ready_w = os.pipe()
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # child
            os.close(ready_r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            sock = _bind(args.host, port, reuse_port=True)
            os.write(ready_w, b"x")
            os.close(ready_w)
            try:
                _run_worker(sock, args, announce=False)
            finally:
                os._exit(0)
        children.append(pid)
    os.close(ready_w)
    probe.close()  # the parent never accepts
    got = 0
    while got < args.workers:
        chunk = os.read(ready_r, args.workers)
        if not chunk:
            break
        got += len(chunk)
    os.close(ready_r)
    print(
        f"upstream ready on http://{args.host}:{port} ({args.loop_name}, {args.workers} workers)",
        flush=True,
    )

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    stopping = False
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in children:
            children.remove(pid)
            if code:
                status = 1
            if not stopping:  # one worker ended: stop the others too
                stopping = True
                forward(signal.SIGTERM, None)
    return status


if __name__ == "__main__":
    sys.exit(main())
