"""Latency histograms for provider health.

The ledger writer adds every request to two ``HealthBucket`` rows: its 5-minute slot and
its hour slot (UTC), under its provider, model and latency bucket. The providers page then
reads a few hundred histogram rows for the last hour or day, whatever the traffic, instead
of the latencies of every ledger row.

**Buckets.** ``bucket = floor(8 · log2(latency_ms + 1))``: eight buckets per doubling, each
about 9 % wider than the one below (HDR-histogram style), so 0 ms to 10 minutes fits in
~155 buckets and a percentile read from them is within ~5 % of the exact one (linear inside
the bucket that holds it).

**Windows.** "Last hour" sums the 5-minute slots that start at or after ``now - 1 h``
rounded down to 5 minutes, "last day" the hour slots from ``now - 24 h`` rounded down to the
hour: up to 5 minutes (an hour) more than the window, never less."""

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

SLOTS = (300, 3600)  # seconds: the 5-minute and the hour slots
WINDOW_SLOT = {"hour": (timedelta(hours=1), 300), "day": (timedelta(days=1), 3600)}
PER_DOUBLING = 8
KEEP_DAYS = 2  # the retention task deletes slots older than this


def latency_bucket(latency_ms: int) -> int:
    return int(PER_DOUBLING * math.log2(max(latency_ms, 0) + 1))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """The latencies (ms) bucket ``bucket`` holds: [low, high)."""
    return 2 ** (bucket / PER_DOUBLING) - 1, 2 ** ((bucket + 1) / PER_DOUBLING) - 1


def slot_start(at: datetime, span: int) -> datetime:
    """The start of the ``span``-second slot (UTC) ``at`` falls in."""
    seconds = int(at.timestamp())
    return datetime.fromtimestamp(seconds - seconds % span, UTC)


def window_start(window: str, now: datetime) -> tuple[datetime, int]:
    """(first slot start, slot span) of the window ``hour`` or ``day`` ending ``now``."""
    length, span = WINDOW_SLOT[window]
    return slot_start(now - length, span), span


def histogram_percentile(histogram: Iterable[tuple[int, int]], fraction: float) -> float | None:
    """The ``fraction`` percentile (0..1) of a histogram given as (bucket, count) pairs, as
    ``percentile_cont`` would give it over the samples: the ``count`` samples of a bucket are
    taken as spread evenly across it, and the rank ``fraction · (n - 1)`` is interpolated
    between the two samples around it."""
    pairs = sorted((b, n) for b, n in histogram if n > 0)
    total = sum(n for _, n in pairs)
    if not total:
        return None
    rank = min(max(fraction, 0.0), 1.0) * (total - 1)
    below = int(rank)
    values = []
    seen = 0
    for bucket, count in pairs:  # the samples number `below` and `below + 1`
        while len(values) < 2 and below + len(values) < seen + count:
            low, high = bucket_bounds(bucket)
            values.append(low + (high - low) * (below + len(values) - seen + 0.5) / count)
        if len(values) == 2:
            break
        seen += count
    if len(values) == 1:  # the rank is the last sample
        return values[0]
    return values[0] + (values[1] - values[0]) * (rank - below)
