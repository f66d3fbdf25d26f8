"""The OpenAI Responses door: ``POST /v1/responses``.

A request goes through what every door shares (key auth, model resolution, limits, budget
reservation of its worst case — ``max_output_tokens`` —, fallbacks and cooldowns, metrics, the
log line and one ledger row with ``api`` = responses). Each target is called in its own
protocol: an OpenAI provider gets the request relayed to its own ``/v1/responses`` (server-side
state and hosted tools work there) and its answer or stream bytes go back unchanged while the
usage is read out of them; every other provider gets the request translated to Chat
Completions and its answer or stream translated back (providers/adapters/responses_door.py).
A fallback may cross that line. Errors are in OpenAI's shape."""

import time
from typing import Any

from core.errors import InvalidInput
from gateway.context import SSE_HEADERS, Ctx, model_header, new_request_id, read_json
from gateway.engine import OpenStream
from gateway.errors import GatewayError, bad_request
from gateway.routing import PARAMS
from gateway.upstream import attempt_timeout
from providers.adapters import responses_door as door
from providers.adapters.registry import ADAPTERS
from providers.adapters.types import ChatResult, Deployment, UpstreamFailure, Usage
from providers.models import ModelMode, ProviderType

ANSWERED = ("response.completed", "response.incomplete")  # the terminal events of a whole answer

# Provider types that speak the Responses API themselves (Azure at /openai/v1/responses).
RELAYED = frozenset({ProviderType.OPENAI, ProviderType.AZURE})


