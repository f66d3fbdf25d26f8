"""The Python floor for bench/gateway.py: the least a Python relay does, to compare Tollgate with.

A raw ASGI app, served by the same uvicorn settings as Tollgate (one worker, uvloop, httptools,
no access log): ``POST /v1/chat/completions`` is relayed as it is to the upstream
(``BENCH_UPSTREAM_BASE_URL``, ``…/v1``) with one aiohttp ClientSession, and the answer comes back
as it is — streamed when it is an event stream. No authentication, no parsing, no limits, no
accounting, no logging. ``GET /healthz`` answers 200 once the session is open.

    BENCH_UPSTREAM_BASE_URL=http://127.0.0.1:8001/v1 \\
        .venv/bin/python -m uvicorn floor:app --app-dir bench --port 8002 --loop uvloop --http httptools
"""

import os

import aiohttp

UPSTREAM_CHAT = os.environ.get("BENCH_UPSTREAM_BASE_URL", "http://127.0.0.1:8001/v1").rstrip("/") + "/chat/completions"

session: aiohttp.ClientSession | None = None


async def app(scope, receive, send) -> None:
    global session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/healthz":
        await _answer(send, 200 if session is not None else 503, b'{"status": "ok"}')
    elif scope["path"] == "/v1/chat/completions" and scope["method"] == "POST":
        await _relay(receive, send)
    else:
        await _answer(send, 404, b'{"error": {"message": "not found"}}')


async def _relay(receive, send) -> None:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    async with session.post(UPSTREAM_CHAT, data=b"".join(chunks),
                            headers={"Content-Type": "application/json"}) as resp:
        content_type = resp.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            await _answer(send, resp.status, await resp.read(), content_type.encode())
            return
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-cache")]})
        async for data in resp.content.iter_any():
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _answer(send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
