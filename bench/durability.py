"""What a Tollgate worker killed with SIGKILL under full load loses from the usage ledger
(issue #17, "Proof"): the full-speed twin of tests/gateway/test_durability.py.

    .venv/bin/python bench/durability.py                          # 3 runs x 5 s, 16 connections, plain chat
    .venv/bin/python bench/durability.py --stream --doors chat,messages,responses
    .venv/bin/python bench/durability.py --env GATEWAY_JOURNAL=false --env GATEWAY_JOURNAL_FSYNC_MS=10

Each run: the loopback upstream (bench/upstream.py) and one Tollgate worker (uvicorn, uvloop,
httptools, DEBUG off; PostgreSQL database ``tollgate_bench_durability``, Redis db 1, as
bench/gateway.py sets them up: a fresh ``bench`` tenant, its key and providers, plus a tenant
budget so every request holds a reservation) on the server CPU, with a fresh VAR_DIR (under
bench/results/var/, on a real disk: /tmp may be a tmpfs, where fsync costs nothing). A load
generator in a second process, pinned to the other CPU (aiohttp, uvloop), keeps
``--connections`` requests in flight for ``--seconds`` and then SIGKILLs the worker's process
group itself (it stops sending first, so no request is sent to a dead worker). It counts, by
x-request-id: answered (the whole answer arrived: a 200 with its body, or a stream's terminal
event: ``data: [DONE]``, ``event: message_stop``, ``event: response.completed``), started (a
stream's headers arrived, its terminal event did not) and cut (in flight, no headers: id
unknown). A second worker then starts on the same VAR_DIR (its start-up replays the dead
worker's journal, when there is one); the run waits until the ledger holds every answered and
started request (or stops changing), stops that worker cleanly and reads the ledger.

One markdown table row per run (stdout; progress on stderr):

- answered, started: the client's counts; req/s: answered ÷ seconds of load;
- recorded / missing: answered requests with / without a ledger row;
- duplicates: request ids with more than one row, plus rollup requests (TenantDaily) beyond
  the ledger's rows (a record counted twice);
- partial rows: started streams recorded with status ``partial`` (of started);
- unseen rows: rows whose id the client never saw (at most ``cut``);
- reservations left: budget reservations still held afterwards for requests the ledger holds
  (and in all);
- replay s: from the second worker's start until the ledger held every answered and started
  request (``—`` if it never did).

The Tollgate processes take the environment (``GATEWAY_JOURNAL=false`` etc.), and ``--env
NAME=VALUE`` adds to it. Databases and Redis: ``BENCH_DATABASE_URL`` (its name gets
``_durability``) and ``BENCH_REDIS_URL``, as in bench/gateway.py."""

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness import (  # noqa: E402
    CHAT,
    MESSAGES,
    RESPONSES,
    CpuPlan,
    ProcessSet,
    Target,
    free_port,
    install_signal_handlers,
    log,
    start_upstream,
)

# bench/gateway.py: its set-up of the tenant and the worker (loaded by path: ``gateway`` is the
# project's package).
_spec = importlib.util.spec_from_file_location("bench_gateway", BENCH / "gateway.py")
bench_gateway = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_gateway)

DATABASE_URL = bench_gateway.DATABASE_URL + "_durability"
REDIS_URL = bench_gateway.REDIS_URL
PYTHON = bench_gateway.PYTHON
TERMINAL = {CHAT: b"data: [DONE]", MESSAGES: b"event: message_stop", RESPONSES: b"event: response.completed"}
MODEL_OF_DOOR = {CHAT: "model", MESSAGES: "anthropic_model", RESPONSES: "openai_model"}  # relayed


# --- the load generator (its own process) ---------------------------------------------------

async def _load(spec: dict) -> dict:
    import aiohttp

    targets = [Target("tollgate", spec["base_url"], spec["key"], model, door) for door, model in spec["doors"]]
    requests = [(t.url, t.headers(), t.body(spec["stream"]), TERMINAL[t.door] if spec["stream"] else None)
                for t in targets]
    answered: list[str] = []
    started: list[str] = []
    cut = 0
    statuses: Counter = Counter()
    stop = asyncio.Event()

    async def one(session, url, headers, body, terminal) -> None:
        nonlocal cut
        request_id, state = "", "cut"
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                request_id = resp.headers.get("x-request-id", "")
                statuses[resp.status] += 1
                if terminal is None or resp.status != 200:
                    await resp.read()
                    state = "answered"
                else:
                    state = "started"
                    async for line in resp.content:
                        if line.rstrip(b"\r\n") == terminal:
                            state = "answered"
        except (TimeoutError, aiohttp.ClientError):
            pass
        if state == "answered":
            answered.append(request_id)
        elif state == "started":
            started.append(request_id)
        else:
            cut += 1

    connector = aiohttp.TCPConnector(limit=spec["connections"])
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def client(n: int) -> None:
            while not stop.is_set():
                await one(session, *requests[n % len(requests)])
                n += 1

        clients = [asyncio.create_task(client(n)) for n in range(spec["connections"])]
        began = time.monotonic()
        await asyncio.sleep(spec["seconds"])
        stop.set()
        os.killpg(spec["worker_pid"], signal.SIGKILL)
        loaded = time.monotonic() - began
        await asyncio.gather(*clients)
    return {"answered": answered, "started": started, "cut": cut, "statuses": dict(statuses), "loaded_s": loaded}