class _Targets:
    """How the Responses door calls one target (the engine's ``once`` / ``opener``). The engine
    hands each call the request summary with the defaults of that target filled in."""

    def __init__(self, engine, body: dict[str, Any], resp_id: str):
        self.engine = engine
        self.body = body
        self.resp_id = resp_id
        self._chat: dict[str, Any] | None = None
        self._error: InvalidInput | None = None

    def chat(self, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """The request's Chat Completions form (made once, when a target needs it), with the
        defaults ``summary`` was given; a 400 naming the field when it cannot be translated."""
        if self._chat is None and self._error is None:
            try:
                self._chat = door.chat_request(self.body)
            except InvalidInput as exc:
                self._error = exc
        if self._error is not None:
            raise bad_request(self._error.message, param=self._error.field)
        chat = self._chat
        filled = {p: summary[p] for p in PARAMS if summary and summary.get(p) is not None and chat.get(p) is None}
        return {**chat, **filled} if filled else chat

    async def complete(self, d: Deployment, summary: dict[str, Any], timeout: float, request_id: str) -> ChatResult:
        if d.provider_type in RELAYED:
            up = door.build_relay(d, door.relay_request(self.body, summary), stream=False)
            async with self.engine.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                                   timeout=attempt_timeout(timeout, stream=False)) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise ADAPTERS[d.provider_type].parse_error(
                        d, resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
            return ChatResult(body=data, usage=door.relayed_usage(d, data))
        result = await self.engine.chat_once(d, self.chat(summary), timeout, request_id)
        return ChatResult(body=door.response_from_chat(result.body, result.usage, request=self.body,
                                                       resp_id=self.resp_id), usage=result.usage)

    async def open(self, d: Deployment, summary: dict[str, Any], timeout: float, request_id: str,
                   created: int) -> "ResponsesStream":
        if d.provider_type in RELAYED:
            up = door.build_relay(d, door.relay_request(self.body, summary), stream=True)
            resp = await self.engine.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                                     timeout=attempt_timeout(timeout, stream=True))
            try:
                if resp.status != 200:
                    data = await resp.read()
                    raise ADAPTERS[d.provider_type].parse_error(
                        d, resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
                watcher = door.RelayWatcher()
                chunks = resp.content.iter_any()
                async for chunk in chunks:
                    if chunk:
                        inner = OpenStream(d, first=watcher.feed(chunk), rest=chunks, response=resp,
                                           translator=watcher)
                        return ResponsesStream(inner, watcher=watcher)
                raise UpstreamFailure("bad_response", f"{d.provider_name} ended the stream without an answer.",
                                      retryable=True)
            except BaseException:
                resp.close()
                raise
        chat = self.chat(summary)
        inner = await self.engine.open_once(d, {**chat, "stream": True}, timeout, request_id, created)
        translator = door.ChatToResponsesStream(self.body, resp_id=self.resp_id, model=d.model_id, created=created)
        return ResponsesStream(inner, translator=translator)


class ResponsesStream:
    """An open stream as the Responses door relays it (the interface of ``OpenStream``): an
    OpenAI upstream's bytes passed on (``watcher`` reads the usage), or a chat stream
    translated into Responses events (``translator``). ``tail(usage)`` is what ends it."""

    def __init__(self, inner: OpenStream, *, watcher: door.RelayWatcher | None = None,
                 translator: door.ChatToResponsesStream | None = None):
        self.inner = inner
        self.deployment = inner.deployment
        self.watcher = watcher
        self.translator = translator
        if translator is not None:
            self.first = [translator.start() + translator.feed(b"".join(inner.first))]
        else:
            self.first = inner.first

    async def events(self):
        async for events in self.inner.events():
            out = self.translator.feed(b"".join(events)) if self.translator is not None else b"".join(events)
            if out:
                yield out

    def tail(self, usage: Usage) -> tuple[bytes, UpstreamFailure | None]:
        """The last bytes to send and, when the answer is incomplete, why."""
        if self.translator is not None:
            return self.translator.finish(usage), None
        watcher = self.watcher
        if watcher.error is not None or watcher.terminal == "response.failed":  # it went out with the rest
            return b"", UpstreamFailure("server_error", watcher.error or "the response failed")
        if watcher.terminal is None:
            failure = UpstreamFailure("connection", f"{self.deployment.provider_name}'s stream ended before the "
                                      "answer was complete.", retryable=True)
            return self.failed(failure), failure
        return b"", None

    def failed(self, failure: UpstreamFailure) -> bytes:
        """The event that ends a stream broken after it started: ``response.failed`` when we
        write the events, an ``error`` event after an upstream's own."""
        message = f"The upstream stream failed after it started: {failure.message}"
        if self.translator is not None:
            return self.translator.fail(message)
        return door.event("error", {"type": "error", "code": failure.kind, "message": message, "param": None,
                                    "sequence_number": self.watcher.events})

    @property
    def usage(self) -> Usage | None:
        return self.inner.usage

    @property
    def text_chars(self) -> int:
        return self.inner.text_chars

    @property
    def answered(self) -> bool:
        """Whether an upstream's own ``response.completed`` (or ``.incomplete``) went out."""
        watcher = self.watcher
        return watcher is not None and watcher.error is None and watcher.terminal in ANSWERED

    def close(self) -> None:
        self.inner.close()


class ResponsesDoor:
    """``POST /v1/responses``, mixed into the gateway app (gateway/app.py), whose shared steps
    it uses."""

    async def responses(self, scope, receive, send) -> None:
        ctx = Ctx(request_id=new_request_id(), started=time.perf_counter(), api="responses")
        send = self._sealing(ctx, send)
        tenant = None
        try:
            ctx.key, tenant = await self._principal(scope)
            body, ctx.prompt_bytes = await read_json(scope, receive)
            try:
                door.check_request(body)
            except InvalidInput as exc:
                raise bad_request(exc.message, param=exc.field) from None
            ctx.stream = body.get("stream") is True
            ctx.estimated_prompt_chars = ctx.prompt_bytes
            summary = door.request_summary(body)
            self._note_client_fields(ctx, scope, summary)
            tenant, route, targets = await self._admitted(ctx, tenant, summary, ModelMode.CHAT,
                                                          lambda: self._principal(scope))
            targets_of = _Targets(self.engine, body, door.response_id(ctx.request_id))
            if not any(t.deployment.provider_type in RELAYED for t in targets):
                targets_of.chat()  # a request that cannot be translated fails now, naming the field
            if ctx.stream:
                opened = await self.engine.open_stream(tenant, route, targets, summary, ctx.call, targets_of.open)
                await self._pump(ctx, opened, self._relay_responses(ctx, opened, send), receive)
            else:
                await self._complete(ctx, tenant, route, targets, summary, scope, send, targets_of.complete,
                                     cache_body=body)
        except GatewayError as exc:
            ctx.status, ctx.error_type = exc.usage_status, exc.code or exc.type
            if not ctx.headers_sent:
                await self._respond_error(send, exc, ctx.request_id, ctx.extra_headers)
        finally:
            self._record(ctx, tenant)

    async def _relay_responses(self, ctx: Ctx, opened: ResponsesStream, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, (b"x-request-id", ctx.request_id.encode()), *model_header(ctx)]})
        ctx.headers_sent = True
        ctx.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)
        await send({"type": "http.response.body", "body": b"".join(opened.first), "more_body": True})
        try:
            async for out in opened.events():
                await send({"type": "http.response.body", "body": out, "more_body": True})
        except UpstreamFailure as failure:
            ctx.status, ctx.error_type = "partial", failure.kind
            await send({"type": "http.response.body", "body": opened.failed(failure), "more_body": False})
            return
        tail, failure = opened.tail(opened.usage or self._estimate(ctx, opened.text_chars))
        if failure is not None:
            ctx.status, ctx.error_type = "partial", failure.kind
        await send({"type": "http.response.body", "body": tail, "more_body": False})

