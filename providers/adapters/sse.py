"""Streams on the wire: incremental SSE and NDJSON decoders for what upstreams send (bytes may
arrive split anywhere), and ``ChunkBuilder`` for the OpenAI ``chat.completion.chunk`` events
we send.

Everything here is on the gateway's hot path: no per-request regex compilation, JSON through
``orjson``, bytes in and bytes out where possible."""

from typing import Any

from orjson import dumps

from providers.adapters.types import UpstreamFailure

MAX_LINE_BYTES = 32 * 1024 * 1024  # one SSE/NDJSON line larger than this is not a sane stream


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

    @property
    def between_events(self) -> bool:
        """True when the bytes fed so far end exactly at the end of an event (nothing of the
        next one read yet): where another event may be put into the stream."""
        return not self._pending and not self._data and not self._event

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
