"""Deployment cooldowns in Redis: the key format, defined once. After ``allowed_fails``
failures of one deployment (a tenant's provider model) inside the failure window, the gateway
(gateway/state.py) sets the flag ``tg:cd:t<tenant>:pm<provider model>`` with the cooldown as
its TTL, and skips the deployment while the flag exists; ``tg:cf:…`` counts the failures.
An upstream's 429 with a retry-after sets the same flag to ``r<epoch seconds it ends>``
(RATE_FLAG), so the gateway answers 429 rather than 503 and the console says who said wait.
The gateway builds both keys here; the support dashboards list the flags through
``cooldowns_scan``."""

from dataclasses import dataclass

COOLDOWN_PREFIX = "tg:cd:"
RATE_FLAG = "r"  # a cooldown flag's value when a retry-after set it: r<epoch seconds it ends>


def cooldown_key(tenant_id: int, provider_model_id: int | str) -> str:
    """The flag that holds one deployment in cooldown (its TTL is the time left)."""
    return f"{COOLDOWN_PREFIX}t{tenant_id}:pm{provider_model_id}"


def cooldown_fails_key(tenant_id: int, provider_model_id: int) -> str:
    """The counter of one deployment's recent failures (expires after the failure window)."""
    return f"tg:cf:t{tenant_id}:pm{provider_model_id}"


def cooldown_parse(key: str | bytes) -> tuple[int, int] | None:
    """(tenant id, provider model id) of a ``cooldown_key``; None for any other key."""
    if isinstance(key, bytes):
        key = key.decode()
    if not key.startswith(COOLDOWN_PREFIX):
        return None
    try:
        tenant_part, model_part = key.removeprefix(COOLDOWN_PREFIX).split(":")
        return int(tenant_part.removeprefix("t")), int(model_part.removeprefix("pm"))
    except ValueError:
        return None


@dataclass(frozen=True)
class CooldownFlag:
    tenant_id: int
    provider_model_id: int
    seconds_left: int  # rounded up; -1 when the flag has no TTL


def cooldowns_scan(client, *, limit: int = 1000) -> list[CooldownFlag]:
    """The cooldown flags in Redis now (at most ``limit``), with the seconds each has left:
    one SCAN and one pipelined PTTL per flag. ``client`` is a synchronous redis client."""
    keys = []
    for key in client.scan_iter(match=f"{COOLDOWN_PREFIX}*", count=1000):
        keys.append(key)
        if len(keys) >= limit:
            break
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    found = []
    for key, ttl in zip(keys, pipe.execute(), strict=True):
        parsed = cooldown_parse(key)
        if parsed is None or ttl == -2:  # not a flag, or expired between SCAN and PTTL
            continue
        found.append(CooldownFlag(tenant_id=parsed[0], provider_model_id=parsed[1],
                                  seconds_left=max(0, -(-ttl // 1000)) if ttl >= 0 else -1))
    return found
