"""The Anthropic Messages door: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

A request goes through what every door shares (key auth, model resolution, limits, budget
reservation of its worst case — ``max_tokens`` —, the response cache for non-streamed answers,
fallbacks and cooldowns, metrics, the log line and one ledger row with ``api`` = messages).
Each target is called in its own protocol: an Anthropic provider gets the body as it came (its
model id put in) with the client's ``anthropic-version`` / ``anthropic-beta``, and its answer or
stream bytes go back unchanged while the usage is read out of them; every other provider gets
the request translated to Chat Completions and its answer or stream translated back
(providers/adapters/messages_door.py). Errors are in Anthropic's shape."""

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from gateway.context import (
    END_USER_HEADER,
    SSE_HEADERS,
    Ctx,
    client_address,
    header,
    model_header,
    new_request_id,
    parse_json,
    read_body,
    send_json,
)
from gateway.engine import CLIENT_CODES, OpenStream
from gateway.errors import GatewayError, bad_request, unauthorized
from gateway.upstream import attempt_timeout
from providers.adapters.anthropic import parse_error as anthropic_error
from providers.adapters.failures import truncated_stream
from providers.adapters.messages_door import (
    PASSED_HEADERS,
    PING,
    AnthropicStreamTap,
    MessagesStreamTranslator,
    chat_request_from_messages,
    client_ids,
    count_tokens_estimate,
    error_event,
    message_from_chat,
    messages_request_problem,
    relay_request,
    relayed_usage,
    returned_headers,
    thinking_wanted,
)
from providers.adapters.types import ChatResult, Deployment, UpstreamFailure, Usage
from providers.models import ModelMode, ProviderType

PING_SECONDS = 10.0  # silence after which a stream gets a ping event
MISSING_KEY = ("Missing API key: send 'x-api-key: <your Tollgate key>' (the anthropic SDK's api_key, Claude "
               "Code's ANTHROPIC_API_KEY) or 'Authorization: Bearer <key>'.")


# Provider types whose Chat Completions take ``reasoning_effort`` (Ollama's adapter and mock drop it).
EFFORT_TYPES = frozenset({ProviderType.OPENAI, ProviderType.OPENAI_COMPATIBLE, ProviderType.OPENROUTER,
                          ProviderType.AZURE, ProviderType.BEDROCK})
NO_TOP_K = frozenset({ProviderType.OPENAI, ProviderType.AZURE})  # they refuse top_k
# Their adapters take cache_control markers (Bedrock maps them to cachePoint; OpenRouter reads them on
# content parts, for Claude and Gemini) ...
CACHE_TYPES = frozenset({ProviderType.BEDROCK, ProviderType.OPENROUTER})
# ... and signed thinking blocks back.
THOUGHT_TYPES = frozenset({ProviderType.BEDROCK})


