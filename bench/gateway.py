"""Tollgate's data plane against the upstream alone, the Python floor and LiteLLM, in one run
(bench/harness.py).

    bash bench/setup.sh                                  # wrk + LiteLLM's virtualenv, once
    .venv/bin/python bench/gateway.py [--duration 10]    # the table
    .venv/bin/python bench/gateway.py --memory 100000    # worker RSS over 100k requests
    .venv/bin/python bench/gateway.py --doors            # the /v1/messages and /v1/responses doors
                                                         # side by side with /v1/chat/completions
    .venv/bin/python bench/gateway.py --journal --repeat 3   # the usage journal's cost: without it,
                                                         # as configured, with fsync every 10 ms
    .venv/bin/python bench/gateway.py --deployments --repeat 3   # an alias of four weighted
                                                         # deployments against a single-target model
    .venv/bin/python bench/gateway.py --scopes --repeat 5   # a request in four scopes with tokens-
                                                         # per-minute limits against one scope
    git worktree add /tmp/before <commit>                # an earlier version, side by side:
    .venv/bin/python bench/gateway.py --baseline-repo /tmp/before \
        --targets upstream,floor,tollgate-baseline,tollgate --repeat 3

Tollgate runs as in production, one worker: uvicorn (uvloop, httptools), DEBUG off, PostgreSQL
(database tollgate_bench) and Redis (db 1). Every request is authenticated with a chat key,
resolved against the tenant's routing table, admitted by the rate limiter (the tenant has
requests-per-minute and tokens-per-day limits, so the Redis script runs), relayed with aiohttp
and written to the usage ledger. ``floor`` (bench/floor.py) is the same server stack relaying
without any of that: the table gives Tollgate's req/s as a fraction of it.

``--doors`` (the targets ``tollgate-messages``, ``tollgate-responses``,
``tollgate-messages-translated`` and ``tollgate-chat-to-anthropic``) measures the other doors
against ``tollgate`` (Chat Completions relayed to an OpenAI-compatible provider): the same
server and tenant, whose loopback upstream is also registered as an Anthropic and an OpenAI
provider; a second table gives each door's req/s and p50 added as ratios of ``tollgate``'s,
against the issue's goals (relayed: ≤ 10 % worse; translated: within 1.5×; TTFB added < 1 ms).

``--journal`` (issue #17, "Proof") measures what the usage journal costs, interleaved in one run
(use ``--repeat 3``): ``tollgate-nojournal`` (``GATEWAY_JOURNAL=false``), ``tollgate`` (the
journal as configured by default) and ``tollgate-fsync`` (``GATEWAY_JOURNAL_FSYNC_MS=10``); a
second table gives ``tollgate``'s and ``tollgate-fsync``'s req/s and p50 added as ratios of
``tollgate-nojournal``'s. Every Tollgate target gets a fresh VAR_DIR of its own (under
bench/results/var/, on the disk the results go to, removed afterwards), so no journal or spool
is left for the next target or a development server.
"""

import argparse
import atexit
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness import (  # noqa: E402
    CHAT,
    MESSAGES,
    RESPONSES,
    BenchContext,
    Target,
    free_port,
    main,
    register_comparison,
    register_target,
)

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
PYTHON = str(REPO / ".venv" / "bin" / "python")


VAR_ROOT = BENCH / "results" / "var"
_var_dirs = itertools.count(1)


def fresh_var_dir(name: str) -> dict[str, str]:
    """The environment of an empty VAR_DIR for one Tollgate process (its journal, in
    VAR_DIR/journal, its spool and metrics files), removed at exit. Under bench/results rather
    than /tmp: /tmp may be a tmpfs, where fsync costs nothing."""
    path = VAR_ROOT / f"{name}-{os.getpid()}-{next(_var_dirs)}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return {"VAR_DIR": str(path), "GATEWAY_JOURNAL_DIR": ""}


