"""``POST /api/test/llm``: one short request through a tenant's real routing, for admins to
check their set-up. It uses the same routing, engine and ledger as /v1, with its own HTTP
client (the request runs outside the data plane's event loop)."""

import time
from datetime import datetime
from dataclasses import dataclass
from decimal import Decimal

import orjson
from asgiref.sync import async_to_sync

from billing.ledger import usage_rows_write
from providers.gateway.engine import Call, Engine
from providers.gateway.errors import GatewayError
from providers.gateway.routing import tenant_config_load
from providers.gateway.state import shared_state
from providers.gateway.upstream import new_session


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


def llm_test_sync(*, tenant_id: int, model: str | None, prompt: str, request_id: str) -> TestAnswer:
    """Run one request (call from a worker thread). GatewayError when it cannot be served."""
    config = tenant_config_load(tenant_id)
    route = config.resolve(model)
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 64, "stream": False}
    call = Call(request_id=request_id)
    started = time.perf_counter()

    async def run():
        state, session = shared_state(), new_session()
        try:
            engine = Engine(session=session, state=state)
            return await engine.chat(config, route, list(route.targets), body, call)
        finally:
            await session.close()
            await state.close()

    status, error_type, result = "ok", "", None
    try:
        result = async_to_sync(run)()
    except GatewayError as exc:
        status, error_type = "error", exc.code or exc.type
        raise
    finally:
        latency_ms = (time.perf_counter() - started) * 1000
        d, usage = call.deployment, call.usage
        cost = None
        if usage is not None and d is not None:
            cost = d.cost_of(usage)
        usage_rows_write([{
            "request_id": request_id, "tenant_id": tenant_id, "api_key_id": None,
            "model_requested": route.requested[:255], "provider_id": d.provider_id if d else None,
            "provider_model_id": d.provider_model_id if d else None, "attempts": len(call.attempts),
            "status": status, "error_type": error_type[:40],
            "input_tokens": usage.input_tokens if usage else 0, "output_tokens": usage.output_tokens if usage else 0,
            "cached_input_tokens": usage.cached_input_tokens if usage else 0,
            "reasoning_tokens": usage.reasoning_tokens if usage else 0, "cost": cost,
            "latency_ms": int(latency_ms), "end_user": "tollgate-test",
            "_day": datetime.now(config.zone).date(),
        }])
    message = orjson.loads(result.body)["choices"][0]["message"]
    return TestAnswer(
        request_id=request_id, answer=message.get("content") or "", provider=d.provider_name, model=d.model_id,
        latency_ms=round(latency_ms, 1), input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cost=cost, attempts=[{"deployment": a.deployment, "outcome": a.outcome, "message": a.message}
                             for a in call.attempts],
    )
