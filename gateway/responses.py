"""``POST /v1/responses``, the OpenAI Responses door: the same key auth, model resolution, limits,
budget reservation, fallbacks, cooldowns, metrics, log line and ledger row as
``/v1/chat/completions`` (the app's own steps), with one difference per target: an OpenAI
provider gets the request relayed to its own ``/v1/responses`` (server-side state and built-in
tools work there), every other provider gets it translated to Chat Completions and its answer
translated back (providers/adapters/responses_door.py). A fallback may cross that line."""

import asyncio
import time
from typing import Any

from core.errors import InvalidInput
from gateway import app as gw  # the app imports this module; its names are read at call time
from gateway.engine import Attempt, Call, _failure_from_exception
from gateway.errors import GatewayError, bad_request
from gateway.routing import Route, Target, TenantConfig, apply_defaults
from gateway.upstream import attempt_timeout
from providers.adapters import responses_door as door
from providers.adapters.registry import ADAPTERS
from providers.adapters.types import UpstreamFailure
from providers.models import ModelMode

RELAYED = frozenset({"openai"})  # provider types that speak the Responses API themselves


class Translation:
    """The request's Chat Completions form, made once and only when a target needs it."""

    __slots__ = ("body", "_chat", "_error")

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self._chat: dict[str, Any] | None = None
        self._error: InvalidInput | None = None

    def chat(self) -> dict[str, Any]:
        if self._chat is None and self._error is None:
            try:
                self._chat = door.chat_request(self.body)
            except InvalidInput as exc:
                self._error = exc
        if self._error is not None:
            raise bad_request(self._error.message, param=self._error.field)
        return self._chat


async def serve(app, scope, receive, send) -> None:
    """The door's handler (GatewayApp.responses)."""
    ctx = gw.Ctx(request_id=gw.new_request_id(), started=time.perf_counter(), api="responses")
    tenant: TenantConfig | None = None
    try:
        ctx.key, tenant = await app._principal(scope)
        body, ctx.prompt_bytes = await gw._read_json(scope, receive)
        try:
            door.check_request(body)
        except InvalidInput as exc:
            raise bad_request(exc.message, param=exc.field) from None
        ctx.stream = bool(body.get("stream"))
        summary = door.request_summary(body)
        app._note_client_fields(ctx, scope, summary)
        tenant, route, targets = await app._admitted(ctx, tenant, summary, ModelMode.CHAT,
                                                     lambda: app._principal(scope))
        translation = Translation(body)
        if not any(t.deployment.provider_type in RELAYED for t in targets):
            translation.chat()  # a request that cannot be translated fails now, naming the field
        ctx.call = Call(request_id=ctx.request_id)
        ctx.estimated_prompt_chars = ctx.prompt_bytes
        if ctx.stream:
            await _stream(app, ctx, tenant, route, targets, summary, translation, receive, send)
        else:
            await _complete(app, ctx, tenant, route, targets, summary, translation, send)
    except GatewayError as exc:
        ctx.status, ctx.error_type = exc.usage_status, exc.code or exc.type
        if not ctx.headers_sent:
            await app._respond_error(send, exc, ctx.request_id, ctx.extra_headers)
    finally:
        app._record(ctx, tenant)


def _request_for(tenant: TenantConfig, target: Target, summary_request: dict[str, Any],
                 translation: Translation) -> dict[str, Any]:
    """What goes to ``target``: the Responses request (relayed) or its chat form (translated),
    with the defaults the summary was given."""
    if target.deployment.provider_type in RELAYED:
        return door.relay_request(translation.body, summary_request)
    return apply_defaults(translation.chat(), tenant, target)


# --- non-streamed ----------------------------------------------------------------------------

async def _complete(app, ctx, tenant: TenantConfig, route: Route, targets: list[Target], summary: dict[str, Any],
                    translation: Translation, send) -> None:
    engine, call = app.engine, ctx.call
    resp_id = door.response_id(ctx.request_id)
    plan = engine._plan(tenant, route, targets, summary, call)
    step = await plan.__anext__()
    while True:
        target, summary_request, timeout = step
        d = target.deployment
        started = time.perf_counter()
        try:
            request = _request_for(tenant, target, summary_request, translation)
            if d.provider_type in RELAYED:
                up = door.build_relay(d, request, stream=False)
                async with engine.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                                  timeout=attempt_timeout(timeout, stream=False)) as resp:
                    data = await resp.read()
                    if resp.status != 200:
                        raise ADAPTERS[d.provider_type].parse_error(
                            d, resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
                usage = door.relayed_usage(d, data)
            else:
                result = await engine._chat_once(d, request, timeout, call.request_id)
                usage = result.usage
                data = door.response_from_chat(result.body, usage, request=translation.body, resp_id=resp_id)
        except GatewayError:
            await plan.aclose()
            raise
        except Exception as exc:  # noqa: BLE001 - classified, or re-raised when unknown
            step = await plan.asend(_failure_from_exception(exc, d, timeout))
            continue
        call.deployment = d
        call.attempts.append(Attempt(d.public_id, "ok", "", 200, (time.perf_counter() - started) * 1000))
        call.usage = usage
        await plan.aclose()
        await gw._send_json(send, 200, data, ctx.request_id, gw._model_header(ctx))
        return


# --- streamed --------------------------------------------------------------------------------

class _Relayed:
    """A relayed Responses stream whose first bytes are in hand."""

    def __init__(self, first: bytes, rest, response, watcher: door.RelayWatcher):
        self.first, self.rest, self.response, self.watcher = first, rest, response, watcher

    async def chunks(self):
        if self.rest is not None:
            async for chunk in self.rest:
                yield self.watcher.feed(chunk)
        self.watcher.finish()

    def close(self) -> None:
        self.response.close()


async def _open_relay(engine, d, request: dict[str, Any], timeout: float) -> _Relayed:
    up = door.build_relay(d, request, stream=True)
    resp = await engine.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                        timeout=attempt_timeout(timeout, stream=True))
    try:
        if resp.status != 200:
            data = await resp.read()
            raise ADAPTERS[d.provider_type].parse_error(d, resp.status, {k.lower(): v for k, v in resp.headers.items()},
                                                        data)
        watcher = door.RelayWatcher()
        chunks = resp.content.iter_any()
        async for chunk in chunks:
            if chunk:
                return _Relayed(watcher.feed(chunk), chunks, resp, watcher)
        raise UpstreamFailure("bad_response", f"{d.provider_name} ended the stream without an answer.",
                              retryable=True)
    except BaseException:
        resp.close()
        raise


