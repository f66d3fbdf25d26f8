"""The /v1 data plane as a plain ASGI application.

Django's request stack costs about six times a bare ASGI route (measured with
bench/gateway.py), so the hot path skips it: this app parses, authenticates, routes, admits,
relays and accounts on its own, and touches the database only through short-lived caches and
the batched usage writer. Everything else on the site is Django (config/asgi.py)."""

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings

from billing import spend
from billing.models import BudgetScope
from billing.periods import period_for
from billing.records import UsageRecord, usage_record_build
from billing.writer import UsageWriter
from config import metrics
from config.bodylimit import CLOSE
from gateway import scopes
from gateway.auth import KeyCache, KeyInfo
from gateway.collector import collector_tune
from gateway.context import (
    DONE,
    END_USER_HEADER,
    SSE_HEADERS,
    Ctx,
    client_address,
    header,
    model_header,
    new_request_id,
    read_json,
    send_json,
    wait_disconnect,
)
from gateway.db import close_db, run_db
from gateway.deployments import Ended, Tally
from gateway.engine import Call, Engine, OpenStream, upstream_output_tokens, usage_chunk
from gateway.errors import GatewayError, bad_request, rate_limited
from gateway.messages import MessagesDoor
from gateway.responses import ResponsesDoor
from gateway.routing import ConfigCache, Route, TenantConfig, apply_defaults
from gateway.state import NO_BUDGETS, Admission, StoreUnavailable, shared_state
from gateway.upstream import new_session
from providers.adapters.types import Deployment, UpstreamFailure, Usage
from providers.adapters.usage import estimate_tokens
from providers.models import ModelMode

log = logging.getLogger("tollgate.gateway")
request_log = logging.getLogger("tollgate.requests")

# The doors: path -> (method, handler method name). Paths are matched without a trailing slash
# too; a query string (Claude Code's ?beta=true) is not part of the ASGI path.
ROUTES: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("POST", "chat"),
    "/v1/responses": ("POST", "responses"),  # gateway/responses.py
    "/v1/embeddings": ("POST", "embeddings"),
    "/v1/models": ("GET", "models"),
    "/v1/messages": ("POST", "messages"),  # gateway/messages.py
    "/v1/messages/count_tokens": ("POST", "count_tokens"),
}
ANTHROPIC_PATHS = "/v1/messages"  # paths under it answer errors in Anthropic's shape
ENDPOINTS = ", ".join(f"{method} {path}" for path, (method, _) in ROUTES.items())
OUTAGE_VERSION = ("redis-unreachable", "redis-unreachable")  # see GatewayApp._versions


@dataclass(slots=True)
class Asked:
    """What one admission asked for: the limits (gateway/scopes.py), the budget scopes, the
    deployments' preorder and the request's worst-case tokens."""

    limits: scopes.Plan
    budgets: list[spend.ScopePlan]
    pre: list[int]
    worst_tokens: int


