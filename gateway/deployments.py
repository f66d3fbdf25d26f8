"""Picking a deployment: an alias's (or a bare model's) deployments sit in priority groups;
within the first group that has a usable one, the alias's strategy picks, and the rest of that
group, then the lower groups, are the fallbacks in order.

The work is split so that it costs no Redis round trip beyond admission's one:
- here, in the worker, ``preorder`` orders each group by what needs no shared state — weighted
  random (or by price for ``cost``, or by the session for affinity);
- the admission script (gateway/state.py, ``_ADMIT``) reads each deployment's cooldown, its
  rpm / tpm counters, in-flight count and latency, drops the ones cooling down or at a limit,
  sorts each group by the strategy's measure (in-flight count, latency, share of limits used;
  ties keep the preorder), counts the request against the first, and answers the order.
``rank`` is the same ordering for the in-process state (the embedded default, no Redis).

Requests that end are released in batches (``Tally``): their in-flight entries removed, their
tokens added to the minute's tpm counter, their latency folded into the moving averages."""

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from providers.cooldowns import RATE_FLAG
from providers.models import RoutingStrategy

log = logging.getLogger("tollgate.gateway")

# Strategy codes of the admission script: 0 keeps the preorder (weighted, cost, affinity).
KEEP, LEAST_BUSY, LATENCY, USAGE = 0, 1, 2, 3
SCRIPT_CODES = {RoutingStrategy.LEAST_BUSY: LEAST_BUSY, RoutingStrategy.LATENCY: LATENCY,
                RoutingStrategy.USAGE: USAGE}
# What the script says of each deployment: usable, cooling down after failures, at its rpm or
# tpm limit this minute, or cooling down because its upstream answered 429 with a retry-after.
USABLE, COOLING, AT_RPM, AT_TPM, RATE_LIMITED = 0, 1, 2, 3, 4
IN_FLIGHT_SECONDS = 300  # a request stops counting as in flight after this long, whatever happens
TALLY_SECONDS = 0.1  # ended requests are released in batches this often
LOG_SECONDS = 60.0  # a failing release is logged again after this long


@dataclass(frozen=True, slots=True)
class Candidate:
    """What ordering needs of one deployment of a route."""

    provider_model_id: int
    group: int
    weight: int
    rpm: int  # 0: no limit
    tpm: int
    price: Decimal | None  # USD per million input + output tokens; None when unknown
    spec: str = field(default="", compare=False)  # how the admission script receives it: "pm:group:rpm:tpm"

    def __post_init__(self):
        object.__setattr__(self, "spec", f"{self.provider_model_id}:{self.group}:{self.rpm}:{self.tpm}")


def _unit(text: str) -> float:
    """A number in (0, 1) fixed by ``text``."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / (2**64 + 2)


def preorder(candidates: Sequence[Candidate], strategy: str, session: str = "") -> list[int]:
    """Indexes of ``candidates`` by group, each group in the worker's order: with a session
    (affinity), weighted rendezvous hashing — the same session gets the same deployment while
    it is usable, and only the sessions of a deployment that goes away move; for ``cost``,
    cheapest first; otherwise a weighted random order (Efraimidis–Spirakis: each drawn with
    probability its weight over the weights left). Weight 0 comes last in its group."""
    if len(candidates) == 1:
        return [0]
    keys = []
    for i, c in enumerate(candidates):
        if c.weight <= 0:
            draw = math.inf
        elif session:
            draw = -math.log(_unit(f"{session}\x00{c.provider_model_id}")) / c.weight
        else:
            draw = -math.log(1.0 - random.random()) / c.weight  # an exponential with rate = weight
        # for cost: known prices first, cheapest first (Decimal, as every price); else no order
        first = (c.price is None, c.price or 0) if strategy == RoutingStrategy.COST and not session else (False, 0)
        keys.append((c.group, c.weight <= 0, first, draw, i))
    keys.sort()
    return [k[-1] for k in keys]


def script_code(strategy: str, session: str) -> int:
    """The admission script's ordering for a route: the strategy's, unless a session keeps
    the preorder (affinity wins while its deployment is usable)."""
    return KEEP if session else SCRIPT_CODES.get(strategy, KEEP)


@dataclass(frozen=True, slots=True)
class Measure:
    """One deployment's shared state, as the in-process state keeps it."""

    cooling: str | None  # the cooldown flag's value, None when not cooling
    requests: int  # this minute
    tokens: int  # this minute
    in_flight: int
    latency: float | None
    ttft: float | None


def rank(candidates: Sequence[Candidate], measures: Sequence[Measure], code: int, stream: bool,
         now: float) -> list[tuple[int, int, int]]:
    """(index, state, seconds to wait) of each candidate in the order to try, as the admission
    script answers (the two must agree: tests/gateway/test_deployments.py runs both)."""
    rows = []
    for i, (c, m) in enumerate(zip(candidates, measures, strict=True)):
        state, wait = USABLE, 0
        if m.cooling is not None and m.cooling.startswith(RATE_FLAG):
            state, wait = RATE_LIMITED, max(1, math.ceil(float(m.cooling[1:]) - now))
        elif m.cooling is not None:
            state = COOLING
        elif c.rpm and m.requests >= c.rpm:
            state = AT_RPM
        elif c.tpm and m.tokens >= c.tpm:
            state = AT_TPM
        metric = 0.0
        if code == LEAST_BUSY:
            metric = m.in_flight
        elif code == LATENCY:
            first, second = (m.ttft, m.latency) if stream else (m.latency, m.ttft)
            metric = first if first is not None else second if second is not None else 0.0
        elif code == USAGE:
            metric = max(m.requests / c.rpm if c.rpm else 0.0, m.tokens / c.tpm if c.tpm else 0.0)
        rows.append((c.group, metric, i, state, wait))
    rows.sort()
    return [(i, state, wait) for _, _, i, state, wait in rows]


@dataclass(frozen=True, slots=True)
class Ended:
    """A request that ended: what it held and what it used, for ``Tally``."""

    tenant_id: int
    request_id: str
    taken: tuple[int, ...]  # provider models it was counted in flight on
    served: int | None  # the provider model that answered
    tokens: int
    latency_ms: float | None  # the answering attempt's (time to first event for a stream)
    stream: bool


class Tally:
    """Releases ended requests in batches: one Redis pipeline every TALLY_SECONDS at most,
    off the request path. What a batch could not release (Redis unreachable) is dropped and
    logged: in-flight entries lapse by themselves (IN_FLIGHT_SECONDS), and the tpm counters of
    those minutes count less."""

    def __init__(self, state):
        self.state = state
        self.pending: list[Ended] = []
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.dropped = 0  # requests not released since the last warning
        self._logged = -LOG_SECONDS

    def add(self, ended: Ended) -> None:
        self.pending.append(ended)
        if len(self.pending) == 1:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(TALLY_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            await self.state.traffic_settle(batch)
        except Exception as exc:  # noqa: BLE001 - best effort; see the class docstring
            self.dropped += len(batch)
            now = time.monotonic()
            if now - self._logged >= LOG_SECONDS:  # not every 100 ms while Redis is down
                self._logged = now
                log.warning("Deployment traffic of %d requests not released (%d since the last warning): %s",
                            len(batch), self.dropped, exc)
                self.dropped = 0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()