async def _stream(app, ctx, tenant: TenantConfig, route: Route, targets: list[Target], summary: dict[str, Any],
                  translation: Translation, receive, send) -> None:
    """Open the first target that answers (failures before that fall back), then relay or
    translate its stream. Once the headers went out, errors are reported inside the stream."""
    engine, call = app.engine, ctx.call
    plan = engine._plan(tenant, route, targets, summary, call)
    step = await plan.__anext__()
    created = int(time.time())
    while True:
        target, summary_request, timeout = step
        d = target.deployment
        started = time.perf_counter()
        try:
            request = _request_for(tenant, target, summary_request, translation)
            if d.provider_type in RELAYED:
                opened: Any = await _open_relay(engine, d, request, timeout)
            else:
                opened = await engine._open_once(d, request, timeout, call.request_id, created)
        except GatewayError:
            await plan.aclose()
            raise
        except Exception as exc:  # noqa: BLE001
            step = await plan.asend(_failure_from_exception(exc, d, timeout))
            continue
        call.deployment = d
        call.attempts.append(Attempt(d.public_id, "ok", "", 200, (time.perf_counter() - started) * 1000))
        await plan.aclose()
        break
    if isinstance(opened, _Relayed):
        relay = _relay(app, ctx, opened, send)
    else:
        relay = _translate(app, ctx, opened, translation.body, created, send)
    task = asyncio.ensure_future(relay)
    watch = asyncio.ensure_future(gw._wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if watch in done and not task.done():
            task.cancel()
            ctx.status, ctx.error_type = "partial", "client_disconnected"
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        else:
            task.result()
    finally:
        watch.cancel()
        opened.close()
        if isinstance(opened, _Relayed):
            call.usage = opened.watcher.usage or app._estimate(ctx, opened.watcher.text_chars)
        else:
            call.usage = opened.usage or app._estimate(ctx, opened.text_chars)


async def _start(ctx, send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [*gw.SSE_HEADERS, (b"x-request-id", ctx.request_id.encode()), *gw._model_header(ctx)]})
    ctx.headers_sent = True
    ctx.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)


async def _relay(app, ctx, opened: _Relayed, send) -> None:
    await _start(ctx, send)
    await send({"type": "http.response.body", "body": opened.first, "more_body": True})
    watcher = opened.watcher
    try:
        async for chunk in opened.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Exception as exc:  # noqa: BLE001
        failure = _failure_from_exception(exc, ctx.call.deployment, ctx.call.deployment.timeout)
        ctx.status, ctx.error_type = "partial", failure.kind
        error = {"type": "error", "code": failure.kind, "param": None, "sequence_number": watcher.events,
                 "message": f"The upstream stream failed after it started: {failure.message}"}
        await send({"type": "http.response.body", "body": door.event("error", error), "more_body": False})
        return
    if watcher.error is not None or watcher.terminal == "response.failed":
        ctx.status, ctx.error_type = "partial", "upstream_error"
    elif watcher.terminal is None:
        ctx.status, ctx.error_type = "partial", "truncated"
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _translate(app, ctx, opened, request: dict[str, Any], created: int, send) -> None:
    translator = door.ChatToResponsesStream(request, resp_id=door.response_id(ctx.request_id),
                                            model=opened.deployment.model_id, created=created)
    await _start(ctx, send)
    await send({"type": "http.response.body", "body": translator.start() + translator.feed(b"".join(opened.first)),
                "more_body": True})
    try:
        async for events in opened.events():
            out = translator.feed(b"".join(events))
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
    except UpstreamFailure as failure:
        ctx.status, ctx.error_type = "partial", failure.kind
        await send({"type": "http.response.body", "more_body": False,
                    "body": translator.fail(f"The upstream stream failed after it started: {failure.message}")})
        return
    usage = opened.usage or app._estimate(ctx, opened.text_chars)
    await send({"type": "http.response.body", "body": translator.finish(usage), "more_body": False})
