"""``POST /api/test/llm``: one short request through a tenant's real routing, for admins to
check their set-up. It is served by the data plane's own code — the same admission (the
tenant's active flag, rate limits, budgets), routing, engine, usage record (billing.records'
one builder) and settlement as /v1 — on an app instance of its own, because the request runs
outside the data plane's event loop."""

from dataclasses import dataclass
from decimal import Decimal

import orjson
from asgiref.sync import async_to_sync

from gateway.app import GatewayApp
from gateway.auth import KeyInfo, key_info
from tenants.models import ApiKey


@dataclass(frozen=True)
class TestAnswer:
    request_id: str
    answer: str
    provider: str
    model: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost: Decimal | None
    attempts: list[dict]


def llm_test_sync(*, tenant_id: int, api_key: ApiKey | None, model: str | None, prompt: str,
                  request_id: str) -> TestAnswer:
    """Run one request (call from a worker thread) as ``api_key`` (the admin key that asked;
    None for a signed-in member: only the tenant's limits and budgets apply). GatewayError when
    it cannot be served."""
    key = key_info(api_key) if api_key is not None else KeyInfo.member(tenant_id)
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 64, "stream": False}
    if model is not None:
        body["model"] = model

    async def run():
        app = GatewayApp()
        await app.open_private()
        try:
            return await app.serve_once(key=key, body=body, request_id=request_id, end_user="tollgate-test")
        finally:
            await app.close_private()

    ctx, result = async_to_sync(run)()
    call, record = ctx.call, ctx.record  # the answer reports what the ledger got
    d = call.deployment
    message = orjson.loads(result.body)["choices"][0]["message"]
    return TestAnswer(
        request_id=request_id, answer=message.get("content") or "", provider=d.provider_name, model=d.model_id,
        latency_ms=round(ctx.latency_ms, 1), input_tokens=record.input_tokens, output_tokens=record.output_tokens,
        cost=record.cost, attempts=[{"deployment": a.deployment, "outcome": a.outcome, "message": a.message}
                                    for a in call.attempts],
    )