class GatewayApp(MessagesDoor, ResponsesDoor):
    """The data plane: the Chat Completions, embeddings and models endpoints here, the other
    doors mixed in (one module per protocol), all through the same steps."""

    def __init__(self):
        self.keys = KeyCache()
        self.configs = ConfigCache()
        self.state = None
        self.engine: Engine | None = None
        self.usage: UsageWriter | None = None
        self.tally: Tally | None = None  # ended requests' deployment traffic, released in batches
        self._session = None
        self._ready = asyncio.Lock()
        self.draining = False
        self.log_requests = settings.GATEWAY_REQUEST_LOG
        self._rebuilding: dict[tuple, asyncio.Future] = {}  # counters being rebuilt -> that rebuild

    # --- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        async with self._ready:
            if self.engine is not None:
                return
            self.state = shared_state()
            self._session = new_session()
            self.engine = Engine(session=self._session, state=self.state)
            self.usage = UsageWriter(self.state, run_db=run_db)
            self.usage.start()
            self.tally = Tally(self.state)
            self.tally.start()
            collector_tune()  # last: what start-up made is frozen

    async def shutdown(self) -> None:
        self.draining = True
        if self.tally is not None:
            await self.tally.close()
        if self.usage is not None:
            await self.usage.close()
        if self._session is not None:
            await self._session.close()
        if self.state is not None:
            await self.state.close()
        await close_db()
        self.engine = None

    async def open_private(self) -> None:
        """Start an app of its own for one-off requests served outside the data plane's event
        loop (POST /api/test/llm): its own Redis client, HTTP client and ledger writer, no
        background tasks. ``close_private`` writes its rows and settles them."""
        self.state = shared_state()
        self._session = new_session()
        self.engine = Engine(session=self._session, state=self.state)
        self.usage = UsageWriter(self.state, run_db=run_db)
        self.tally = Tally(self.state)

    async def close_private(self) -> None:
        try:
            await self.usage.flush()
            await self.tally.flush()
        finally:
            await self._session.close()
            await self.state.close()
            self.engine = None

    async def serve_once(self, *, key: KeyInfo, body: dict[str, Any], request_id: str,
                         end_user: str = "") -> tuple[Ctx, Any]:
        """One non-streamed chat for an already authenticated caller, through the same
        admission (limits, budgets), routing, recording and settlement as /v1. Returns the
        request's context and the engine's result; GatewayError when it cannot be served (the
        request is recorded either way)."""
        ctx = Ctx(request_id=request_id, started=time.perf_counter(), key=key, end_user=end_user)
        tenant: TenantConfig | None = None

        async def principal() -> tuple[KeyInfo, TenantConfig]:
            return key, await self._tenant(key.tenant_id)

        try:
            tenant = await self._tenant(key.tenant_id)
            ctx.prompt_bytes = ctx.estimated_prompt_chars = len(orjson.dumps(body))
            tenant, route, targets = await self._admitted(ctx, tenant, body, ModelMode.CHAT, principal)
            return ctx, await self.engine.chat(tenant, route, targets, body, ctx.call)
        except GatewayError as exc:
            ctx.status, ctx.error_type = exc.usage_status, exc.code or exc.type
            raise
        finally:
            self._record(ctx, tenant)

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.engine is None:  # a server without lifespan support
            await self.startup()
        path, method = scope["path"], scope["method"]
        route = ROUTES.get(path) or ROUTES.get(path.rstrip("/"))
        if route is None:
            await self._respond_error(send, GatewayError(
                404, f"Unknown endpoint {path}: this gateway serves {ENDPOINTS}.", code="unknown_url"),
                new_request_id(), anthropic=path.startswith(ANTHROPIC_PATHS))
        elif method != route[0]:
            await self._respond_error(send, GatewayError(405, f"Use {route[0]} on {path}.", code="method_not_allowed"),
                                      new_request_id(), anthropic=path.startswith(ANTHROPIC_PATHS))
        else:
            await getattr(self, route[1])(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- endpoints -----------------------------------------------------------------------

    async def models(self, scope, receive, send) -> None:
        """The ids this key may send, in OpenAI's list shape; in Anthropic's when the client
        sends ``anthropic-version`` (the anthropic SDK, Claude Code's model discovery)."""
        if header(scope, b"anthropic-version"):
            await self.anthropic_models(scope, send)
            return
        request_id = new_request_id()
        try:
            key, tenant = await self._current(scope, self._principal)
            created = int(time.time())
            data = [{"id": model_id, "object": "model", "created": created, "owned_by": owner}
                    for model_id, owner in tenant.model_list(key.allowed_models, project_id=key.project_id)]
            await send_json(send, 200, orjson.dumps({"object": "list", "data": data}), request_id)
        except GatewayError as exc:
            await self._respond_error(send, exc, request_id)

    async def _current(self, scope, principal) -> tuple[KeyInfo, TenantConfig]:
        """The key and a routing table known to be current (what a listing shows must match what
        /v1 serves now)."""
        key, tenant = await principal(scope)
        try:
            current = await self.state.versions(tenant.tenant_id)
        except StoreUnavailable as exc:
            self._store_down(tenant, exc)  # the table just read from the database, if it fails open
            return key, tenant
        if current != tenant.version:
            self.configs.drop(tenant.tenant_id)
            key, tenant = await principal(scope)
        return key, tenant

    async def chat(self, scope, receive, send) -> None:
        ctx = Ctx(request_id=new_request_id(), started=time.perf_counter())
        send = self._sealing(ctx, send)
        tenant: TenantConfig | None = None
        try:
            ctx.key, tenant = await self._principal(scope)
            body, ctx.prompt_bytes = await read_json(scope, receive)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise bad_request("'messages' must be a non-empty array of {role, content} objects.", param="messages")
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise bad_request("'stream' must be true or false.", param="stream")
            ctx.stream = stream
            self._note_client_fields(ctx, scope, body)
            tenant, route, targets = await self._admitted(ctx, tenant, body, ModelMode.CHAT,
                                                          lambda: self._principal(scope))
            ctx.estimated_prompt_chars = ctx.prompt_bytes
            if stream:
                await self._stream(ctx, tenant, route, targets, body, receive, send)
            else:
                await self._complete(ctx, tenant, route, targets, body, scope, send)
        except GatewayError as exc:
            ctx.status, ctx.error_type = exc.usage_status, exc.code or exc.type
            if not ctx.headers_sent:
                await self._respond_error(send, exc, ctx.request_id, ctx.extra_headers)
        finally:
            self._record(ctx, tenant)

    async def embeddings(self, scope, receive, send) -> None:
        ctx = Ctx(request_id=new_request_id(), started=time.perf_counter(), api="embeddings")
        send = self._sealing(ctx, send)
        tenant = None
        try:
            ctx.key, tenant = await self._principal(scope)
            body, ctx.prompt_bytes = await read_json(scope, receive)
            value = body.get("input")
            if not (isinstance(value, str) and value) and not (isinstance(value, list) and value):
                raise bad_request("'input' must be a non-empty string or array.", param="input")
            self._note_client_fields(ctx, scope, body)
            tenant, route, targets = await self._admitted(ctx, tenant, body, ModelMode.EMBEDDING,
                                                          lambda: self._principal(scope))
            data = await self.engine.embeddings(tenant, route, targets, body, ctx.call)
            await send_json(send, 200, data, ctx.request_id, model_header(ctx))
        except GatewayError as exc:
            ctx.status, ctx.error_type = exc.usage_status, exc.code or exc.type
            await self._respond_error(send, exc, ctx.request_id)
        finally:
            self._record(ctx, tenant)

    # --- steps ---------------------------------------------------------------------------

    async def _principal(self, scope, authorization: str | None = None) -> tuple[KeyInfo, TenantConfig]:
        """The request's key (its ``Authorization`` header, or ``authorization`` as a door read
        it) and its tenant's routing table, both from this worker's caches when they are
        current. A key is read again when its tenant's configuration changed since it was read
        (a revocation is such a change). Failed attempts are counted per client address."""
        address = client_address(scope)
        try:
            digest = self.keys.digest(authorization or header(scope, b"authorization"))
            key, version = self.keys.cached(digest)
            if key is None:
                key = await self.keys.load(digest, address=address, state=self.state, version=None)
            tenant = await self._tenant(key.tenant_id)
            if version != tenant.version:
                key = await self.keys.load(digest, address=address, state=self.state, version=tenant.version)
            self.keys.check(key)
        except GatewayError as exc:
            if exc.status == 401:
                await self.state.auth_failed(address)
            raise
        return key, tenant

    async def _tenant(self, tenant_id: int) -> TenantConfig:
        """The tenant's routing table; 403 when the tenant is suspended or gone."""
        tenant = await self.configs.get(tenant_id, self._versions)
        if tenant is None or not tenant.active:
            raise GatewayError(403, "This tenant is suspended; contact support.", type="permission_error",
                               code="tenant_suspended", usage_status="rejected")
        return tenant

    async def _versions(self, tenant_id: int) -> tuple[str, str]:
        """The configuration versions a routing table is loaded under; while Redis is
        unreachable, a version no Redis holds, so the first admission after it is back reloads
        the table (changes made meanwhile could not be announced)."""
        try:
            return await self.state.versions(tenant_id)
        except StoreUnavailable:
            return OUTAGE_VERSION

    def _store_down(self, tenant: TenantConfig, exc: StoreUnavailable) -> None:
        """Redis is unreachable: refuse the request (raise ``exc``, the 503) unless the tenant
        fails open (TenantConfig.fails_open); either way counted."""
        if not tenant.fails_open():
            metrics.store_unavailable.labels(tenant.slug, "refused").inc()
            raise exc
        metrics.store_unavailable.labels(tenant.slug, "served").inc()

    async def _admitted(self, ctx: Ctx, tenant: TenantConfig, body: dict[str, Any], mode: str,
                        principal: Callable[[], Awaitable[tuple[KeyInfo, TenantConfig]]],
                        ) -> tuple[TenantConfig, Route, list]:
        """Resolve the model and admit the request: every limit and budget of every scope it
        falls in checked, counted and reserved, and its deployments ordered, in one Redis round
        trip that also says whether this worker's routing table is current (if not, it is
        reloaded and the request resolved again, nothing counted twice); a model the table does
        not know is refused only once the table is known to be current. A spent downgrade
        budget sends the request to its cheaper alias (admitted again, for that alias); budget
        buckets and tokens-per-day counters Redis lost are rebuilt from the rollups first (each
        rebuild is one more pass of the loop, hence its room). Returns the table, the route and
        the targets to try. While Redis is unreachable a tenant that fails open is served without
        limits or budget checks (its cost is added to its budgets once Redis is back); any other
        is refused (503)."""
        ctx.call = Call(request_id=ctx.request_id, stream=ctx.stream)
        downgrade: spend.BudgetInfo | None = None  # the spent budget whose cheaper alias is served
        for _ in range(8):
            try:
                route = (tenant.resolve(body.get("model"), mode=mode, allowed=ctx.key.allowed_models,
                                        project_id=ctx.project_id)
                         if downgrade is None else self._downgraded(tenant, downgrade, mode, ctx.project_id))
                if tenant.blocked and tenant.end_user_blocked(ctx.end_user, ctx.project_id):
                    raise GatewayError(403, f"End user '{ctx.end_user}' is blocked in this tenant; contact its "
                                       "administrators.", type="permission_error", code="end_user_blocked",
                                       usage_status="rejected")
            except GatewayError as refusal:  # unknown, not allowed or blocked: certain only if the table is current
                try:
                    current = await self.state.versions(tenant.tenant_id)
                except StoreUnavailable as exc:
                    if not tenant.fails_open():
                        self._store_down(tenant, exc)
                    raise refusal from None  # the table was read from the database just now
                if current == tenant.version:
                    raise
                self.configs.drop(tenant.tenant_id)
                ctx.key, tenant = await principal()
                downgrade = None
                continue
            if downgrade is None:
                ctx.model_requested = route.requested
            ctx.day = datetime.now(tenant.zone).date()
            try:
                admission, asked = await self._admit(ctx, tenant, route, body, mode, downgrade is not None)
            except StoreUnavailable as exc:
                self._store_down(tenant, exc)
                return tenant, route, self._served_unadmitted(ctx, tenant, route)
            if admission.stale is not None:
                self.configs.drop(tenant.tenant_id)
                ctx.key, tenant = await principal()
                downgrade = None
                continue
            if admission.lost:  # Redis lost these tokens-per-day counters: rebuild them, then ask again
                try:
                    await self._rebuild_tokens(tenant, asked.limits, admission.lost)
                except StoreUnavailable as exc:
                    self._store_down(tenant, exc)
                    return tenant, route, self._served_unadmitted(ctx, tenant, route)
                continue
            if admission.refused:
                raise self._limit_refusal(asked, admission)
            if admission.budget:
                code, index = admission.budget[0], admission.budget[1]
                scope = asked.budgets[index - 1]
                if code == 4:  # Redis lost these days: rebuild them from the rollups, then ask again
                    try:
                        await self._rebuild(tenant, scope, admission.budget[2:])
                    except StoreUnavailable as exc:
                        self._store_down(tenant, exc)
                        return tenant, route, self._served_unadmitted(ctx, tenant, route)
                    continue
                budget = scope.budgets[admission.budget[2] - 1][0]
                if code == 2:
                    raise self._budget_refusal(ctx, tenant, budget, admission.budget[3])
                downgrade = budget
                continue
            break
        else:
            raise GatewayError(503, "This tenant's configuration is changing; retry in a moment.",
                               type="server_error", code="configuration_changing", retry_after=1.0)
        if downgrade is not None:
            ctx.extra_headers.append((b"x-tollgate-budget-downgrade", downgrade.name.encode()))
        if asked.budgets or asked.limits.token_keys or asked.limits.tpm:
            ctx.settle = spend.settlement(asked.budgets, token_keys=asked.limits.token_keys, tpm=asked.limits.tpm)
        order = self.engine.ranked(route, asked.pre, admission.order, ctx.call)
        return tenant, route, self.engine.order_targets(route, order)

    @staticmethod
    def _downgraded(tenant: TenantConfig, budget: spend.BudgetInfo, mode: str, project_id: int | None) -> Route:
        if budget.downgrade_alias not in tenant.aliases:
            raise GatewayError(
                429, f"Budget '{budget.name}' is exhausted and its downgrade alias '{budget.downgrade_alias}' "
                "no longer exists or has no usable model; fix the budget.",
                type="insufficient_quota", code="budget_exceeded", usage_status="rejected",
            )
        return tenant.resolve(budget.downgrade_alias, mode=mode, project_id=project_id)

    def _served_unadmitted(self, ctx: Ctx, tenant: TenantConfig, route: Route) -> list:
        """A request of a tenant that fails open, served while Redis is unreachable: every
        target (cooldowns unknown), nothing reserved; its cost goes to its budget buckets when
        the usage writer settles once Redis is back. The answer says so (x-tollgate-admission)."""
        ctx.day = datetime.now(tenant.zone).date()
        ctx.extra_headers.append((b"x-tollgate-admission", b"unchecked; store unavailable"))
        if ctx.settle is None:  # (set: reserved before Redis went away; released as usual)
            covers = tenant.covering(route)
            plans = spend.plan(tenant.budgets, tenant_id=tenant.tenant_id, key_id=ctx.key.key_id, zone=tenant.zone,
                               project_id=ctx.project_id, end_user=ctx.end_user, covers=covers)
            project = tenant.projects.get(ctx.project_id) if ctx.project_id is not None else None
            token_keys = scopes.plan(tenant=tenant, key=ctx.key, project=project, end_user=ctx.end_user, covers=covers,
                                     worst_tokens=0).token_keys
            if plans or token_keys:
                ctx.settle = spend.settlement(plans, reserved=False, token_keys=token_keys)
        return list(route.targets)

    async def _admit(self, ctx: Ctx, tenant: TenantConfig, route: Route, body: dict[str, Any], mode: str,
                     downgraded: bool) -> tuple[Admission, "Asked"]:
        """One admission round trip for ``route``: the limits of every scope (gateway/scopes.py),
        the budgets (billing.spend) and the deployments."""
        key = ctx.key
        project = tenant.projects.get(ctx.project_id) if ctx.project_id is not None else None
        covers = tenant.covering(route)
        worst_tokens = worst_nanos = 0
        if tenant.budgets or tenant.tokens_per_minute or key.tokens_per_minute or (project and project.tpm) or any(
                rule.tpm for rule in tenant.limit_rules):
            worst_tokens, worst_nanos = self._worst_case(route, body, tenant, ctx.prompt_bytes, mode)
        limits = scopes.plan(tenant=tenant, key=key, project=project, end_user=ctx.end_user, covers=covers,
                             worst_tokens=worst_tokens)
        budgets: list[spend.ScopePlan] = []
        budget_args = NO_BUDGETS
        if tenant.budgets:
            budgets = spend.plan(tenant.budgets, tenant_id=tenant.tenant_id, key_id=key.key_id, zone=tenant.zone,
                                 project_id=ctx.project_id, end_user=ctx.end_user, covers=covers)
            if budgets:
                budget_args = spend.budget_arguments(budgets, reservation=worst_nanos, downgrade_as_alert=downgraded)
        pre, pick = self.engine.pick_of(route, ctx.session, ctx.call)
        admission = await self.state.admit(tenant_id=tenant.tenant_id, pick=pick, versions=tenant.version,
                                           counters=limits.counters, budgets=budget_args)
        return admission, Asked(limits, budgets, pre, worst_tokens)

    @staticmethod
    def _limit_refusal(asked: "Asked", admission: Admission) -> GatewayError:
        counter = asked.limits.counters[admission.refused - 1]
        refusal = scopes.Refusal(*asked.limits.refusals[admission.refused - 1])
        status, message, code = scopes.refusal_text(refusal, admission.used, counter.frees, asked.worst_tokens)
        if status == 400:
            return GatewayError(400, message, type="invalid_request_error", code=code, usage_status="rejected")
        return rate_limited(message, counter.frees, code=code)

    @staticmethod
    def _budget_refusal(ctx: Ctx, tenant: TenantConfig, budget: spend.BudgetInfo, spent: int) -> GatewayError:
        spent_usd = Decimal(spent) / spend.NANOS
        resets = period_for(budget.period, str(tenant.zone)).resets_at
        project = tenant.projects.get(budget.project_id) if budget.project_id is not None else None
        where = {
            BudgetScope.PROJECT: f" of project '{project.slug if project else budget.project_id}'",
            BudgetScope.KEY: " of this API key",
            BudgetScope.END_USER: f" for end user '{ctx.end_user}'" + (
                f" (each end user of project '{project.slug}')" if project else " (each end user)"),
        }.get(budget.scope, "")
        on = f" on model '{budget.model}'" if budget.model else ""
        return GatewayError(
            429,
            f"Budget '{budget.name}'{where}{on} is exhausted: ${spent_usd:.4f} of ${budget.amount:.2f} spent this "
            f"{budget.period.replace('_', ' ')} (plus requests in flight). It resets at "
            f"{resets:%Y-%m-%d %H:%M} {tenant.zone}; raise the budget to keep going.",
            type="insufficient_quota", code="budget_exceeded",
            retry_after=max(1.0, (resets - datetime.now(tenant.zone)).total_seconds()),
            usage_status="rejected",
        )

    async def _once(self, key: tuple, rebuild: Callable[[], Awaitable[None]]) -> None:
        """One rebuild of the same counters at a time in this worker: the requests that find them
        missing together (every request of a tenant at its local midnight) wait for the first's
        instead of each reading the rollups on the one database thread."""
        task = self._rebuilding.get(key)
        if task is None:
            task = self._rebuilding[key] = asyncio.ensure_future(rebuild())

            def done(t: asyncio.Future) -> None:
                if self._rebuilding.get(key) is t:
                    del self._rebuilding[key]
                if not t.cancelled():
                    t.exception()  # retrieved: every waiter may have gone

            task.add_done_callback(done)
        await asyncio.shield(task)

    async def _written(self) -> None:
        """Before a rebuild from the rollups: this worker's buffered rows written and what it kept
        settled. A row admitted before the limit or budget existed carries no counter of it, so
        only the rollups can count it — and the rebuild reads them right after."""
        if self.usage is not None:
            await self.usage.flush(settle_now=True)

    async def _rebuild_tokens(self, tenant: TenantConfig, limits: scopes.Plan, lost: tuple[int, ...]) -> None:
        """Tokens-per-day counters Redis lost, read again from the rollups' token columns (one
        database call for all of them), after writing and settling what this worker holds, as for
        budgets."""
        day, sources = limits.day, limits.sources or {}

        def read() -> dict[str, int]:
            return {limits.counters[i - 1].key: spend.tokens_by_day(tenant_id=tenant.tenant_id, days=[day],
                                                                     source=sources[i])[day] for i in lost}

        async def rebuild() -> None:
            await self._written()
            tokens, snapshot = await run_db(spend.rollups_read, read)
            await self.state.budget_seed(tokens, ttl=scopes.DAY_TTL, snapshot=snapshot)

        await self._once(tuple(limits.counters[i - 1].key for i in lost), rebuild)

    async def _rebuild(self, tenant: TenantConfig, scope: spend.ScopePlan, missing) -> None:
        """Budget buckets Redis lost, read again from the rollups: first what this worker holds
        written and settled (``_written``); the snapshot they were read under goes with them, so
        another worker's settlement of rows it already saw is not added again
        (billing.spend.SETTLE_SCRIPT)."""
        days = [scope.days[i - 1] for i in missing]

        async def rebuild() -> None:
            await self._written()
            spent, snapshot = await run_db(spend.rollups_read, lambda: spend.spend_by_day(
                tenant_id=tenant.tenant_id, days=days, source=scope.source))
            await self.state.budget_seed({spend.bucket_of(scope.sid, day): v for day, v in spent.items()},
                                         snapshot=snapshot)

        await self._once((scope.sid, scope.source, *days), rebuild)

    @staticmethod
    def _worst_case(route: Route, body: dict[str, Any], tenant: TenantConfig, prompt_bytes: int,
                    mode: str) -> tuple[int, int]:
        """The most tokens and cost (nano-dollars) this request can take on any of its targets
        (its error-class fallbacks' included): its prompt — every two bytes of its body a token,
        more than any tokenizer makes of JSON —, and as many output tokens as the upstream will
        be allowed to produce (the same limit the adapters send)."""
        worst = tokens = 0
        fallbacks = (t for r in (*route.context_fallbacks, *route.policy_fallbacks) for t in r.targets)
        for target in (*route.targets, *fallbacks):
            d = target.deployment
            out = 0
            if mode != ModelMode.EMBEDDING:
                out = upstream_output_tokens(d, apply_defaults(body, tenant, target))
                n = body.get("n")
                out *= n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
            tokens = max(tokens, prompt_bytes // 2 + 1 + out)
            worst = max(worst, spend.worst_case_nanos(prompt_bytes=prompt_bytes, max_output_tokens=out,
                                                        input_price=d.input_price, output_price=d.output_price))
        return tokens, min(worst, spend.MAX_RESERVATION)

    def _note_client_fields(self, ctx: Ctx, scope, body: dict[str, Any]) -> None:
        conversation = header(scope, b"x-tollgate-conversation")
        metadata = body.get("metadata")
        if not conversation and isinstance(metadata, dict) and isinstance(metadata.get("conversation_id"), str):
            conversation = metadata["conversation_id"]
        ctx.conversation_id = (conversation or "")[:128]
        user = body.get("user")
        ctx.end_user = (header(scope, END_USER_HEADER) or (user if isinstance(user, str) else ""))[:128]
        user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
        ctx.session = (header(scope, b"x-tollgate-session") or (user_id if isinstance(user_id, str) else "")
                       or ctx.end_user)[:256]

    async def _complete(self, ctx: Ctx, tenant: TenantConfig, route: Route, targets, body, scope, send,
                        once=None, cache_body: dict[str, Any] | None = None) -> None:
        """A non-streamed answer, from the response cache when the tenant allows it (entries are
        kept per door: the same JSON may be a request of two doors). ``once``: the door's own
        call of one target (default: a chat); ``cache_body``: what the cache key is made of,
        when the door hands the engine something other than the client's body."""
        cache_key = self._cache_key(tenant, route, body if cache_body is None else cache_body, scope, ctx.api)
        if cache_key is not None:
            cached = await self.state.cache_get(cache_key)
            if cached is not None:
                ctx.cache_hit = True
                ctx.status = "cache_hit"
                await send_json(send, 200, cached, ctx.request_id, [(b"x-tollgate-cache", b"hit")])
                return
        result = await self.engine.chat(tenant, route, targets, body, ctx.call, once)
        extra = model_header(ctx)
        if cache_key is not None:
            extra.append((b"x-tollgate-cache", b"miss"))
            await self.state.cache_set(cache_key, result.body, tenant.cache_ttl_seconds)
        await send_json(send, 200, result.body, ctx.request_id, extra)

    def _cache_key(self, tenant: TenantConfig, route: Route, body: dict[str, Any], scope,
                   api: str = "chat") -> str | None:
        if not tenant.cache_enabled:
            return None
        flag = (header(scope, b"x-tollgate-cache") or "").lower()
        if flag in ("off", "no", "false", "0"):
            return None
        temperature = body.get("temperature", tenant.defaults.get("temperature"))
        if temperature != 0 and flag not in ("on", "yes", "true", "1"):
            return None
        canonical = orjson.dumps({**body, "model": route.requested}, option=orjson.OPT_SORT_KEYS)
        door = "" if api == "chat" else f"{api}:"
        return f"tg:rc:t{tenant.tenant_id}:{door}{hashlib.sha256(canonical).hexdigest()}"

    async def _stream(self, ctx: Ctx, tenant, route, targets, body, receive, send) -> None:
        """Relay a stream. Once its headers went out (ctx.headers_sent), errors are reported
        inside the stream."""
        include_usage = bool(isinstance(body.get("stream_options"), dict)
                             and body["stream_options"].get("include_usage"))
        opened = await self.engine.open_stream(tenant, route, targets, body, ctx.call)
        await self._pump(ctx, opened, self._relay(ctx, opened, include_usage, send), receive)

    async def _pump(self, ctx: Ctx, opened, relaying: Awaitable[None], receive) -> None:
        """Run a door's relay of ``opened`` (an OpenStream or one with its interface) while
        watching for the client to leave: a disconnect cancels the relay (and the upstream
        call) and makes the row partial, unless the client had been sent the upstream's own
        final event (``opened.answered``: Codex hangs up on ``response.completed`` before the
        upstream has closed its end). The usage recorded is the stream's, else estimated
        (``_seal``)."""
        ctx.opened = opened
        relay = asyncio.ensure_future(relaying)
        watch = asyncio.ensure_future(wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch in done and not relay.done():
                relay.cancel()
                if not opened.answered:  # a client that leaves after the answer's last event had all of it
                    ctx.status, ctx.error_type = "partial", "client_disconnected"
                try:
                    await relay
                except (asyncio.CancelledError, Exception):
                    pass
            else:
                relay.result()  # re-raise what the relay raised
        finally:
            watch.cancel()
            opened.close()  # the usage recorded is read from it (``_seal``)

    async def _relay(self, ctx: Ctx, opened: OpenStream, include_usage: bool, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, (b"x-request-id", ctx.request_id.encode()), *model_header(ctx)]})
        ctx.headers_sent = True
        ctx.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)
        await send({"type": "http.response.body", "body": b"".join(opened.first), "more_body": True})
        try:
            async for events in opened.events():
                await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})
        except UpstreamFailure as failure:
            ctx.status, ctx.error_type = "partial", failure.kind
            error = {"error": {"message": f"The upstream stream failed after it started: {failure.message}",
                               "type": "upstream_error", "param": None, "code": failure.kind}}
            await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(error) + b"\n\n" + DONE,
                        "more_body": False})
            return
        tail = b""
        if include_usage:
            usage = opened.usage or self._estimate(ctx, opened.text_chars)
            tail = usage_chunk(request_id=ctx.request_id, created=int(time.time()),
                               model=opened.deployment.model_id, usage=usage)
        await send({"type": "http.response.body", "body": tail + DONE, "more_body": False})

    @staticmethod
    def _estimate(ctx: Ctx, text_chars: int) -> Usage:
        """No usage from upstream (or the client left): count about four characters a token,
        and say so. Never zero: a stream that started has produced at least one token."""
        return Usage(input_tokens=estimate_tokens(ctx.estimated_prompt_chars),
                     output_tokens=estimate_tokens(text_chars), estimated=True)

    # --- responses and the ledger --------------------------------------------------------

    async def _respond_error(self, send, exc: GatewayError, request_id: str, extra=None, *,
                             anthropic: bool = False) -> None:
        """``exc`` in OpenAI's error shape, or Anthropic's (the Messages door)."""
        headers = list(extra or [])
        if exc.retry_after is not None:
            headers.append((b"retry-after", str(max(1, int(exc.retry_after + 0.999))).encode()))
        if exc.status == 413:  # the rest of the body is not read: close rather than skip it
            headers.append(CLOSE)
        if anthropic and exc.code == "budget_exceeded":
            headers.append((b"x-should-retry", b"false"))  # not before the budget resets
        await send_json(send, exc.status, exc.anthropic_body() if anthropic else exc.body(), request_id, headers)

    def _sealing(self, ctx: Ctx, send):
        """The door's ``send``, which hands the request's record to the ledger writer (whose
        journal keeps it on disk at once) before the answer's last bytes go out, so a worker
        that dies after answering has recorded what it answered; and, when a stream's headers
        go out, an open marker that stands for the stream if the worker dies before its end."""

        async def sealed(message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    self._seal(ctx)
            elif ctx.opened is not None and ctx.key is not None and self.usage is not None:
                self.usage.open(self._record_of(ctx, usage=self._estimate(ctx, 0), status="partial",
                                                error_type="worker_lost"))
            await send(message)

        return sealed

    def _seal(self, ctx: Ctx) -> None:
        """Build the request's usage record (billing's one builder) and hand it to the writer,
        once: as its answer ends (``_sealing``), else when the request is done (``_record``)."""
        if ctx.record is not None or ctx.key is None or self.usage is None:
            return  # recorded already, or not attributable to a tenant
        call = ctx.call
        if ctx.opened is not None and call is not None:  # a stream's usage, as its last bytes say
            call.usage = ctx.opened.usage or self._estimate(ctx, ctx.opened.text_chars)
        ctx.record = self._record_of(ctx, usage=call.usage if call and not ctx.cache_hit else None,
                                     status=ctx.status, error_type=ctx.error_type)
        self.usage.add(ctx.record)

    @staticmethod
    def _record_of(ctx: Ctx, *, usage: Usage | None, status: str, error_type: str) -> UsageRecord:
        """The request's usage record, by billing's one builder."""
        call = ctx.call
        return usage_record_build(
            request_id=ctx.request_id, tenant_id=ctx.key.tenant_id, api_key_id=ctx.key.key_id,
            project_id=ctx.project_id, day=ctx.day,
            model_requested=ctx.model_requested, deployment=call.deployment if call else None, usage=usage,
            cache_hit=ctx.cache_hit, attempts=len(call.attempts) if call else 0, status=status,
            error_type=error_type, latency_ms=ctx.latency_ms, ttft_ms=ctx.ttft_ms, stream=ctx.stream,
            conversation_id=ctx.conversation_id, end_user=ctx.end_user, api=ctx.api, settlement=ctx.settle,
        )

    def _record(self, ctx: Ctx, tenant: TenantConfig | None) -> None:
        """The request is done: make sure the writer has its record, and observe it."""
        self._seal(ctx)
        record = ctx.record
        if record is None:
            return
        call = ctx.call
        deployment: Deployment | None = call.deployment if call else None
        usage = call.usage if call and not ctx.cache_hit else None
        if call is not None and call.taken and self.tally is not None:
            ok = call.attempts[-1] if call.attempts and call.attempts[-1].outcome == "ok" else None
            self.tally.add(Ended(
                tenant_id=record.tenant_id, request_id=ctx.request_id, taken=tuple(call.taken),
                served=deployment.provider_model_id if deployment else None,
                tokens=usage.input_tokens + usage.output_tokens if usage else 0,
                latency_ms=ok.latency_ms if ok is not None and deployment is not None else None, stream=ctx.stream,
            ))
        self._observe(ctx, tenant, record, deployment, usage)

    def _observe(self, ctx: Ctx, tenant: TenantConfig | None, record: UsageRecord, deployment: Deployment | None,
                 usage: Usage | None) -> None:
        """Metrics (bounded labels) and, when enabled, one structured log line."""
        tenant_label = tenant.slug if tenant else f"id-{record.tenant_id}"
        provider = deployment.provider_name if deployment else "none"
        model = deployment.public_id if deployment else "none"
        status = record.status
        metrics.requests.labels(tenant_label, provider, model, status).inc()
        metrics.latency.labels(provider).observe(record.latency_ms / 1000)
        if ctx.ttft_ms is not None:
            metrics.ttft.labels(provider).observe(ctx.ttft_ms / 1000)
        if usage is not None:
            metrics.tokens.labels(tenant_label, provider, model, "input").inc(usage.input_tokens)
            metrics.tokens.labels(tenant_label, provider, model, "output").inc(usage.output_tokens)
        if record.cost:
            metrics.cost.labels(tenant_label, provider, model).inc(float(record.cost))
        if status == "rejected":
            metrics.rejections.labels(tenant_label, record.error_type or "rejected").inc()
        elif status == "cache_hit":
            metrics.cache_hits.labels(tenant_label).inc()
        attempts = ctx.call.attempts if ctx.call else []
        for attempt in attempts:
            if attempt.outcome != "ok":
                metrics.upstream_errors.labels(attempt.deployment.partition(":")[0], attempt.outcome).inc()
        if deployment is not None and attempts and attempts[0].deployment != deployment.public_id:
            metrics.fallbacks.labels(provider).inc()
        if self.log_requests:
            request_log.info(
                "%s %s %s -> %s %s %dms", ctx.request_id, tenant_label, ctx.model_requested or "-", model, status,
                record.latency_ms,
                extra={
                    "request_id": ctx.request_id, "api": ctx.api, "tenant": tenant_label,
                    "key_prefix": ctx.key.prefix if ctx.key else None,
                    "model_requested": ctx.model_requested, "model_used": model, "provider": provider,
                    "attempts": record.attempts, "status": status, "error_type": record.error_type,
                    "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
                    "tokens_estimated": record.tokens_estimated,
                    "cost": str(record.cost) if record.cost is not None else None,
                    "latency_ms": record.latency_ms, "ttft_ms": ctx.ttft_ms, "stream": ctx.stream,
                },
            )


gateway = GatewayApp()