def _chat_request(d: Deployment, request: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions request for a non-Anthropic target: ``top_k`` left out for OpenAI
    and Azure (they refuse it), ``thinking`` as ``reasoning_effort`` where the upstream takes it,
    ``cache_control`` markers and signed thinking blocks kept where the adapter maps them."""
    return chat_request_from_messages(request, top_k=d.provider_type not in NO_TOP_K,
                                      effort=d.provider_type in EFFORT_TYPES, cache=d.provider_type in CACHE_TYPES,
                                      thoughts=d.provider_type in THOUGHT_TYPES)


class _Targets:
    """How the Messages door calls one target (the engine's ``once`` / ``opener``)."""

    def __init__(self, engine, body: dict[str, Any], raw: bytes, headers: dict[str, str], message_id: str,
                 prompt_tokens: int = 0, returned: list[tuple[bytes, bytes]] | None = None):
        self.engine = engine
        # where an Anthropic answer's rate-limit and id headers go, for the client (the ctx's extra headers)
        self.returned = returned if returned is not None else []
        self.prompt_tokens = prompt_tokens  # the request's estimate, for a translated stream's message_start
        self.body = body
        self.raw = raw
        self.headers = headers
        self.message_id = message_id

    def _relay(self, d: Deployment, request: dict[str, Any]):
        # The bytes as they came, unless defaults were filled in (the engine then hands a copy).
        return relay_request(d, request, self.raw if request is self.body else None, headers=self.headers)

    async def complete(self, d: Deployment, request: dict[str, Any], timeout: float, request_id: str) -> ChatResult:
        if d.provider_type == ProviderType.ANTHROPIC:
            up = self._relay(d, request)
            async with self.engine.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                                   timeout=attempt_timeout(timeout, stream=False)) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise anthropic_error(d, resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
                usage = relayed_usage(d, data)
                self.returned.extend(returned_headers(resp.headers))
            return ChatResult(body=data, usage=usage)
        chat = _chat_request(d, request)
        result = await self.engine.chat_once(d, chat, timeout, request_id)
        message = message_from_chat(orjson.loads(result.body), result.usage, message_id=self.message_id,
                                    thinking=thinking_wanted(request))
        return ChatResult(body=orjson.dumps(message), usage=result.usage)

    async def open(self, d: Deployment, request: dict[str, Any], timeout: float, request_id: str,
                   created: int) -> "DoorStream":
        if d.provider_type == ProviderType.ANTHROPIC:
            up = self._relay(d, request)
            resp = await self.engine.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                                     timeout=attempt_timeout(timeout, stream=True))
            try:
                if resp.status != 200:
                    data = await resp.read()
                    raise anthropic_error(d, resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
                tap = AnthropicStreamTap(d)
                chunks = resp.content.iter_any()
                async for chunk in chunks:
                    first = tap.feed(chunk)
                    if first:
                        self.returned.extend(returned_headers(resp.headers))
                        opened = OpenStream(d, first=first, rest=chunks, response=resp, translator=tap)
                        return DoorStream(opened, tap=tap)
                first = tap.finish()  # raises when the upstream never started
                self.returned.extend(returned_headers(resp.headers))
                return DoorStream(OpenStream(d, first=first, rest=None, response=resp, translator=tap), tap=tap)
            except BaseException:
                resp.close()
                raise
        chat = _chat_request(d, request)
        chat["stream"] = True
        inner = await self.engine.open_once(d, chat, timeout, request_id, created)
        translator = MessagesStreamTranslator(message_id=self.message_id, model=d.model_id,
                                              thinking=thinking_wanted(request), input_tokens=self.prompt_tokens)
        return DoorStream(inner, translator=translator)


class DoorStream:
    """An open stream as the Messages door relays it (the interface of ``OpenStream``):
    an Anthropic upstream's bytes passed on (``tap``), or a chat stream translated event by
    event (``translator``). ``tail(usage)`` is what ends it."""

    def __init__(self, inner: OpenStream, *, tap: AnthropicStreamTap | None = None,
                 translator: MessagesStreamTranslator | None = None):
        self.inner = inner
        self.deployment = inner.deployment
        self.tap = tap
        self.translator = translator
        self.first = translator.feed(inner.first) if translator is not None else inner.first

    async def events(self):
        async for events in self.inner.events():
            out = self.translator.feed(events) if self.translator is not None else events
            if out:
                yield out

    @property
    def between_events(self) -> bool:
        """Whether a ``ping`` may be sent now: always between translated events; in a relayed
        stream only where the upstream's bytes sent so far end an event."""
        return self.tap is None or self.tap.between_events

    def tail(self, usage: Usage) -> tuple[bytes, UpstreamFailure | None]:
        """The last bytes to send and, when the answer is incomplete, why."""
        if self.translator is not None:
            return b"".join(self.translator.finish(usage)), None
        if self.tap.failure is not None:  # the upstream's error event went out with the rest
            return b"", self.tap.failure
        if not self.tap.complete:
            failure = truncated_stream(self.deployment)
            return error_event("api_error", f"The upstream stream failed after it started: {failure.message}"), failure
        return b"", None

    @property
    def usage(self) -> Usage | None:
        return self.inner.usage

    @property
    def text_chars(self) -> int:
        return self.inner.text_chars

    @property
    def answered(self) -> bool:
        """Whether an Anthropic upstream's own ``message_stop`` went out."""
        return self.tap is not None and self.tap.complete and self.tap.failure is None

    def close(self) -> None:
        self.inner.close()


async def _next(events) -> list[bytes] | None:
    """The next events of a stream; None at its end."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


class MessagesDoor:
    """``POST /v1/messages`` and ``/v1/messages/count_tokens``, mixed into the gateway app
    (gateway/app.py), whose shared steps it uses."""

    async def _messages_principal(self, scope):
        """The caller's key from ``x-api-key`` (what the Anthropic SDK and Claude Code send) or
        ``Authorization: Bearer``."""
        key = header(scope, b"x-api-key")
        authorization = f"Bearer {key.strip()}" if key else header(scope, b"authorization")
        if not authorization:
            await self.state.auth_failed(client_address(scope))
            raise unauthorized(MISSING_KEY)
        return await self._principal(scope, authorization)

    async def anthropic_models(self, scope, send) -> None:
        """GET /v1/models in Anthropic's shape: one page with every id this key may send."""
        request_id = new_request_id()
        try:
            key, tenant = await self._current(scope, self._messages_principal)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            data = [{"type": "model", "id": model_id, "display_name": model_id, "created_at": created}
                    for model_id, _ in tenant.model_list(key.allowed_models, project_id=key.project_id)]
            page = {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None}
            await send_json(send, 200, orjson.dumps(page), request_id)
        except GatewayError as exc:
            await self._respond_error(send, exc, request_id, anthropic=True)

    async def messages(self, scope, receive, send) -> None:
        ctx = Ctx(request_id=new_request_id(), started=time.perf_counter(), api="messages")
        send = self._sealing(ctx, send)
        tenant = None
        try:
            ctx.key, tenant = await self._messages_principal(scope)
            raw = await read_body(receive)
            body = parse_json(raw)
            ctx.prompt_bytes = ctx.estimated_prompt_chars = len(raw)
            problem = messages_request_problem(body)
            if problem is not None:
                raise bad_request(problem[1], param=problem[0])
            ctx.stream = body.get("stream") is True
            self._note_client_fields(ctx, scope, body)
            end_user, session = client_ids(body)
            if not header(scope, END_USER_HEADER):
                ctx.end_user = end_user
            if not ctx.conversation_id:  # Claude Code names its session
                ctx.conversation_id = session or (header(scope, b"x-claude-code-session-id") or "")[:128]
            tenant, route, targets = await self._admitted(ctx, tenant, body, ModelMode.CHAT,
                                                          lambda: self._messages_principal(scope))
            passed = {name: value for name in PASSED_HEADERS if (value := header(scope, name.encode()))}
            door = _Targets(self.engine, body, raw, passed, f"msg_{ctx.request_id.removeprefix('req_')}",
                            prompt_tokens=self._estimate(ctx, 0).input_tokens, returned=ctx.extra_headers)
            if ctx.stream:
                opened = await self.engine.open_stream(tenant, route, targets, body, ctx.call, door.open)
                await self._pump(ctx, opened, self._relay_messages(ctx, opened, send), receive)
            else:
                await self._complete(ctx, tenant, route, targets, body, scope, send, door.complete)
        except GatewayError as exc:
            ctx.status, ctx.error_type = exc.usage_status, exc.code or exc.type
            if not ctx.headers_sent:
                await self._respond_error(send, exc, ctx.request_id, ctx.extra_headers, anthropic=True)
        finally:
            self._record(ctx, tenant)

    async def _relay_messages(self, ctx: Ctx, opened: DoorStream, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, (b"x-request-id", ctx.request_id.encode()), *model_header(ctx)]})
        ctx.headers_sent = True
        ctx.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)
        await send({"type": "http.response.body", "body": b"".join(opened.first), "more_body": True})
        events = opened.events()
        following = None
        try:
            while True:  # the next events, and a ping after PING_SECONDS of silence (clients give up)
                following = following or asyncio.ensure_future(_next(events))
                done, _ = await asyncio.wait((following,), timeout=PING_SECONDS)
                if not done:
                    if opened.between_events:
                        await send({"type": "http.response.body", "body": PING, "more_body": True})
                    continue
                out, following = following.result(), None
                if out is None:
                    break
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
        except UpstreamFailure as failure:
            ctx.status, ctx.error_type = "partial", failure.kind
            message = f"The upstream stream failed after it started: {failure.message}"
            await send({"type": "http.response.body", "body": error_event("api_error", message), "more_body": False})
            return
        finally:
            if following is not None and not following.done():
                following.cancel()
        tail, failure = opened.tail(opened.usage or self._estimate(ctx, opened.text_chars))
        if failure is not None:
            ctx.status, ctx.error_type = "partial", failure.kind
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def count_tokens(self, scope, receive, send) -> None:
        """Counted by the route's first Anthropic target; estimated (and marked
        ``x-tollgate-estimated: true``) when the first target is of another kind, or when the
        Anthropic upstream cannot be reached or fails (5xx; its 4xx goes back as it is). Not a
        billed request: no limits counted, no ledger row."""
        request_id = new_request_id()
        try:
            key, tenant = await self._messages_principal(scope)
            raw = await read_body(receive)
            body = parse_json(raw)
            problem = messages_request_problem({"max_tokens": 1, **body})
            if problem is not None:
                raise bad_request(problem[1], param=problem[0])
            try:
                route = tenant.resolve(body.get("model"), mode=ModelMode.CHAT, allowed=key.allowed_models,
                                       project_id=key.project_id)
            except GatewayError:
                if await self.state.versions(tenant.tenant_id) == tenant.version:
                    raise
                self.configs.drop(tenant.tenant_id)  # a stale table: read it again, once
                key, tenant = await self._messages_principal(scope)
                route = tenant.resolve(body.get("model"), mode=ModelMode.CHAT, allowed=key.allowed_models,
                                       project_id=key.project_id)
            d = route.targets[0].deployment
            data = None
            if d.provider_type == ProviderType.ANTHROPIC:
                passed = {name: value for name in PASSED_HEADERS if (value := header(scope, name.encode()))}
                up = relay_request(d, body, raw, headers=passed, path="/v1/messages/count_tokens")
                try:
                    async with self.engine.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                                           timeout=attempt_timeout(d.timeout, stream=False)) as resp:
                        data = await resp.read()
                        status, headers = resp.status, {k.lower(): v for k, v in resp.headers.items()}
                except (TimeoutError, aiohttp.ClientError):
                    data = None  # unreachable: estimated below
                else:
                    if 400 <= status < 500:  # the client's to fix: its words go back
                        failure = anthropic_error(d, status, headers, data)
                        raise GatewayError(status, failure.message, code=CLIENT_CODES.get(failure.kind, failure.kind))
                    if status != 200:
                        data = None  # the upstream failed (5xx): estimated below
                extra = [(b"x-tollgate-model", d.public_id.encode())]
            if data is None:
                data = orjson.dumps({"input_tokens": count_tokens_estimate(body)})
                extra = [(b"x-tollgate-model", d.public_id.encode()), (b"x-tollgate-estimated", b"true")]
            await send_json(send, 200, data, request_id, extra)
        except GatewayError as exc:
            await self._respond_error(send, exc, request_id, anthropic=True)
