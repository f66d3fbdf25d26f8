"""Deployment traffic in Redis: the key formats, defined once, and the console's read of them.

Per tenant and provider model (one deployment), shared by every gateway worker:
- ``tg:dr:t<tenant>:pm<pm>:m<minute>``: requests sent to it in that UTC minute (the rpm limit
  and the traffic share; kept TRAFFIC_KEEP_SECONDS so the console can sum the last hour);
- ``tg:dt:…:m<minute>``: tokens it used in that minute (the tpm limit), added at settlement;
- ``tg:di:t<tenant>:pm<pm>``: its requests in flight, a sorted set of request ids scored by the
  time each stops counting (a worker that dies cannot leave a request counted for ever);
- ``tg:dl:t<tenant>:pm<pm>``: a hash of its recent latency (``lat``, ms, non-streamed answers)
  and time to first token (``ttft``, ms, streams), moving averages that expire after
  LATENCY_KEEP_SECONDS without traffic (so a deployment that was slow is tried again).

The gateway (gateway/state.py) writes them in its admission script and its settlement batch;
``traffic_read`` reads them for the console, with each deployment's cooldown flag
(providers/cooldowns.py), in one pipeline."""

import time
from dataclasses import dataclass

from providers.cooldowns import RATE_FLAG, cooldown_key

TRAFFIC_KEEP_SECONDS = 3900  # a minute counter outlives the hour the console sums
LATENCY_KEEP_SECONDS = 300
LATENCY_WEIGHT = 0.3  # of the newest sample in the moving average
SHARE_MINUTES = 60


# (A key function given "%s" as the provider model gives the template the admission script
# fills in, so each format is written once.)


def minute_of(now: float) -> int:
    return int(now // 60)


def requests_key(tenant_id: int | str, provider_model_id: int | str, minute: int) -> str:
    return f"tg:dr:t{tenant_id}:pm{provider_model_id}:m{minute}"


def tokens_key(tenant_id: int | str, provider_model_id: int | str, minute: int) -> str:
    return f"tg:dt:t{tenant_id}:pm{provider_model_id}:m{minute}"


def inflight_key(tenant_id: int | str, provider_model_id: int | str) -> str:
    return f"tg:di:t{tenant_id}:pm{provider_model_id}"


def latency_key(tenant_id: int | str, provider_model_id: int | str) -> str:
    return f"tg:dl:t{tenant_id}:pm{provider_model_id}"


@dataclass(frozen=True)
class Traffic:
    """One deployment's traffic now, as the console shows it."""

    requests_hour: int  # requests sent to it in the last SHARE_MINUTES minutes
    requests_minute: int  # in the current minute (against its rpm limit)
    tokens_minute: int  # in the current minute (against its tpm limit)
    in_flight: int
    latency_ms: float | None
    ttft_ms: float | None
    cooling_seconds: int | None = None  # seconds its cooldown has left (rounded up); None: not cooling
    rate_limited: bool = False  # the cooldown is an upstream's 429 retry-after, not failures


def traffic_read(client, *, tenant_id: int, provider_model_ids: list[int]) -> dict[int, Traffic]:
    """The traffic of a tenant's deployments, in one pipeline. ``client`` is a synchronous
    redis client; the caller handles Redis being unreachable."""
    now = time.time()
    minute = minute_of(now)
    ids = list(dict.fromkeys(provider_model_ids))
    pipe = client.pipeline(transaction=False)
    for pm in ids:
        pipe.mget([requests_key(tenant_id, pm, minute - i) for i in range(SHARE_MINUTES)])
        pipe.get(tokens_key(tenant_id, pm, minute))
        pipe.zcount(inflight_key(tenant_id, pm), f"({now}", "+inf")
        pipe.hmget(latency_key(tenant_id, pm), "lat", "ttft")
        pipe.get(cooldown_key(tenant_id, pm))
        pipe.pttl(cooldown_key(tenant_id, pm))
    answers = pipe.execute()
    out = {}
    for i, pm in enumerate(ids):
        counts, tokens, in_flight, (lat, ttft), flag, ttl = answers[6 * i:6 * i + 6]
        if isinstance(flag, bytes):
            flag = flag.decode()
        # seconds left, rounded up (a flag without a TTL, which the gateway never sets, shows 0)
        cooling = max(0, -(-ttl // 1000)) if flag is not None else None
        out[pm] = Traffic(
            requests_hour=sum(int(c) for c in counts if c is not None),
            requests_minute=int(counts[0] or 0),
            tokens_minute=int(tokens or 0),
            in_flight=int(in_flight),
            latency_ms=float(lat) if lat is not None else None,
            ttft_ms=float(ttft) if ttft is not None else None,
            cooling_seconds=cooling,
            rate_limited=flag is not None and flag.startswith(RATE_FLAG),
        )
    return out
