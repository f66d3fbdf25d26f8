"""Calling upstreams for one request: try the route's targets in order, retry what is worth
retrying, count failures toward shared cooldowns, and hand back an answer (or a stream) in
the OpenAI shape (or in a door's protocol, through the door's own call of one target). Protocol
details live in the adapters; this module never parses a wire format itself."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from django.conf import settings

from config import metrics
from gateway.deployments import AT_RPM, AT_TPM, RATE_LIMITED, USABLE, preorder, script_code
from gateway.errors import GatewayError
from gateway.routing import Route, Target, TenantConfig, apply_defaults
from gateway.state import Pick, seconds_to_next_minute
from gateway.tokens import Tokens
from gateway.upstream import RefusedAddress, Upstream, attempt_timeout
from providers.adapters.registry import ADAPTERS
from providers.adapters.types import (
    ChatResult,
    Deployment,
    StreamTranslator,
    UpstreamFailure,
    Usage,
    output_limit,
)
from providers.adapters.usage import usage_to_openai


def upstream_output_tokens(d: Deployment, request: dict[str, Any]) -> int:
    """The most output tokens ``d`` can produce for ``request`` (after defaults): the limit the
    adapter sends upstream (``output_limit``, or the protocol's required default), else the
    model's context length from the catalog, else GATEWAY_DEFAULT_OUTPUT_TOKENS; never more
    than the context length. What a budget reservation counts."""
    limit = output_limit(request)
    if limit is None:
        limit = ADAPTERS[d.provider_type].DEFAULT_MAX_TOKENS
    if limit is None:
        limit = d.context_length or settings.GATEWAY_DEFAULT_OUTPUT_TOKENS
    return min(limit, d.context_length) if d.context_length else limit


# A client error: the same request would fail on every target, so it goes back at once, with
# the upstream's status — unless it is of a class the route has fallbacks for: a prompt too
# long for the model (context_window) or refused by the provider's content policy
# (content_policy); another model may take it.
ERROR_CLASSES = frozenset({"context_window", "content_policy"})
CLIENT_FAULTS = frozenset({"bad_request", *ERROR_CLASSES})
# the error code a client sees for a failure kind, where OpenAI has a name for it
CLIENT_CODES = {"context_window": "context_length_exceeded", "content_policy": "content_policy_violation"}
MAX_RETRY_AFTER_COOLDOWN = 3600.0  # seconds: the longest an upstream's retry-after cools a deployment



@dataclass(slots=True)
class Attempt:
    deployment: str  # public id
    outcome: str  # ok or the failure kind
    message: str = ""
    status: int | None = None
    latency_ms: float = 0.0

@dataclass
class Call:
    """What the engine learns while serving one request (read by the ledger)."""

    request_id: str
    deployment: Deployment | None = None
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage | None = None
    taken: list[int] = field(default_factory=list)  # provider models it is counted in flight on
    stream: bool = False


def _failure_from_exception(exc: BaseException, deployment: Deployment, timeout: float) -> UpstreamFailure:
    name = deployment.provider_name
    if isinstance(exc, UpstreamFailure):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamFailure("timeout", f"{name} did not answer within {timeout:g} s.", retryable=True)
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, RefusedAddress):
        # The address policy, not the network: trying again cannot help.
        return UpstreamFailure("refused_address",
                               f"{name} was not contacted: {exc.os_error.message}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = (exc.os_error.strerror if getattr(exc, "os_error", None) and exc.os_error.strerror
                  else str(exc.os_error or exc))
        return UpstreamFailure("connection", f"{name} is unreachable ({reason}).", retryable=True)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
                        ConnectionResetError)):
        return UpstreamFailure("connection", f"{name} closed the connection mid-answer ({type(exc).__name__}).",
                               retryable=True)
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamFailure("connection", f"{name} request failed ({type(exc).__name__}: {exc}).", retryable=True)
    raise exc


def _backoff(attempt: int, failure: UpstreamFailure) -> float:
    if failure.retry_after is not None:
        return min(failure.retry_after, settings.GATEWAY_RETRY_AFTER_CAP)
    return min(0.05 * (2**attempt), 1.0)


def all_failed(route: Route, attempts: list[Attempt], failures: list[UpstreamFailure]) -> GatewayError:
    listing = "; ".join(f"{a.deployment}: {a.message}" for a in attempts if a.outcome != "ok")
    last = failures[-1] if failures else None
    if last is not None and all(f.kind in ("rate_limit", "quota") for f in failures):
        return GatewayError(429, f"Every target of '{route.requested}' is rate limited: {listing}",
                            type="rate_limit_error", code="upstream_rate_limited",
                            retry_after=last.retry_after or 1.0)
    if len(attempts) == 1 and last is not None:
        status = 504 if last.kind == "timeout" else 502
        return GatewayError(status, f"Upstream failed for '{route.requested}': {listing}", type="upstream_error",
                            code=last.kind)
    status = 504 if last is not None and all(f.kind == "timeout" for f in failures) else 502
    return GatewayError(status, f"All fallbacks failed for '{route.requested}': {listing}", type="upstream_error",
                        code="all_fallbacks_failed")


class Engine:
    def __init__(self, *, session: Upstream, state):
        self.session = session
        self.state = state
        self.tokens = Tokens(session)  # access tokens of credentials that mint them

    # --- target selection ----------------------------------------------------------------

    @staticmethod
    def order_targets(route: Route, order: tuple[tuple[int, int, int], ...]) -> list[Target]:
        """The usable targets in the order admission gave; when none is usable, none is tried:
        a 429 when some are at their rpm / tpm limit (free again next minute) or told to wait
        by their upstream's retry-after, else a 503 (all cooling down after failures)."""
        ready = [route.targets[i] for i, state, _ in order if state == USABLE]
        if ready:
            return ready
        waits = [(route.targets[i].deployment.public_id, wait) for i, state, wait in order if state == RATE_LIMITED]
        waits += [(route.targets[i].deployment.public_id, int(seconds_to_next_minute(time.time()) + 0.999))
                  for i, state, _ in order if state in (AT_RPM, AT_TPM)]
        if waits:
            wait = min(w for _, w in waits)
            raise GatewayError(
                429, f"Every usable deployment of '{route.requested}' ({', '.join(n for n, _ in waits)}) is at its "
                f"requests- or tokens-per-minute limit or was told by its upstream to wait; retry in {wait} s.",
                type="rate_limit_error", code="deployments_at_limit", retry_after=float(wait), usage_status="rejected",
            )
        names = ", ".join(t.deployment.public_id for t in route.targets)
        raise GatewayError(
            503, f"Every target of '{route.requested}' ({names}) is cooling down after repeated "
            f"failures; retry in up to {route.cooldown_seconds} s.",
            type="server_error", code="deployments_cooling_down", retry_after=float(route.cooldown_seconds),
        )

    @staticmethod
    def pick_of(route: Route, session: str, call: Call) -> tuple[list[int], Pick]:
        """The worker's preorder of ``route``'s deployments and what admission needs to order
        them (``session``: the request's, when the route keeps sessions on one deployment)."""
        session = session if route.affinity else ""
        pre = preorder(route.candidates, route.strategy, session)
        return pre, Pick(tuple(route.candidates[i] for i in pre), script_code(route.strategy, session), call.stream,
                         call.request_id)

    @staticmethod
    def ranked(route: Route, pre: list[int], order, call: Call) -> tuple[tuple[int, int, int], ...]:
        """Admission's order (of the preorder's indexes) as indexes of ``route.targets``; the
        first usable one, which admission counted, noted as taken."""
        ranked = tuple((pre[i], state, wait) for i, state, wait in order)
        first = next((i for i, state, _ in ranked if state == USABLE), None)
        if first is not None:
            call.taken.append(route.targets[first].deployment.provider_model_id)
        return ranked

    async def pick(self, tenant: TenantConfig, route: Route, call: Call, session: str = "") -> list[Target]:
        """Order ``route``'s targets outside admission (an error-class fallback): one more round
        trip, which counts the request against the first."""
        pre, pick = self.pick_of(route, session, call)
        order = await self.state.pick(tenant_id=tenant.tenant_id, pick=pick)
        return self.order_targets(route, self.ranked(route, pre, order, call))

    async def _take(self, tenant: TenantConfig, call: Call, d: Deployment) -> None:
        """Count the request against a deployment it falls back to, once."""
        if d.provider_model_id in call.taken:
            return
        call.taken.append(d.provider_model_id)
        await self.state.take(tenant_id=tenant.tenant_id, provider_model_id=d.provider_model_id,
                              request_id=call.request_id)

    async def _count_failure(self, tenant: TenantConfig, route: Route, deployment: Deployment) -> None:
        try:
            started = await self.state.record_failure(
                tenant_id=tenant.tenant_id, provider_model_id=deployment.provider_model_id,
                allowed_fails=route.allowed_fails, cooldown_seconds=route.cooldown_seconds,
            )
        except Exception:  # counting must never break serving
            return
        if started:
            metrics.cooldowns.labels(deployment.provider_name).inc()

    async def _plan(self, tenant: TenantConfig, route: Route, targets: list[Target], body: dict[str, Any], call: Call):
        """Yield (target, request body, timeout, attempt number) in retry / fallback order; the
        caller reports each failure back with ``asend``. A context-window or content-policy error
        goes to the route's fallbacks for that class at once, when it names some (each in its own
        order, one level deep); the route's other targets would refuse it too."""
        failures: list[UpstreamFailure] = []
        queue: list[tuple[Route, list[Target]]] = [(route, targets)]
        tried: set[str] = set()  # error classes whose fallbacks were queued
        while queue:
            current, chain = queue.pop(0)
            escalate = ""
            for target in chain:
                d = target.deployment
                retries = current.retries if current.retries is not None else d.max_retries
                timeout = current.timeout or d.timeout
                request = apply_defaults(body, tenant, target)
                await self._take(tenant, call, d)
                for attempt in range(retries + 1):
                    started = time.perf_counter()
                    failure = yield target, request, timeout
                    if failure is None:
                        return
                    call.attempts.append(Attempt(d.public_id, failure.kind, failure.message, failure.status,
                                                 (time.perf_counter() - started) * 1000))
                    failures.append(failure)
                    if failure.retryable:
                        await self._count_failure(tenant, current, d)
                    if failure.kind == "rate_limit" and failure.retry_after:
                        # The deployment said when to come back: every worker skips it till then,
                        # and this request goes to the next deployment, if there is one.
                        await self.state.cool(tenant_id=tenant.tenant_id, provider_model_id=d.provider_model_id,
                                              seconds=min(failure.retry_after, MAX_RETRY_AFTER_COOLDOWN))
                        if target is not chain[-1]:
                            break
                    if failure.kind in CLIENT_FAULTS:
                        kind = failure.kind
                        if kind in ERROR_CLASSES and kind not in tried and route.fallbacks(kind):
                            escalate = kind  # the other deployments would refuse it too
                            break
                        raise GatewayError(failure.status or 400, failure.message,
                                           code=CLIENT_CODES.get(kind, kind))
                    if not failure.retryable:
                        break
                    if attempt < retries:
                        await asyncio.sleep(_backoff(attempt, failure))
                if escalate:
                    break
            if escalate:
                tried.add(escalate)
                queue = []
                for fallback in route.fallbacks(escalate):
                    try:
                        queue.append((fallback, await self.pick(tenant, fallback, call)))
                    except GatewayError:  # every deployment of it cooling down or at its limit
                        continue
        last = failures[-1] if failures else None
        if last is not None and last.kind in ERROR_CLASSES:  # and no fallback could take it
            raise GatewayError(last.status or 400, last.message, code=CLIENT_CODES[last.kind])
        raise all_failed(route, call.attempts, failures)

    # --- non-streamed --------------------------------------------------------------------

    async def chat(self, tenant: TenantConfig, route: Route, targets: list[Target], body: dict[str, Any],
                   call: Call, once: "CallOnce | None" = None) -> ChatResult:
        """One answer from the first target that gives one. ``once`` calls one target (a door
        speaking another protocol than Chat Completions passes its own); by default a chat."""
        once = once or self.chat_once
        plan = self._plan(tenant, route, targets, body, call)
        step = await plan.__anext__()
        while True:
            target, request, timeout = step
            started = time.perf_counter()
            d = target.deployment
            try:
                d = await self.tokens.authorise(d)
                result = await once(d, request, timeout, call.request_id)
            except Exception as exc:  # noqa: BLE001 - classified, or re-raised when unknown
                failure = _failure_from_exception(exc, d, timeout)
                failure = self.tokens.refused(d, failure)
                step = await plan.asend(failure)
                continue
            call.deployment = target.deployment
            call.attempts.append(Attempt(target.deployment.public_id, "ok", "", 200,
                                         (time.perf_counter() - started) * 1000))
            call.usage = result.usage
            await plan.aclose()
            return result

    async def chat_once(self, d: Deployment, body: dict[str, Any], timeout: float, request_id: str) -> ChatResult:
        adapter = ADAPTERS[d.provider_type]
        if adapter.IN_PROCESS:
            return adapter.complete_chat(d, body, request_id=request_id)
        up = adapter.build_chat(d, body, stream=False)
        async with self.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                        timeout=attempt_timeout(timeout, stream=False)) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise adapter.parse_error(d, resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
        return adapter.parse_chat(d, data, request_id=request_id, request=body)

    async def embeddings(self, tenant: TenantConfig, route: Route, targets: list[Target], body: dict[str, Any],
                         call: Call) -> bytes:
        plan = self._plan(tenant, route, targets, body, call)
        step = await plan.__anext__()
        while True:
            target, request, timeout = step
            d = sent = target.deployment
            started = time.perf_counter()
            try:
                adapter = ADAPTERS[d.provider_type]
                if adapter.IN_PROCESS:
                    data, usage = adapter.embed(d, request)
                else:
                    sent = await self.tokens.authorise(d)
                    up = adapter.build_embeddings(sent, request)
                    async with self.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                                    timeout=attempt_timeout(timeout, stream=False)) as resp:
                        raw = await resp.read()
                        headers = {k.lower(): v for k, v in resp.headers.items()}
                        if resp.status != 200:
                            raise adapter.parse_error(d, resp.status, headers, raw)
                    data, usage = adapter.parse_embeddings(d, raw, request=request, headers=headers)
            except Exception as exc:  # noqa: BLE001
                failure = _failure_from_exception(exc, d, timeout)
                failure = self.tokens.refused(sent, failure)
                step = await plan.asend(failure)
                continue
            call.deployment = d
            call.usage = usage
            call.attempts.append(Attempt(d.public_id, "ok", "", 200, (time.perf_counter() - started) * 1000))
            await plan.aclose()
            return data

    # --- streamed ------------------------------------------------------------------------

    async def open_stream(self, tenant: TenantConfig, route: Route, targets: list[Target], body: dict[str, Any],
                          call: Call, opener: "OpenOnce | None" = None) -> "OpenStream":
        """Connect to the first target that produces a first event; failures before that
        fall back like non-streamed calls. ``opener`` opens one target (a door's own; by
        default a chat stream)."""
        opener = opener or self.open_once
        plan = self._plan(tenant, route, targets, body, call)
        step = await plan.__anext__()
        created = int(time.time())
        while True:
            target, request, timeout = step
            d = sent = target.deployment
            started = time.perf_counter()
            try:
                sent = await self.tokens.authorise(d)
                opened = await opener(sent, request, timeout, call.request_id, created)
            except Exception as exc:  # noqa: BLE001
                failure = _failure_from_exception(exc, d, timeout)
                failure = self.tokens.refused(sent, failure)
                step = await plan.asend(failure)
                continue
            call.deployment = d
            call.attempts.append(Attempt(d.public_id, "ok", "", 200, (time.perf_counter() - started) * 1000))
            await plan.aclose()
            return opened

    async def open_once(self, d: Deployment, body: dict[str, Any], timeout: float, request_id: str,
                         created: int) -> "OpenStream":
        adapter = ADAPTERS[d.provider_type]
        if adapter.IN_PROCESS:
            events, usage = adapter.stream_chat(d, body, request_id=request_id, created=created)
            return OpenStream(d, first=events, rest=None, response=None, translator=None, in_process_usage=usage)
        up = adapter.build_chat(d, body, stream=True)
        resp = await self.session.request(up.method, up.url, data=up.body, headers=up.headers,
                                          timeout=attempt_timeout(timeout, stream=True))
        try:
            if resp.status != 200:
                data = await resp.read()
                raise adapter.parse_error(d, resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
            translator = adapter.stream_translator(d, request_id=request_id, created=created, request=body)
            chunks = resp.content.iter_any()
            async for chunk in chunks:
                events = translator.feed(chunk)
                if events:
                    return OpenStream(d, first=events, rest=chunks, response=resp, translator=translator)
            events = translator.finish()
            if not events:
                raise UpstreamFailure("bad_response", f"{d.provider_name} ended the stream without an answer.",
                                      retryable=True)
            return OpenStream(d, first=events, rest=None, response=resp, translator=translator)
        except BaseException:
            resp.close()
            raise


class OpenStream:
    """A stream whose first events are in hand; ``events()`` yields the rest, already in the
    OpenAI chunk shape, and ``usage`` / ``text_chars`` tell what was relayed."""

    def __init__(self, deployment: Deployment, *, first: list[bytes], rest: AsyncIterator[bytes] | None,
                 response: aiohttp.ClientResponse | None, translator: StreamTranslator | None,
                 in_process_usage: Usage | None = None):
        self.deployment = deployment
        self.first = first
        self._rest = rest
        self._response = response
        self._translator = translator
        self._in_process_usage = in_process_usage

    async def events(self) -> AsyncIterator[list[bytes]]:
        if self._rest is None and self._translator is None:
            return
        try:
            if self._rest is not None:
                async for chunk in self._rest:
                    out = self._translator.feed(chunk)
                    if out:
                        yield out
            out = self._translator.finish()
            if out:
                yield out
        except Exception as exc:  # noqa: BLE001
            raise _failure_from_exception(exc, self.deployment, self.deployment.timeout) from exc

    @property
    def usage(self) -> Usage | None:
        if self._in_process_usage is not None:
            return self._in_process_usage
        return self._translator.usage if self._translator is not None else None

    @property
    def text_chars(self) -> int:
        return self._translator.text_chars if self._translator is not None else 0

    @property
    def answered(self) -> bool:
        """Whether the client has had the stream's last event: never before the door's own end
        (a chat stream ends with the ``[DONE]`` the door writes)."""
        return False

    def close(self) -> None:
        if self._response is not None:
            self._response.close()


# How a door calls one target: (deployment, request body, timeout, request id) -> an answer; and
# (…, created) -> a stream whose first events are in hand.
CallOnce = Callable[[Deployment, dict[str, Any], float, str], Awaitable[ChatResult]]
OpenOnce = Callable[[Deployment, dict[str, Any], float, str, int], Awaitable["OpenStream"]]


def usage_chunk(*, request_id: str, created: int, model: str, usage: Usage) -> bytes:
    payload = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_to_openai(usage),
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"
