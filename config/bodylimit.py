"""The request-body limit (``MAX_REQUEST_BYTES``, Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``) for
every route, enforced on the ASGI messages as they arrive, chunked bodies included, and the same
limit for Django under a WSGI server (``limit_wsgi_request_body``, config/wsgi.py).

``limit_request_body`` wraps the whole application (config/asgi.py). A declared Content-Length
over the limit is refused before a byte of the body is read; a body that grows past the limit
is refused at the chunk that crosses it: the app's ``receive()`` raises ``RequestTooLarge``
instead of handing the chunk over, so nothing past the limit is read or buffered. An app with
its own error shape answers that itself (the gateway's OpenAI-shaped 413); otherwise the
wrapper answers 413 ``{"error": {"type": "request_too_large", "message"}}``. Either way the
answer carries ``Connection: close``, so the server stops reading the rest.

Under WSGI (``limit_wsgi_request_body``) the same 413 and message: a declared Content-Length
over the limit before a byte is read (Django's own stream never reads past the Content-Length,
and DRF's parsers read that stream without Django's size check: this is the check); a chunked
body (no Content-Length; the server hands it over de-chunked and says so with
``wsgi.input_terminated``, as gunicorn, waitress and mod_wsgi do) is read up to one byte past
the limit and refused there, or handed on with its length declared, so Django reads it (it
reads a body without a Content-Length as empty). WSGI lets no application send hop-by-hop
headers, so the server decides whether the connection stays open; one that keeps it open must
read past the rest of a refused body before the next request.
"""

import io
from http import HTTPStatus

import orjson
from django.conf import settings

CLOSE = (b"connection", b"close")


class RequestTooLarge(Exception):
    """Raised by the wrapped ``receive()``; ``str(exc)`` says the size and the limit."""


def limit_request_body(app):
    async def limited(scope, receive, send):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if scope["type"] != "http" or limit is None:
            await app(scope, receive, send)
            return
        declared = _content_length(scope)
        refused = None
        if declared is not None and declared > limit:
            refused = RequestTooLarge(
                f"Request body is {declared} bytes; the limit is {limit} bytes."
            )
        received = 0

        async def receive_within_limit():
            nonlocal received
            if refused is not None:
                raise refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(f"Request body is over the limit of {limit} bytes.")
            return message

        try:
            await app(scope, receive_within_limit, send)
        except RequestTooLarge as exc:  # raised before the app answered: it reads bodies first
            body = _too_large_body(str(exc))
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        CLOSE,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

    return limited


def limit_wsgi_request_body(app):
    """The body limit around a WSGI application (Django under gunicorn and the like); see the
    module docstring."""

    def limited(environ, start_response):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            return app(environ, start_response)
        length = (environ.get("CONTENT_LENGTH") or "").strip()
        if length.isdigit():
            if int(length) > limit:
                return _refuse_wsgi(start_response, f"Request body is {int(length)} bytes; the limit is {limit} bytes.")
            return app(environ, start_response)
        if "HTTP_TRANSFER_ENCODING" not in environ or not environ.get("wsgi.input_terminated"):
            return app(environ, start_response)  # no body Django would read
        stream, chunks, received = environ["wsgi.input"], [], 0
        while chunk := stream.read(min(64 * 1024, limit + 1 - received)):
            received += len(chunk)
            if received > limit:
                return _refuse_wsgi(start_response, f"Request body is over the limit of {limit} bytes.")
            chunks.append(chunk)
        body = b"".join(chunks)
        return app({**environ, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}, start_response)

    return limited


def _too_large_body(message: str) -> bytes:
    return orjson.dumps({"error": {"type": "request_too_large", "message": message}})


def _refuse_wsgi(start_response, message: str) -> list[bytes]:
    body = _too_large_body(message)
    start_response(f"413 {HTTPStatus(413).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def with_content_length(app):
    """Django (and DRF's parsers) read a request body only as far as its Content-Length says:
    a chunked body, which has none, reads as empty. This reads such a body first (through the
    limited ``receive``) and hands it on with its length declared."""

    async def declared(scope, receive, send):
        if (
            scope["type"] != "http"
            or _content_length(scope) is not None
            or not _has_header(scope, b"transfer-encoding")
        ):
            await app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope = {
            **scope,
            "headers": [*scope["headers"], (b"content-length", str(len(body)).encode())],
        }
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        await app(scope, replay, send)

    return declared


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _has_header(scope, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope["headers"])