def tollgate_env(database_url: str = DATABASE_URL, redis_url: str = REDIS_URL) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DEBUG="false", ENV_FILE="/dev/null", SECRET_KEY="bench-" + "k" * 60,
        ENCRYPTION_KEYS="ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzJieXRlcyE=", ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false", ALLOW_PRIVATE_PROVIDER_URLS="true", LOG_LEVEL="INFO", LOG_FORMAT="json",
        DATABASE_URL=database_url, REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def setup_tenant(upstream_base_url: str, model: str, repo: Path = REPO, database_url: str = DATABASE_URL,
                 redis_url: str = REDIS_URL) -> dict:
    """In a fresh process: migrate the bench database and create the tenant, its providers
    (the upstream as OpenAI-compatible ``up``, Anthropic ``ant`` and OpenAI ``oai``), and a chat
    key. Returns the key, the tenant's id and the three model names."""
    upstream_root = upstream_base_url.rstrip("/").removesuffix("/v1")
    code = f"""
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tenants.models import Tenant
from billing.models import UsageLog
from providers.models import Provider
from providers.services import provider_create
from providers.sync import provider_sync
from tenants.services import tenant_create, tenant_update
from tenants.access import SYSTEM
UsageLog.objects.filter(tenant__slug="bench").delete()
Provider.objects.filter(owner__slug="bench").delete()
Tenant.objects.filter(slug="bench").delete()
created = tenant_create(slug="bench", name="Bench")
tenant_update(tenant=created.tenant, actor=SYSTEM,
              changes={{"requests_per_minute": 100_000_000, "tokens_per_day": 10**15}})
# The same loopback upstream as three providers: OpenAI-compatible (chat), Anthropic (its
# /v1/messages) and OpenAI (its /v1/responses, which the Responses door relays to).
for name, base_url, provider_type in (("up", {upstream_base_url!r}, "openai_compatible"),
                                      ("ant", {upstream_root!r}, "anthropic"),
                                      ("oai", {upstream_base_url!r}, "openai")):
    provider = provider_create(owner=created.tenant, data={{"name": name, "base_url": base_url,
                                                           "provider_type": provider_type,
                                                           "api_key": "sk-bench-upstream-dummy"}})
    provider_sync(provider=provider)
# Three more OpenAI-compatible providers on the same upstream: with ``up``, the four weighted
# deployments (1:2:3:4, one priority group) of the alias ``spread`` (--deployments).
for name in ("up2", "up3", "up4"):
    provider = provider_create(owner=created.tenant, data={{"name": name, "base_url": {upstream_base_url!r},
                                                           "provider_type": "openai_compatible",
                                                           "api_key": "sk-bench-upstream-dummy"}})
    provider_sync(provider=provider)
from providers.services import alias_create
alias_create(tenant=created.tenant, actor=SYSTEM, data={{
    "name": "spread", "targets": [{{"model": f"{{n}}:{model}", "priority": 0, "weight": w}}
                                  for n, w in (("up", 1), ("up2", 2), ("up3", 3), ("up4", 4))]}})
# A key of its own project, for --scopes: its requests fall in four scopes (the tenant, project
# ``scoped``, the key, the end user the bench names), each with requests-per-minute and
# tokens-per-minute limits far above what the bench sends (tokens per minute reserve each
# request's worst case at admission), the tenant also with its tokens per day.
from billing.models import LimitRule
from tenants.models import ApiKey, Project
from tenants.services import api_key_create, project_create
project = project_create(tenant=created.tenant, slug="scoped", name="Scoped", actor=SYSTEM)
Project.objects.filter(pk=project.pk).update(requests_per_minute=100_000_000, tokens_per_minute=10**15)
scoped, scoped_key = api_key_create(tenant=created.tenant, name="scoped", project=project, actor=SYSTEM)
ApiKey.objects.filter(pk=scoped.pk).update(requests_per_minute=100_000_000, tokens_per_minute=10**15)
LimitRule.objects.create(tenant=created.tenant, scope="end_user", project=project, requests_per_minute=100_000_000,
                         tokens_per_minute=10**15)
print(json.dumps({{"key": created.chat_key, "scoped_key": scoped_key, "tenant_id": created.tenant.pk,
                  "model": "up:{model}",
                  "anthropic_model": "ant:{model}", "openai_model": "oai:{model}", "alias_model": "spread"}}))
"""
    env = tollgate_env(database_url, redis_url)
    subprocess.run([PYTHON, "-c", "import psycopg; c=psycopg.connect('" + database_url.rsplit("/", 1)[0]
                    + "/postgres', autocommit=True); n='" + database_url.rsplit("/", 1)[1] + "';"
                    "c.execute('SELECT 1 FROM pg_database WHERE datname=%s',[n]).fetchone() or "
                    "c.execute(f'CREATE DATABASE \"{n}\"')"], check=True, env=env)
    out = subprocess.run([PYTHON, "-c", code], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def uvicorn_argv(port: int, app: str = "config.asgi:application") -> list[str]:
    return [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning"]


def tollgate_factory(name: str, extra_env: dict[str, str] | None = None):
    """A Tollgate target: the bench tenant's Chat Completions relayed to the upstream, one worker
    with a fresh VAR_DIR, ``extra_env`` added to its environment."""

    def start(ctx: BenchContext) -> Target:
        info = setup_tenant(ctx.upstream_base_url, ctx.model)
        port = free_port()
        ctx.count_as_target("postgres", "redis-server")
        env = {**tollgate_env(), **fresh_var_dir(name), **(extra_env or {})}
        ctx.start(name, uvicorn_argv(port), env=env, cwd=str(REPO), cpus=ctx.cpus.servers,
                  ready_url=f"http://127.0.0.1:{port}/healthz")
        return Target(name, f"http://127.0.0.1:{port}/v1", info["key"], info["model"])

    return start


register_target("tollgate", tollgate_factory("tollgate"))

# The usage journal's cost (issue #17): without it, as configured by default, and with an fsync
# every 10 ms; each compared with the one without. The goal: req/s at 16 connections
# within 5 % and p50 added at 1 connection within 0.05 ms (max cost 1.05: req/s ≥ 0.952 of it,
# p50 added ≤ 1.05 × its ≈ +0.033 ms on this machine, stricter than 0.05 ms).
JOURNAL_TARGETS = (
    ("tollgate-nojournal", {"GATEWAY_JOURNAL": "false"}),
    ("tollgate-fsync", {"GATEWAY_JOURNAL_FSYNC_MS": "10"}),
)
JOURNAL_RUN = "upstream,tollgate-nojournal,tollgate,tollgate-fsync"
for _name, _env in JOURNAL_TARGETS:
    register_target(_name, tollgate_factory(_name, _env))
register_comparison("tollgate", "tollgate-nojournal", 1.05)
register_comparison("tollgate-fsync", "tollgate-nojournal", 1.05)

# The doors side by side (issue #13, "Speed"): (name, door, which provider's model, max cost vs tollgate).
# Relayed: the client's API is the provider's own; translated: Tollgate converts between the two.
DOOR_TARGETS = (
    ("tollgate-messages", MESSAGES, "anthropic_model", 1.1),  # Messages relayed to Anthropic
    ("tollgate-responses", RESPONSES, "openai_model", 1.1),  # Responses relayed to OpenAI's /v1/responses
    ("tollgate-messages-translated", MESSAGES, "model", 1.5),  # Messages to an OpenAI-compatible provider
    ("tollgate-chat-to-anthropic", CHAT, "anthropic_model", 1.5),  # Chat Completions to Anthropic
)
DOORS_RUN = "upstream," + ",".join(["tollgate", *(name for name, *_ in DOOR_TARGETS)])


def door_factory(name: str, door: str, model_key: str, key: str = "key",
                 extra_headers: tuple[tuple[str, str], ...] = ()):
    """A Tollgate target (same server and tenant as ``tollgate``) called through ``door`` with the
    model of one of the tenant's providers, with one of the keys setup_tenant made (``key``) and
    ``extra_headers`` on every request."""

    def start(ctx: BenchContext) -> Target:
        info = setup_tenant(ctx.upstream_base_url, ctx.model)
        port = free_port()
        ctx.count_as_target("postgres", "redis-server")
        env = {**tollgate_env(), **fresh_var_dir(name)}
        ctx.start(name, uvicorn_argv(port), env=env, cwd=str(REPO), cpus=ctx.cpus.servers,
                  ready_url=f"http://127.0.0.1:{port}/healthz")
        return Target(name, f"http://127.0.0.1:{port}/v1", info[key], info[model_key], door, extra_headers)

    return start


for _name, _door, _model_key, _max_cost in DOOR_TARGETS:
    register_target(_name, door_factory(_name, _door, _model_key))
    register_comparison(_name, "tollgate", _max_cost)

# Routing across deployments (issue #14, "Speed"): the alias ``spread`` of four weighted
# deployments against ``tollgate``'s single-target model; the goal: req/s at 16 connections and
# p50 added at 1 within 5 % (max cost 1.05).
register_target("tollgate-deployments", door_factory("tollgate-deployments", CHAT, "alias_model"))
register_comparison("tollgate-deployments", "tollgate", 1.05)
DEPLOYMENTS_RUN = "upstream,tollgate,tollgate-deployments"


# Limits in every scope (issue #16, "Speed"): ``tollgate`` (the tenant's requests per minute and
# tokens per day: one scope) against the same server and tenant called with a key of project
# ``scoped`` naming an end user: four scopes (the tenant's limits as for ``tollgate``; the project,
# the key and the end user each with requests- and tokens-per-minute limits), all in the one
# admission round trip. The goal: within 5 % (max cost 1.05).
register_target("tollgate-scopes", door_factory("tollgate-scopes", CHAT, "model", key="scoped_key",
                                                extra_headers=(("x-tollgate-end-user", "bench-end-user"),)))
register_comparison("tollgate-scopes", "tollgate", 1.05)
SCOPES_RUN = "upstream,tollgate,tollgate-scopes"


def start_floor(ctx: BenchContext) -> Target:
    """``floor``: bench/floor.py, a raw ASGI app relaying each chat completion to the upstream with
    one aiohttp session (no auth, no accounting), on Tollgate's uvicorn settings: the most a
    Python gateway on this stack could do. Tollgate's req/s as a fraction of it is in the table."""
    port = free_port()
    ctx.start("floor", [*uvicorn_argv(port, "floor:app"), "--app-dir", str(BENCH)],
              env={**os.environ, "BENCH_UPSTREAM_BASE_URL": ctx.upstream_base_url}, cwd=str(REPO),
              cpus=ctx.cpus.servers, ready_url=f"http://127.0.0.1:{port}/healthz")
    return Target("floor", f"http://127.0.0.1:{port}/v1", "sk-bench-floor-unused", ctx.model)


register_target("floor", start_floor)


def baseline_factory(repo: Path):
    """``tollgate-baseline``: the same set-up served by another checkout (a git worktree of an
    earlier commit, say), with its own database and Redis db, to compare two versions side by
    side in one run. It runs on this checkout's virtualenv (the worktree's own code is imported
    first, from its working directory)."""
    database_url, redis_url = DATABASE_URL + "_baseline", REDIS_URL.rsplit("/", 1)[0] + "/8"

    def start(ctx: BenchContext) -> Target:
        info = setup_tenant(ctx.upstream_base_url, ctx.model, repo, database_url, redis_url)
        port = free_port()
        ctx.count_as_target("postgres", "redis-server")
        env = {**tollgate_env(database_url, redis_url), **fresh_var_dir("tollgate-baseline")}
        ctx.start("tollgate-baseline", uvicorn_argv(port), env=env, cwd=str(repo),
                  cpus=ctx.cpus.servers, ready_url=f"http://127.0.0.1:{port}/healthz")
        return Target("tollgate-baseline", f"http://127.0.0.1:{port}/v1", info["key"], info["model"])

    return start


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_run(total: int) -> int:
    """Send ``total`` requests (16 at a time) to one Tollgate worker and report its RSS as it
    goes, plus the ledger rows written versus requests answered."""
    import asyncio

    import aiohttp
    from harness import ProcessSet, start_upstream  # noqa: PLC0415

    procs = ProcessSet()
    try:
        _, base = start_upstream(procs, cpus="1")
        info = setup_tenant(base, "bench-model")
        port = free_port()
        server = procs.start("tollgate", uvicorn_argv(port), cwd=str(REPO), cpus="1",
                             env={**tollgate_env(), **fresh_var_dir("tollgate")},
                             ready_url=f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = json.dumps({"model": info["model"], "messages": [{"role": "user", "content": "hi"}]}).encode()
        headers = {"Authorization": f"Bearer {info['key']}", "Content-Type": "application/json"}
        samples: list[tuple[int, int]] = []
        answered = 0

        async def run():
            nonlocal answered
            async with aiohttp.ClientSession() as session:
                async def one():
                    nonlocal answered
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status == 200:
                            answered += 1
                sent = 0
                while sent < total:
                    batch = min(1000, total - sent)
                    sem = asyncio.Semaphore(16)

                    async def gated():
                        async with sem:  # noqa: B023 -- gathered to the end within this iteration
                            await one()
                    await asyncio.gather(*(gated() for _ in range(batch)))
                    sent += batch
                    if sent % 10_000 == 0 or sent == total:
                        samples.append((sent, rss_kib(server.pid)))
        started = time.monotonic()
        asyncio.run(run())
        took = time.monotonic() - started
        time.sleep(1.0)  # one more flush of the usage buffer
        rows = subprocess.run(
            [PYTHON, "-c", "import django; django.setup(); from billing.models import UsageLog; "
             f"print(UsageLog.objects.filter(tenant_id={info['tenant_id']}).count())"],
            cwd=REPO, env=tollgate_env(), capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
    finally:
        procs.stop_all()
    print(f"\nOne Tollgate worker, {total} requests at 16 concurrent ({total / took:.0f} req/s incl. client)\n")
    print("| requests sent | worker RSS MiB |")
    print("|---:|---:|")
    for sent, kib in samples:
        print(f"| {sent} | {kib / 1024:.1f} |")
    first, last = samples[0][1], samples[-1][1]
    print(f"\nRSS after {samples[0][0]}: {first / 1024:.1f} MiB; after {samples[-1][0]}: {last / 1024:.1f} MiB "
          f"({(last - first) / 1024:+.1f} MiB)")
    print(f"ledger rows written: {rows}; requests answered 200: {answered} (plus the readiness check)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--memory", type=int, default=0)
    parser.add_argument("--baseline-repo", type=Path, default=None)
    parser.add_argument("--doors", action="store_true")
    parser.add_argument("--journal", action="store_true")
    parser.add_argument("--deployments", action="store_true")
    parser.add_argument("--scopes", action="store_true")
    known, rest = parser.parse_known_args()
    if known.memory:
        sys.exit(memory_run(known.memory))
    targets = (DOORS_RUN if known.doors else JOURNAL_RUN if known.journal else DEPLOYMENTS_RUN if known.deployments
               else SCOPES_RUN if known.scopes else "upstream,floor,tollgate,litellm")
    if known.baseline_repo:
        register_target("tollgate-baseline", baseline_factory(known.baseline_repo.resolve()))
        targets = "upstream,floor,tollgate-baseline,tollgate,litellm"
    sys.exit(main(["--targets", targets, *rest]))
