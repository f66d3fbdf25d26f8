"""The request-body limit (``MAX_REQUEST_BYTES``, Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``) for
every route, enforced on the ASGI messages as they arrive, chunked bodies included.

``limit_request_body`` wraps the whole application (config/asgi.py). A declared Content-Length
over the limit is refused before a byte of the body is read; a body that grows past the limit
is refused at the chunk that crosses it: the app's ``receive()`` raises ``RequestTooLarge``
instead of handing the chunk over, so nothing past the limit is read or buffered. An app with
its own error shape answers that itself (the gateway's OpenAI-shaped 413); otherwise the
wrapper answers 413 ``{"error": {"type": "request_too_large", "message"}}``. Either way the
answer carries ``Connection: close``, so the server stops reading the rest.
"""

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
            body = orjson.dumps({"error": {"type": "request_too_large", "message": str(exc)}})
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