def loadgen_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        import uvloop
        result = uvloop.run(_load(spec))
    except ImportError:
        result = asyncio.run(_load(spec))
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


# --- the ledger, the budget ----------------------------------------------------------------

def ledger(database_url: str, tenant_id: int) -> tuple[dict[str, list[str]], int]:
    """request id -> statuses of its rows, and the rollup's request count."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows: dict[str, list[str]] = {}
        for request_id, status in conn.execute(
                "SELECT request_id, status FROM billing_usagelog WHERE tenant_id = %s", [tenant_id]):
            rows.setdefault(request_id, []).append(status)
        rolled = conn.execute("SELECT coalesce(sum(requests), 0) FROM billing_tenantdaily WHERE tenant_id = %s",
                              [tenant_id]).fetchone()[0]
    return rows, int(rolled)


def ledger_ids(database_url: str, tenant_id: int) -> set[str]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT request_id FROM billing_usagelog WHERE tenant_id = %s",
                                           [tenant_id])}


def reservations_held(redis_url: str, tenant_id: int) -> set[str]:
    """Request ids still holding a reservation in the tenant scope (billing.spend's keys)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return {k.decode() for k in client.hkeys(f"tg:resv:t{tenant_id}:amt")}
    finally:
        client.close()


def add_budget(env: dict[str, str], tenant_id: int) -> None:
    """A tenant budget, and prices on the bench models (gpt-4o-mini's): a request of an unpriced
    model reserves nothing."""
    import subprocess

    code = ("import django; django.setup(); from decimal import Decimal; from billing.models import Budget; "
            "from providers.models import ProviderModel; "
            f"ProviderModel.objects.filter(provider__owner_id={tenant_id}).update(input_price=Decimal('0.15'), "
            "output_price=Decimal('0.6'), cached_input_price=Decimal('0.075'), price_source='manual'); "
            f"Budget.objects.create(tenant_id={tenant_id}, name='Durability cap', amount=Decimal('1000000'), "
            "action='block')")
    subprocess.run([PYTHON, "-c", code], cwd=REPO, env=env, check=True, capture_output=True)


# --- one run -------------------------------------------------------------------------------

def one_run(number: int, args: argparse.Namespace, cpus: CpuPlan, log_dir: Path) -> dict:
    extra = dict(item.split("=", 1) for item in args.env)
    env = {**bench_gateway.tollgate_env(DATABASE_URL, REDIS_URL),
           **bench_gateway.fresh_var_dir(f"durability-run{number}"), **extra}  # both workers' VAR_DIR
    chunk_delay = args.chunk_delay_ms if args.chunk_delay_ms is not None else (1.0 if args.stream else 0.0)
    with ProcessSet(log_dir / f"run{number}") as procs, tempfile.TemporaryDirectory(prefix="tg-durability-") as tmp:
        _, upstream = start_upstream(procs, cpus=cpus.servers, chunk_delay_ms=chunk_delay)
        info = bench_gateway.setup_tenant(upstream, "bench-model", database_url=DATABASE_URL, redis_url=REDIS_URL)
        if args.budget:
            add_budget(env, info["tenant_id"])
        port = free_port()
        first = procs.start("tollgate-1", bench_gateway.uvicorn_argv(port), env=env, cwd=str(REPO),
                            cpus=cpus.servers, ready_url=f"http://127.0.0.1:{port}/healthz")
        spec = {"base_url": f"http://127.0.0.1:{port}/v1", "key": info["key"], "stream": args.stream,
                "doors": [(door, info[MODEL_OF_DOOR[door]]) for door in args.doors],
                "connections": args.connections, "seconds": args.seconds, "worker_pid": first.pid,
                "out": str(Path(tmp) / "load.json")}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        log(f"run {number}: {args.connections} connections for {args.seconds:g} s, then SIGKILL")
        load = procs.start("loadgen", [PYTHON, str(Path(__file__).resolve()), "--loadgen",
                                       str(Path(tmp) / "spec.json")], cwd=str(REPO), cpus=cpus.loadgen)
        load.popen.wait(timeout=args.seconds + 120)
        first.popen.wait(timeout=10)
        result = json.loads(Path(spec["out"]).read_text())
        answered, started = set(result["answered"]), set(result["started"])
        expected = answered | started

        began = time.monotonic()
        second = procs.start("tollgate-2", bench_gateway.uvicorn_argv(port), env=env, cwd=str(REPO),
                             cpus=cpus.servers, ready_url=f"http://127.0.0.1:{port}/healthz")
        ready_s = time.monotonic() - began
        replay_s = None
        seen, changed = -1, time.monotonic()
        while time.monotonic() - began < args.replay_timeout:
            ids = ledger_ids(DATABASE_URL, info["tenant_id"])
            if expected <= ids:
                replay_s = time.monotonic() - began
                break
            if len(ids) != seen:
                seen, changed = len(ids), time.monotonic()
            elif time.monotonic() - changed > args.settle:
                break  # the ledger stopped changing without them
            time.sleep(0.05)
        second.stop(grace_s=30)  # a clean stop writes what it still holds
        rows, rolled = ledger(DATABASE_URL, info["tenant_id"])
        held = reservations_held(REDIS_URL, info["tenant_id"]) if args.budget else set()
    recorded = len(answered & rows.keys())
    partial = sum(1 for request_id in started if rows.get(request_id) == ["partial"])
    duplicates = sum(1 for statuses in rows.values() if len(statuses) > 1) + max(0, rolled - len(rows))
    return {
        "run": number, "answered": len(answered), "started": len(started), "cut": result["cut"],
        "rps": len(answered) / result["loaded_s"], "recorded": recorded, "missing": len(answered) - recorded,
        "duplicates": duplicates, "partial": partial, "unseen": len(rows.keys() - expected),
        "held_recorded": len(held & rows.keys()), "held": len(held), "ready_s": ready_s, "replay_s": replay_s,
        "statuses": result["statuses"], "rows": len(rows), "rollup": rolled,
    }


def render(results: list[dict], args: argparse.Namespace) -> str:
    what = ("streams" if args.stream else "plain") + " via " + ",".join(args.doors)
    env = " ".join(args.env) or "(defaults)"
    lines = [f"SIGKILL after {args.seconds:g} s at {args.connections} connections, {what}; worker env {env}", "",
             "| run | answered | req/s | recorded | missing | duplicates | started | partial rows | unseen rows "
             "| cut | reservations left | restart ready s | replay s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        replay = f"{r['replay_s']:.2f}" if r["replay_s"] is not None else "—"
        lines.append(f"| {r['run']} | {r['answered']:,} | {r['rps']:,.0f} | {r['recorded']:,} | {r['missing']:,} "
                     f"| {r['duplicates']} | {r['started']} | {r['partial']} | {r['unseen']} | {r['cut']} "
                     f"| {r['held_recorded']} ({r['held']}) | {r['ready_s']:.2f} | {replay} |")
    if len(results) > 1:
        lines.append(f"\nmissing per run: median {statistics.median(r['missing'] for r in results):,.0f}, "
                     f"total {sum(r['missing'] for r in results):,} of {sum(r['answered'] for r in results):,} "
                     "answered")
    odd = [f"run {r['run']}: answers {r['statuses']}" for r in results if set(r["statuses"]) - {"200"}]
    lines += [f"- {line}" for line in odd]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="load before the SIGKILL")
    parser.add_argument("--stream", action="store_true", help="streamed requests (default: plain answers)")
    parser.add_argument("--doors", default=CHAT, help="chat,messages,responses (round robin; relayed)")
    parser.add_argument("--chunk-delay-ms", type=float, default=None,
                        help="upstream pause between stream events (default 1 with --stream, else 0)")
    parser.add_argument("--no-budget", dest="budget", action="store_false", help="no tenant budget")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for the Tollgate workers")
    parser.add_argument("--replay-timeout", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="stop waiting once the ledger has not changed for this long")
    parser.add_argument("--pin", choices=("auto", "none"), default="auto")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loadgen:
        return loadgen_main(args.loadgen)
    args.doors = [door.strip() for door in args.doors.split(",") if door.strip()]
    if unknown := set(args.doors) - set(TERMINAL):
        parser.error(f"unknown doors {sorted(unknown)}; use chat, messages, responses")
    install_signal_handlers()
    cpus = CpuPlan.auto() if args.pin == "auto" else CpuPlan()
    log_dir = BENCH / "results" / "logs" / f"durability-{time.strftime('%Y%m%d-%H%M%S')}"
    results = [one_run(n, args, cpus, log_dir) for n in range(1, args.runs + 1)]
    print(render(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
