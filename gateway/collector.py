"""Garbage-collector settings for a data-plane worker, applied once as it starts serving.

A worker holds about 150,000 objects once Django, the apps and the gateway are loaded, and they live
as long as the process. With CPython's default thresholds (700, 10, 10) the youngest generation is
collected dozens of times a second under load (the requests in flight and the usage rows waiting for
the ledger writer are enough to trip it), so objects that are only briefly alive get promoted until
a full collection runs — every few seconds at 16 connections, each walking all 150,000
objects: 65 ms of CPU with the event loop stopped (measured under bench/gateway.py's load; the largest stall
behind the p99).

So the worker collects once and freezes what start-up created (``gc.freeze``: moved to a generation
the collector never walks; reference counting still frees those objects), and the youngest
generation's threshold is raised so that a request's short-lived objects are freed by reference
counting before a collection ever sees them. Collections still run — for reference cycles — over
what was allocated since start-up only, each a millisecond or less.
"""

import gc

# (generation 0, 1, 2): at most this many new container objects alive before a young
# collection (a few thousand are alive at 16 connections; a young collection of 10,000 is
# ≈ 1 ms); the older generations keep CPython's ratios.
THRESHOLDS = (10_000, 10, 10)


def collector_tune() -> None:
    """Collect, freeze the survivors (start-up's objects), raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
