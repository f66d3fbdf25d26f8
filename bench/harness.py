"""Benchmark harness for the gateway's data plane: a library and a CLI.

What it does, for every target (a base URL with a key, a model and a door: OpenAI Chat
Completions by default, or Anthropic Messages or OpenAI Responses -- ``Target.door``):

1. checks one plain and one streaming request through it (status 200, the door's shapes);
2. for each connection count (default 1 and 16) runs ``wrk`` -- a separate process, pinned to its
   own CPU -- first for a warm-up (default 2 s, discarded), then for the measured duration
   (default 10 s), POSTing a JSON chat body with ``Authorization: Bearer <key>``; a Lua ``done()``
   hook prints exact latency percentiles in microseconds on one parseable line;
3. measures streaming time to first byte: N sequential streaming requests from an asyncio client
   (aiohttp when importable, else raw sockets), timing from just before the request is sent to
   the arrival of the first ``data:`` line; the median is reported.

Then it prints ONE markdown table (stdout; progress goes to stderr): requests/s, p50 and p99 per
target and connection count, the req/s ratio to the reference target (``litellm``), the p50
latency added relative to the baseline target (``upstream``, the loopback server called directly)
and the streaming TTFB with the TTFB added relative to the baseline. Below the table, one line
per other target (e.g. ``tollgate``) checks the goals: req/s at the highest connection count
>= 15x the reference, and p50 added at 1 connection <= 1 ms. Targets registered with
`register_comparison` get a second table: their req/s and p50 added as ratios of another
target's, against a maximum cost, and their stream TTFB added against 1 ms.

CLI::

    python bench/harness.py --targets upstream,litellm [--duration 10] [--warmup 2]

Library (what ``bench/gateway.py`` uses to add Tollgate)::

    from harness import BenchContext, Target, free_port, main, register_target

    def start_tollgate(ctx: BenchContext) -> Target:
        port = free_port()
        ctx.count_as_target("postgres", "redis-server")  # their CPU is the target's, not noise
        ctx.start("tollgate", [...uvicorn argv...], env={...}, cpus=ctx.cpus.servers,
                  ready_url=f"http://127.0.0.1:{port}/healthz")
        return Target("tollgate", f"http://127.0.0.1:{port}/v1", key, ctx.model)

    register_target("tollgate", start_tollgate)
    sys.exit(main(["--targets", "upstream,tollgate,litellm", *sys.argv[1:]]))

Every process is started in its own process group and killed (SIGTERM, then SIGKILL) when its
target is done, on any exception, on SIGTERM/SIGHUP/SIGINT and at interpreter exit; children
also get SIGKILL from the kernel if the harness itself is killed with SIGKILL (PDEATHSIG).

Shared machines: before each measured run the harness waits (up to ``--wait-quiet`` seconds)
until processes outside the benchmark use less than ``--busy-threshold`` CPUs, measures what they
used during the run, and marks tainted figures BUSY MACHINE under the table.

CPU pinning (``--pin auto``, the default when at least 2 CPUs are usable): the load generator
(wrk, and this process while it measures TTFB) runs on the first CPU; every server (the
upstream and the target under test) on the others. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import dataclasses
import datetime as _dt
import http.client
import importlib.metadata
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Self
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
UPSTREAM_SCRIPT = BENCH_DIR / "upstream.py"
LITELLM_CONFIG = BENCH_DIR / "litellm_config.yaml"
DEFAULT_LITELLM_VENV = BENCH_DIR / ".venv-litellm"
DEFAULT_OUT_DIR = BENCH_DIR / "results"
DEFAULT_MODEL = "bench-model"
BASELINE = "upstream"  # the target added latency is measured against
REFERENCE = "litellm"  # the target req/s ratios are measured against
FLOOR = "floor"  # a second req/s ratio, when a target of this name is measured (bench/floor.py)
RESULT_TAG = "BENCH_RESULT"
LOCAL_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


class BenchError(RuntimeError):
    """A benchmark step failed (a process died, a target answered wrongly, wrk failed...)."""


def log(message: str) -> None:
    """Progress output: stderr, so that stdout carries only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ============================================================================================
# Targets and results
# ============================================================================================


CHAT, MESSAGES, RESPONSES = "chat", "messages", "responses"
DOOR_PATHS = {CHAT: "/chat/completions", MESSAGES: "/messages", RESPONSES: "/responses"}
ANTHROPIC_VERSION = "2023-06-01"
PROMPT = "Say hello in five words."


@dataclass(frozen=True)
class Target:
    """An endpoint to measure, through one of three doors (APIs).

    ``base_url`` is the base URL including ``/v1``; ``door`` says which API is called there:
    ``chat`` (OpenAI Chat Completions, ``base_url + "/chat/completions"``, the default),
    ``messages`` (Anthropic Messages, ``/messages``, key in ``x-api-key`` with
    ``anthropic-version``) or ``responses`` (OpenAI Responses, ``/responses``). ``api_key`` is
    sent as ``Authorization: Bearer`` except on the Messages door. A plain
    ``(name, base_url, api_key, model[, door])`` tuple is accepted wherever a Target is.
    """

    name: str
    base_url: str
    api_key: str
    model: str
    door: str = CHAT
    extra_headers: tuple[tuple[str, str], ...] = ()  # sent with every request (e.g. an end user)

    def __post_init__(self) -> None:
        if self.door not in DOOR_PATHS:
            raise ValueError(f"unknown door {self.door!r}; use one of {', '.join(DOOR_PATHS)}")

    @classmethod
    def of(cls, spec: Target | Sequence[str]) -> Target:
        """A Target from a Target or a ``(name, base_url, api_key, model[, door])`` tuple."""
        if isinstance(spec, Target):
            return spec
        name, base_url, api_key, model, *door = spec
        return cls(name, base_url.rstrip("/"), api_key, model, *door)

    @property
    def chat_url(self) -> str:
        """The chat completions URL."""
        return self.base_url.rstrip("/") + DOOR_PATHS[CHAT]

    @property
    def url(self) -> str:
        """The URL requests go to: this target's door."""
        return self.base_url.rstrip("/") + DOOR_PATHS[self.door]

    def headers(self) -> dict[str, str]:
        """Request headers for a JSON POST with this target's key, as its door wants them."""
        if self.door == MESSAGES:
            return {"Content-Type": "application/json", "x-api-key": self.api_key,
                    "anthropic-version": ANTHROPIC_VERSION, **dict(self.extra_headers)}
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}",
                **dict(self.extra_headers)}

    def body(self, stream: bool = False) -> bytes:
        """The request body for this target's door (`chat_body`, `messages_body`, `responses_body`)."""
        return _BODIES[self.door](self.model, stream)


def chat_body(model: str, stream: bool = False) -> bytes:
    """The JSON request body used everywhere: a one-message chat, optionally streamed."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def messages_body(model: str, stream: bool = False) -> bytes:
    """The Anthropic Messages equivalent of `chat_body`."""
    body: dict[str, Any] = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def responses_body(model: str, stream: bool = False) -> bytes:
    """The OpenAI Responses equivalent of `chat_body`."""
    body: dict[str, Any] = {"model": model, "input": PROMPT, "max_output_tokens": 16}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


_BODIES: dict[str, Callable[[str, bool], bytes]] = {
    CHAT: chat_body, MESSAGES: messages_body, RESPONSES: responses_body,
}


@dataclass
class LoadResult:
    """One wrk run against one target at one connection count."""

    target: str
    conns: int
    threads: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]  # connect, read, write, status (non-2xx/3xx), timeout
    runs_rps: list[float] = field(default_factory=list)  # every round's req/s, ascending (median kept)
    runs_p50_ms: list[float] = field(default_factory=list)  # every round's p50 and p99, same order
    runs_p99_ms: list[float] = field(default_factory=list)
    other_cpu: float = 0.0  # CPUs used by processes outside the benchmark during the run
    steal_cpu: float = 0.0  # CPUs taken by the hypervisor during the run

    @property
    def error_count(self) -> int:
        """Socket errors + timeouts + non-2xx/3xx answers."""
        return sum(self.errors.values())


@dataclass
class TtfbResult:
    """Sequential streaming requests against one target."""

    target: str
    client: str  # "aiohttp" or "raw"
    requests: int
    failures: int
    ttfb_p50_ms: float
    ttfb_p90_ms: float
    total_p50_ms: float  # request sent -> end of stream


@dataclass
class TargetReport:
    """Everything measured for one target."""

    target: Target
    load: list[LoadResult] = field(default_factory=list)
    ttfb: TtfbResult | None = None
    startup_s: float | None = None  # time to readiness, when the harness started it
    notes: list[str] = field(default_factory=list)

    def at(self, conns: int) -> LoadResult | None:
        """The load result at ``conns`` connections, if measured."""
        return next((r for r in self.load if r.conns == conns), None)

    def error_count_total(self) -> int:
        """wrk errors of every run plus failed streaming requests."""
        return sum(r.error_count for r in self.load) + (self.ttfb.failures if self.ttfb else 0)


@dataclass
class BenchReport:
    """One benchmark run: configuration, environment and per-target results."""

    config: BenchConfig
    started_at: str
    environment: dict[str, str]
    targets: list[TargetReport] = field(default_factory=list)

    def get(self, name: str) -> TargetReport | None:
        """The report of the target called ``name``."""
        return next((t for t in self.targets if t.target.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole run."""
        return {
            "started_at": self.started_at,
            "environment": self.environment,
            "config": dataclasses.asdict(self.config),
            "targets": [
                {
                    "target": dataclasses.asdict(t.target) | {"api_key": "***"},
                    "startup_s": t.startup_s,
                    "load": [dataclasses.asdict(r) for r in t.load],
                    "ttfb": dataclasses.asdict(t.ttfb) if t.ttfb else None,
                    "notes": t.notes,
                }
                for t in self.targets
            ],
        }


# ============================================================================================
# Configuration and CPU pinning
# ============================================================================================


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the load generator and the servers run on (``taskset -c`` lists).

    ``None`` means "not pinned". `auto()` gives the first usable CPU to the load generator and
    the rest to the servers when there are at least two.
    """

    loadgen: str | None = None
    servers: str | None = None

    @classmethod
    def auto(cls) -> CpuPlan:
        """Split the usable CPUs: first one for the load generator, the others for servers."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return cls()
        return cls(loadgen=str(cpus[0]), servers=",".join(str(c) for c in cpus[1:]))

    def describe(self) -> str:
        """A one-line description for the report."""
        if self.loadgen is None and self.servers is None:
            return "not pinned"
        return (
            f"load generator on CPU {self.loadgen or 'any'}, servers on CPU {self.servers or 'any'}"
        )


@dataclass
class BenchConfig:
    """How to measure. The defaults are the issue's: 1 and 16 connections, 10 s, 2 s warm-up."""

    conns: tuple[int, ...] = (1, 16)
    duration_s: float = 10.0
    warmup_s: float = 2.0
    max_threads: int = 2  # wrk threads = min(conns, max_threads)
    repeat: int = 1  # rounds: every target is measured once per round (started afresh), in order
    pick: str = "median"  # which of the repeats is reported: "median" req/s, or "quietest" machine
    request_timeout_s: float = 10.0  # wrk --timeout: slower answers count as timeouts
    ttfb_requests: int = 200
    ttfb_warmup: int = 20
    ttfb_client: str = "auto"  # auto | aiohttp | raw
    cpus: CpuPlan = field(default_factory=CpuPlan)
    wrk: str = "wrk"
    baseline: str = BASELINE
    reference: str = REFERENCE
    floor: str = FLOOR
    goal_rps_ratio: float = 15.0
    goal_added_p50_ms: float = 1.0
    busy_threshold_cpu: float = 0.15  # other processes above this (in CPUs) taint a run
    wait_quiet_s: float = 30.0  # before each measured run, wait up to this for a quiet machine
    # (target, against, max cost): see `register_comparison`; filled from the registry by the CLI
    comparisons: tuple[tuple[str, str, float], ...] = ()
    goal_added_ttfb_ms: float = 1.0  # comparisons: stream TTFB added must stay under this


# ============================================================================================
# Processes
# ============================================================================================

_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


class ManagedProcess:
    """A child process in its own process group, with its output in a log file.

    ``stop()`` signals the whole group (SIGTERM, then SIGKILL after ``grace_s``), so children
    the process forked (uvicorn workers, Celery...) go too. Every started process is also
    stopped at interpreter exit and on SIGTERM/SIGHUP (see `install_signal_handlers`).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: Path | None = None,
        cpus: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.cpus = cpus
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"bench-{name}-{os.getpid()}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        if self.popen is None:
            raise BenchError(f"{self.name} was not started")
        return self.popen.pid

    def start(self) -> ManagedProcess:
        """Start the process (under ``taskset -c`` when ``cpus`` is set)."""
        argv = self.argv
        if self.cpus is not None:
            argv = ["taskset", "-c", self.cpus, *argv]
        env = dict(os.environ if self.env is None else self.env)
        env.update(LOCAL_ENV)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        with _LIVE_LOCK:
            self.popen = subprocess.Popen(
                argv,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session => own process group, pgid == pid
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run here
            )
            _LIVE.add(self)
        log(
            f"started {self.name} (pid {self.popen.pid}, cpus {self.cpus or 'any'}), log {self.log_path}"
        )
        return self

    def alive(self) -> bool:
        """True while the group leader runs."""
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        """The exit status of the group leader, or None while it runs."""
        return None if self.popen is None else self.popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the process's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the whole process group: SIGTERM, wait up to ``grace_s``, then SIGKILL."""
        popen = self.popen
        if popen is not None:
            _killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {grace_s:.0f} s: SIGKILL")
                _killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=5)
            # Members of the group may outlive the leader.
            _killpg(popen.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        with _LIVE_LOCK:
            _LIVE.discard(self)


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the harness dies without cleaning up (even by
    SIGKILL). Linux only; survives the exec of ``taskset`` and of the program it runs."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all_children() -> None:
    """Stop every process started by this module that is still registered (atexit hook)."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        try:
            proc.stop(grace_s=2.0)
        except Exception as exc:  # noqa: BLE001 - best effort at exit
            print(f"[bench] could not stop {proc.name}: {exc}", file=sys.stderr)


atexit.register(kill_all_children)


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, SIGINT into KeyboardInterrupt, so that
    finally blocks and atexit run. SIGINT is handled even when the shell started us with it
    ignored (a background job); an ignored SIGHUP (nohup) stays ignored. Main thread only.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class ProcessSet:
    """A group of managed processes stopped together (in reverse start order).

    Use as a context manager, or call `stop_all()`.
    """

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.procs: list[ManagedProcess] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        cpus: str | None = None,
        ready_url: str | None = None,
        ready_timeout_s: float = 120.0,
        ready_headers: dict[str, str] | None = None,
    ) -> ManagedProcess:
        """Start a process and, when ``ready_url`` is given, wait until it answers 200 there."""
        log_path = (self.log_dir / f"{name}.log") if self.log_dir else None
        proc = ManagedProcess(name, argv, env=env, cwd=cwd, log_path=log_path, cpus=cpus)
        self.procs.append(proc)
        proc.start()
        if ready_url is not None:
            elapsed = wait_http_ready(
                ready_url, proc=proc, timeout_s=ready_timeout_s, headers=ready_headers
            )
            log(f"{name} ready in {elapsed:.1f} s")
        return proc

    def stop_all(self) -> None:
        """Stop every process of the set, last started first."""
        while self.procs:
            self.procs.pop().stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request without proxies; returns (status, lower-cased headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s
    )
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def wait_http_ready(
    url: str,
    *,
    proc: ManagedProcess | None = None,
    timeout_s: float = 120.0,
    headers: dict[str, str] | None = None,
    interval_s: float = 0.1,
) -> float:
    """Poll ``GET url`` until it answers 200; return the seconds it took.

    Raises `BenchError` (with the end of the process's log) when ``proc`` exits first or when
    ``timeout_s`` passes.
    """
    start = time.monotonic()
    last_error = "no answer"
    while True:
        if proc is not None and not proc.alive():
            raise BenchError(
                f"{proc.name} exited with status {proc.returncode()} before it was ready:\n"
                f"{proc.log_tail()}"
            )
        try:
            status, _headers, body = http_request("GET", url, headers=headers, timeout_s=2.0)
            if status == 200:
                return time.monotonic() - start
            last_error = f"HTTP {status}: {body[:200]!r}"
        except OSError as exc:
            last_error = str(exc)
        if time.monotonic() - start > timeout_s:
            tail = f"\n{proc.log_tail()}" if proc is not None else ""
            raise BenchError(f"{url} not ready after {timeout_s:.0f} s ({last_error}){tail}")
        time.sleep(interval_s)


# ============================================================================================
# Servers the harness knows how to start
# ============================================================================================


def start_upstream(
    procs: ProcessSet,
    *,
    port: int | None = None,
    cpus: str | None = None,
    workers: int = 1,
    chunk_delay_ms: float = 0.0,
    model: str = DEFAULT_MODEL,
    python: str = sys.executable,
) -> tuple[ManagedProcess, str]:
    """Start bench/upstream.py; return the process and its OpenAI base URL (``.../v1``)."""
    port = port or free_port()
    argv = [
        python,
        str(UPSTREAM_SCRIPT),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--model",
        model,
        "--stream-chunk-delay-ms",
        str(chunk_delay_ms),
    ]
    proc = procs.start("upstream", argv, cpus=cpus, ready_url=f"http://127.0.0.1:{port}/health")
    return proc, f"http://127.0.0.1:{port}/v1"


def litellm_version(venv: Path = DEFAULT_LITELLM_VENV) -> str | None:
    """The LiteLLM version installed in ``venv``, or None when it is not installed."""
    marker = venv / ".installed"
    if marker.is_file():
        return marker.read_text().strip() or None
    return None


def start_litellm(
    procs: ProcessSet,
    upstream_base_url: str,
    *,
    port: int | None = None,
    cpus: str | None = None,
    venv: Path = DEFAULT_LITELLM_VENV,
    master_key: str = "sk-bench-litellm-master",
    model: str = DEFAULT_MODEL,
    ready_timeout_s: float = 180.0,
) -> tuple[ManagedProcess, Target]:
    """Start the LiteLLM proxy (no database, one worker) in front of the upstream.

    Uses bench/litellm_config.yaml; the upstream URL and keys are passed in the environment.
    Readiness is ``GET /health/liveliness`` (no auth); expect ~8 s and ~380 MB RSS.
    """
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        raise BenchError(f"{exe} not found: run `bash bench/setup.sh` first")
    port = port or free_port()
    env = dict(os.environ)
    for var in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "STORE_MODEL_IN_DB"):
        env.pop(var, None)  # no database, no cache: the "no DB" configuration
    env.update(
        {
            "BENCH_UPSTREAM_API_BASE": upstream_base_url,
            "BENCH_UPSTREAM_API_KEY": "sk-bench-upstream-dummy",
            "LITELLM_MASTER_KEY": master_key,
            "LITELLM_LOG": "ERROR",  # also sets uvicorn's level: no access log
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price-map download at start-up
            "LITELLM_TELEMETRY": "False",
            "DISABLE_ADMIN_UI": "True",
            "PYTHONUNBUFFERED": "1",
        }
    )
    argv = [
        str(exe),
        "--config",
        str(LITELLM_CONFIG),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    proc = procs.start(
        "litellm",
        argv,
        env=env,
        cwd=tempfile.gettempdir(),  # LiteLLM may write files to its working directory
        cpus=cpus,
        ready_url=f"http://127.0.0.1:{port}/health/liveliness",
        ready_timeout_s=ready_timeout_s,
    )
    return proc, Target("litellm", f"http://127.0.0.1:{port}/v1", master_key, model)


# ============================================================================================
# Target registry (how the CLI's --targets names become running targets)
# ============================================================================================


@dataclass
class BenchContext:
    """What a target factory gets: where the upstream is, where to run, how to start things.

    ``procs`` is scoped to the target: everything started through `start` is stopped as soon as
    the target has been measured (and on any error).
    """

    procs: ProcessSet
    upstream_base_url: str
    model: str
    cpus: CpuPlan
    log_dir: Path
    options: argparse.Namespace | None = None
    own_process_names: set[str] = field(default_factory=set)

    def count_as_target(self, *process_names: str) -> None:
        """Count CPU used by these commands (e.g. ``postgres``, ``redis-server``) as the
        target's own, not as background load from other users of the machine."""
        self.own_process_names.update(process_names)

    def start(self, name: str, argv: Sequence[str], **kwargs: Any) -> ManagedProcess:
        """Shortcut for ``self.procs.start`` (same arguments)."""
        return self.procs.start(name, argv, **kwargs)


TargetFactory = Callable[[BenchContext], Target]
_FACTORIES: dict[str, TargetFactory] = {}


def register_target(name: str, factory: TargetFactory) -> None:
    """Make ``name`` usable in ``--targets``; ``factory`` starts what it needs, returns a Target."""
    _FACTORIES[name] = factory


_COMPARISONS: dict[str, tuple[str, float]] = {}


def register_comparison(name: str, against: str, max_cost: float) -> None:
    """Compare target ``name`` with target ``against`` in a second table (when both are
    measured): its req/s at the highest connection count and its p50 added at 1 connection as
    ratios of ``against``'s, with the goal that a request costs at most ``max_cost`` times as
    much (req/s ≥ against's ÷ ``max_cost``, p50 added ≤ ``max_cost`` × against's) and that its
    stream TTFB added stays under ``BenchConfig.goal_added_ttfb_ms``."""
    _COMPARISONS[name] = (against, max_cost)


def registered_comparisons() -> tuple[tuple[str, str, float], ...]:
    """``(target, against, max cost)`` for every `register_comparison`."""
    return tuple((name, against, cost) for name, (against, cost) in _COMPARISONS.items())


def registered_targets() -> list[str]:
    """Names usable in ``--targets``."""
    return list(_FACTORIES)


def _upstream_factory(ctx: BenchContext) -> Target:
    return Target(BASELINE, ctx.upstream_base_url, "sk-bench-upstream-dummy", ctx.model)


def _litellm_factory(ctx: BenchContext) -> Target:
    venv = Path(getattr(ctx.options, "litellm_venv", None) or DEFAULT_LITELLM_VENV)
    _proc, target = start_litellm(
        ctx.procs, ctx.upstream_base_url, cpus=ctx.cpus.servers, venv=venv, model=ctx.model
    )
    return target


register_target(BASELINE, _upstream_factory)
register_target(REFERENCE, _litellm_factory)
# The upstream's other doors called directly (Anthropic's and the Responses format).
register_target(
    "upstream-messages",
    lambda ctx: Target("upstream-messages", ctx.upstream_base_url, "sk-bench-upstream-dummy", ctx.model, MESSAGES),
)
register_target(
    "upstream-responses",
    lambda ctx: Target("upstream-responses", ctx.upstream_base_url, "sk-bench-upstream-dummy", ctx.model, RESPONSES),
)


# ============================================================================================
# Correctness check
# ============================================================================================


def _answer_text(door: str, doc: Any) -> str:
    """The text of a plain answer in ``door``'s format (KeyError etc. when it is not one)."""
    if door == MESSAGES:
        if doc["type"] != "message":
            raise ValueError(f"type {doc['type']!r}")
        return "".join(block["text"] for block in doc["content"] if block["type"] == "text")
    if door == RESPONSES:
        if doc["object"] != "response" or doc["status"] != "completed":
            raise ValueError(f"object {doc['object']!r}, status {doc.get('status')!r}")
        return "".join(part["text"] for item in doc["output"] if item["type"] == "message"
                       for part in item["content"] if part["type"] == "output_text")
    return doc["choices"][0]["message"]["content"]


# What a complete stream of each door starts with and holds at its end.
_STREAM_SHAPES = {
    CHAT: (b"data:", b"data: [DONE]"),
    MESSAGES: (b"event: message_start", b"event: message_stop"),
    RESPONSES: (b"event: response.created", b"event: response.completed"),
}


def check_target(target: Target, timeout_s: float = 30.0) -> None:
    """One plain and one streaming request through the target's door; raise `BenchError`
    unless both look right (an answer with text, an SSE stream that starts and ends as the
    door's streams do)."""
    status, _h, body = http_request(
        "POST", target.url, body=target.body(), headers=target.headers(), timeout_s=timeout_s
    )
    if status != 200:
        raise BenchError(f"{target.name}: {target.door} request answered {status}: {body[:300]!r}")
    try:
        text = _answer_text(target.door, json.loads(body))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BenchError(f"{target.name}: not a {target.door} answer ({exc}): {body[:300]!r}") from None
    if not text:
        raise BenchError(f"{target.name}: a {target.door} answer without text: {body[:300]!r}")
    status, headers, body = http_request(
        "POST", target.url, body=target.body(stream=True), headers=target.headers(), timeout_s=timeout_s
    )
    if status != 200:
        raise BenchError(f"{target.name}: streaming answered {status}: {body[:300]!r}")
    first, last = _STREAM_SHAPES[target.door]
    if not body.lstrip().startswith(first) or last not in body:
        raise BenchError(
            f"{target.name}: not a {target.door} SSE stream starting with {first.decode()!r} and holding "
            f"{last.decode()!r} (content-type {headers.get('content-type')}): {body[:300]!r}"
        )


# ============================================================================================
# wrk
# ============================================================================================


def lua_string(value: str | bytes) -> str:
    """A Lua double-quoted string literal for ``value`` (any bytes)."""
    data = value.encode() if isinstance(value, str) else value
    out = ['"']
    for byte in data:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    out.append('"')
    return "".join(out)


def wrk_script(target: Target, body: bytes) -> str:
    """The Lua script: a static POST with the key, and a ``done()`` printing one result line.

    No ``request()`` / ``response()`` functions are defined, so wrk keeps sending its one
    pre-built request at full speed.
    """
    header_lines = "\n".join(
        f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in target.headers().items()
    )
    return f"""-- generated by bench/harness.py for target {target.name}
wrk.method = "POST"
wrk.body = {lua_string(body)}
{header_lines}

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{RESULT_TAG} requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d "
    .. "timeout=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f mean_us=%.1f max_us=%.0f\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


_RESULT_RE = re.compile(RESULT_TAG + r" (?P<fields>.+)$", re.MULTILINE)


def parse_wrk_output(text: str) -> dict[str, float]:
    """The ``key=value`` fields of the ``BENCH_RESULT`` line printed by the ``done()`` hook."""
    match = _RESULT_RE.search(text)
    if match is None:
        raise BenchError(f"no {RESULT_TAG} line in wrk output:\n{text[-2000:]}")
    fields: dict[str, float] = {}
    for item in match.group("fields").split():
        key, _, value = item.partition("=")
        fields[key] = float(value)
    return fields


def _wrk_duration(seconds: float) -> str:
    """wrk's ``-d``: whole seconds (wrk parses an integer with an optional unit)."""
    return f"{max(1, math.ceil(seconds))}s"


def run_wrk(
    target: Target,
    conns: int,
    duration_s: float,
    *,
    threads: int | None = None,
    cpus: str | None = None,
    request_timeout_s: float = 10.0,
    body: bytes | None = None,
    wrk: str = "wrk",
) -> LoadResult:
    """Run wrk once against ``target``'s door URL and return the parsed result.

    wrk runs in its own process group (killed if this process is interrupted), pinned to
    ``cpus`` when given; threads default to ``min(conns, 2)``.
    """
    threads = threads or min(conns, 2)
    body = body if body is not None else target.body()
    with tempfile.NamedTemporaryFile(
        "w", suffix=".lua", prefix=f"bench-{target.name}-", delete=False
    ) as fh:
        fh.write(wrk_script(target, body))
        script = fh.name
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{conns}",
        f"-d{_wrk_duration(duration_s)}",
        f"--timeout={max(1, math.ceil(request_timeout_s))}s",
        "--latency",
        "-s",
        script,
        target.url,
    ]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=duration_s + request_timeout_s + 30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"wrk against {target.name} did not finish") from None
        if proc.returncode != 0:
            raise BenchError(f"wrk exited with {proc.returncode}:\n{output[-2000:]}")
    finally:
        if proc is not None and proc.poll() is None:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.unlink(script)
    f = parse_wrk_output(output)
    seconds = f["duration_us"] / 1e6
    return LoadResult(
        target=target.name,
        conns=conns,
        threads=threads,
        duration_s=round(seconds, 3),
        requests=int(f["requests"]),
        rps=f["requests"] / seconds if seconds > 0 else 0.0,
        p50_ms=f["p50_us"] / 1000,
        p90_ms=f["p90_us"] / 1000,
        p99_ms=f["p99_us"] / 1000,
        p999_ms=f["p999_us"] / 1000,
        mean_ms=f["mean_us"] / 1000,
        max_ms=f["max_us"] / 1000,
        errors={k: int(f[k]) for k in ("connect", "read", "write", "status", "timeout")},
    )


# ============================================================================================
# Streaming time to first byte
# ============================================================================================


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (``pct`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


async def _ttfb_aiohttp(
    target: Target, body: bytes, count: int
) -> list[tuple[float, float] | None]:
    """``count`` sequential streaming requests over one keep-alive aiohttp connection."""
    import aiohttp

    results: list[tuple[float, float] | None] = []
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(count):
            t0 = time.perf_counter()
            first: float | None = None
            try:
                async with session.post(
                    target.url, data=body, headers=target.headers()
                ) as resp:
                    if resp.status != 200:
                        await resp.read()
                        results.append(None)
                        continue
                    async for line in resp.content:
                        if first is None and line.startswith(b"data:"):
                            first = time.perf_counter()
                end = time.perf_counter()
            except (TimeoutError, aiohttp.ClientError):
                results.append(None)
                continue
            results.append(None if first is None else (first - t0, end - t0))
    return results


class _RawStreamClient:
    """A minimal keep-alive HTTP/1.1 client for timing SSE answers (no dependencies)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.reader, self.writer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def stream(self, headers: dict[str, str], body: bytes) -> tuple[float, float] | None:
        """One request; (seconds to the first ``data:`` byte, seconds to the end) or None."""
        reader, writer = await self._connect()
        head = f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\nAccept: text/event-stream\r\n\r\n"
        t0 = time.perf_counter()
        writer.write(head.encode() + body)
        status_line = await reader.readline()
        raw_headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(status_line.split()[1])
        close = "connection: close" in raw_headers
        first: float | None = None
        seen = b""

        def feed(data: bytes) -> None:
            nonlocal first, seen
            if first is None:
                window = seen + data
                if b"data:" in window:
                    first = time.perf_counter()
                seen = window[-8:]  # "data:" may straddle two reads

        if "transfer-encoding: chunked" in raw_headers:
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b""):
                        pass  # trailers
                    break
                feed(await reader.readexactly(size))
                await reader.readexactly(2)
        else:
            match = re.search(r"content-length:\s*(\d+)", raw_headers)
            if match:
                remaining = int(match.group(1))
                while remaining:
                    data = await reader.read(min(remaining, 65536))
                    if not data:
                        raise ConnectionError("connection closed mid-body")
                    remaining -= len(data)
                    feed(data)
            else:
                close = True
                while data := await reader.read(65536):
                    feed(data)
        end = time.perf_counter()
        if close:
            await self.close()
        if status != 200 or first is None:
            return None
        return first - t0, end - t0


async def _ttfb_raw(target: Target, body: bytes, count: int) -> list[tuple[float, float] | None]:
    client = _RawStreamClient(target.url)
    results: list[tuple[float, float] | None] = []
    try:
        for _ in range(count):
            try:
                results.append(await asyncio.wait_for(client.stream(target.headers(), body), 60))
            except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                await client.close()
                results.append(None)
    finally:
        await client.close()
    return results


@contextmanager
def _affinity(cpus: str | None) -> Iterator[None]:
    """Run this process (the TTFB client) on ``cpus`` for the duration of the block."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in _expand_cpus(cpus)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _expand_cpus(spec: str) -> Iterable[int]:
    """``"0,2-3"`` -> 0, 2, 3."""
    for part in spec.split(","):
        low, _, high = part.partition("-")
        yield from range(int(low), int(high or low) + 1)


def measure_ttfb(
    target: Target,
    requests: int = 200,
    *,
    warmup: int = 20,
    client: str = "auto",
    cpus: str | None = None,
) -> TtfbResult:
    """Time to first ``data:`` line of ``requests`` sequential streaming requests (after
    ``warmup`` unmeasured ones), with aiohttp or the raw-socket client, on ``cpus``."""
    if client == "auto":
        client = "aiohttp" if _aiohttp_available() else "raw"
    runner = _ttfb_aiohttp if client == "aiohttp" else _ttfb_raw
    body = target.body(stream=True)

    async def go() -> list[tuple[float, float] | None]:
        if warmup:
            await runner(target, body, warmup)
        return await runner(target, body, requests)

    with _affinity(cpus):
        samples = _run_async(go())
    ok = [s for s in samples if s is not None]
    first = [s[0] * 1000 for s in ok]
    total = [s[1] * 1000 for s in ok]
    return TtfbResult(
        target=target.name,
        client=client,
        requests=len(samples),
        failures=len(samples) - len(ok),
        ttfb_p50_ms=percentile(first, 50),
        ttfb_p90_ms=percentile(first, 90),
        total_p50_ms=percentile(total, 50),
    )


def _run_async(coro: Any) -> Any:
    """asyncio.run with uvloop when installed (a faster client adds less to what it measures)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ============================================================================================
# Background load (other processes sharing the machine)
# ============================================================================================


@dataclass(frozen=True)
class CpuSample:
    """CPU counters at one instant, in clock ticks."""

    at: float  # time.monotonic()
    busy: int  # all CPUs: user + nice + system + irq + softirq
    steal: int
    ours: int  # this process (and its waited-for children, e.g. wrk) + the benchmark's servers


class BackgroundMeter:
    """Measures how much CPU other processes use while the benchmark runs.

    Everything the harness started (`ManagedProcess` groups, and wrk, counted through this
    process's children times) is "ours", as are processes whose command name is in
    ``own_names`` (e.g. ``postgres`` and ``redis-server`` when they serve the target). The
    rest of the machine's busy time is "other": on a shared machine, other people's test runs.
    Linux only (/proc); elsewhere every figure is 0.
    """

    def __init__(self, own_names: Iterable[str] = ()) -> None:
        self.own_names = frozenset(own_names)
        self.tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

    @staticmethod
    def _stat_fields(pid: int | str) -> list[str] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        name_end = raw.rfind(")")
        return [raw[raw.find("(") + 1 : name_end], *raw[name_end + 2 :].split()]

    def sample(self) -> CpuSample:
        """Read the counters now."""
        try:
            cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return CpuSample(time.monotonic(), 0, 0, 0)
        values = [int(v) for v in cpu]
        busy = values[0] + values[1] + values[2] + values[5] + values[6]
        steal = values[7] if len(values) > 7 else 0
        with _LIVE_LOCK:
            pgids = {p.popen.pid for p in _LIVE if p.popen is not None}
        ours = 0
        me = self._stat_fields("self")
        if me is not None:  # fields: name, state, ppid, pgrp, ... utime at [12], cstime at [15]
            ours += sum(int(v) for v in me[12:16])
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            fields = self._stat_fields(entry.name)
            if fields is None:
                continue
            if int(fields[3]) in pgids or fields[0] in self.own_names:
                ours += int(fields[12]) + int(fields[13])
        return CpuSample(time.monotonic(), busy, steal, ours)

    def between(self, a: CpuSample, b: CpuSample) -> tuple[float, float]:
        """(other processes, steal) between two samples, in CPUs (1.0 = one core busy)."""
        elapsed = b.at - a.at
        if elapsed <= 0:
            return 0.0, 0.0
        other = ((b.busy - a.busy) - (b.ours - a.ours)) / self.tick / elapsed
        steal = (b.steal - a.steal) / self.tick / elapsed
        return max(0.0, other), max(0.0, steal)

    def wait_quiet(self, threshold_cpu: float, max_wait_s: float, window_s: float = 0.5) -> float:
        """Wait (up to ``max_wait_s``) until other processes use < ``threshold_cpu`` over a
        ``window_s`` window; return the last measured load in CPUs."""
        deadline = time.monotonic() + max_wait_s
        announced = False
        while True:
            a = self.sample()
            time.sleep(window_s)
            other, steal = self.between(a, self.sample())
            load = other + steal
            if load < threshold_cpu or time.monotonic() >= deadline:
                if announced:
                    log(
                        f"machine {'quiet' if load < threshold_cpu else 'still busy'} ({load:.2f} CPU)"
                    )
                return load
            if not announced:
                log(
                    f"waiting up to {max_wait_s:g} s for other processes ({load:.2f} CPU) to finish"
                )
                announced = True


# ============================================================================================
# Orchestration
# ============================================================================================


def measure_target(
    target: Target, config: BenchConfig, meter: BackgroundMeter | None = None
) -> TargetReport:
    """Check, load-test once at every connection count (after a warm-up), then measure
    streaming TTFB: one round (``run_benchmark`` repeats rounds and `pick_runs` the result).

    With a ``meter``, each measured wrk run first waits (up to ``config.wait_quiet_s``) for the
    machine to be quiet, and records the CPU other processes used during it.
    """
    meter = meter or BackgroundMeter()
    report = TargetReport(target=target)
    check_target(target)
    for conns in config.conns:
        threads = min(conns, config.max_threads)
        if config.wait_quiet_s > 0:
            meter.wait_quiet(config.busy_threshold_cpu, config.wait_quiet_s)
        if config.warmup_s > 0:  # warm-up and measurement back to back
            log(f"{target.name}: warm-up {config.warmup_s:g} s at {conns} conn")
            run_wrk(
                target,
                conns,
                config.warmup_s,
                threads=threads,
                cpus=config.cpus.loadgen,
                request_timeout_s=config.request_timeout_s,
                wrk=config.wrk,
            )
        before = meter.sample()
        run = run_wrk(
            target,
            conns,
            config.duration_s,
            threads=threads,
            cpus=config.cpus.loadgen,
            request_timeout_s=config.request_timeout_s,
            wrk=config.wrk,
        )
        run.other_cpu, run.steal_cpu = meter.between(before, meter.sample())
        log(
            f"{target.name}: {conns} conn: {run.rps:,.0f} req/s, p50 {run.p50_ms:.3f} ms, "
            f"p99 {run.p99_ms:.3f} ms, errors {run.error_count}, other processes "
            f"{run.other_cpu:.2f} CPU, steal {run.steal_cpu:.2f} CPU"
        )
        report.load.append(run)
    if config.ttfb_requests > 0:
        if config.wait_quiet_s > 0:
            meter.wait_quiet(config.busy_threshold_cpu, config.wait_quiet_s)
        report.ttfb = measure_ttfb(
            target,
            config.ttfb_requests,
            warmup=config.ttfb_warmup,
            client=config.ttfb_client,
            cpus=config.cpus.loadgen,
        )
        t = report.ttfb
        log(
            f"{target.name}: stream TTFB p50 {t.ttfb_p50_ms:.3f} ms, p90 {t.ttfb_p90_ms:.3f} ms "
            f"({t.client}, {t.requests} requests, {t.failures} failed)"
        )
        if t.failures:
            report.notes.append(f"stream: {t.failures}/{t.requests} requests failed")
    return report


def pick_runs(rounds: Sequence[TargetReport], config: BenchConfig) -> TargetReport:
    """One target's rounds as one report: at each connection count the run with the median req/s
    (the lower middle one for an even count), or with ``config.pick == "quietest"`` the one
    during which other processes used the least CPU; every round's req/s, p50 and p99 are kept
    in ``runs_*`` (ordered by req/s). Errors of any round are counted; TTFB is the round with the
    median TTFB p50."""
    first = rounds[0]
    report = TargetReport(target=first.target, startup_s=first.startup_s)
    for conns in config.conns:
        runs = sorted((r for t in rounds if (r := t.at(conns)) is not None), key=lambda r: r.rps)
        if not runs:
            continue
        if config.pick == "quietest":
            result = min(runs, key=lambda r: r.other_cpu + r.steal_cpu)
        else:
            result = runs[(len(runs) - 1) // 2]
        result.runs_rps = [round(r.rps, 1) for r in runs]
        result.runs_p50_ms = [round(r.p50_ms, 3) for r in runs]
        result.runs_p99_ms = [round(r.p99_ms, 3) for r in runs]
        if any(r.error_count for r in runs):
            result.errors = {k: sum(r.errors[k] for r in runs) for k in result.errors}
            report.notes.append(f"{conns} conn: errors {result.errors} (all rounds)")
        if result.other_cpu + result.steal_cpu >= config.busy_threshold_cpu:
            report.notes.append(
                f"{conns} conn: BUSY MACHINE, other processes used {result.other_cpu:.2f} CPU "
                f"(steal {result.steal_cpu:.2f}) during the run: figures unreliable"
            )
        report.load.append(result)
    ttfbs = sorted((t.ttfb for t in rounds if t.ttfb is not None), key=lambda x: x.ttfb_p50_ms)
    if ttfbs:
        report.ttfb = ttfbs[(len(ttfbs) - 1) // 2]
        report.ttfb.failures = sum(x.failures for x in ttfbs)
    report.notes += [n for t in rounds for n in t.notes if n not in report.notes]
    return report


def environment_info(config: BenchConfig) -> dict[str, str]:
    """Machine and tool versions for the report header."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk_version = (
            subprocess.run(
                [config.wrk, "-v"], check=False, capture_output=True, text=True, timeout=5
            )
            .stdout.split("[")[0]
            .strip()
        )
    except OSError:
        wrk_version = "missing"
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio"
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loop": loop,
        "wrk": wrk_version,
        "litellm": litellm_version() or "not installed",
        "pinning": config.cpus.describe(),
    }


def run_benchmark(
    targets: Sequence[str | Target | Sequence[str]],
    config: BenchConfig,
    *,
    log_dir: Path = DEFAULT_OUT_DIR / "logs",
    upstream_workers: int = 1,
    upstream_chunk_delay_ms: float = 0.0,
    upstream_base_url: str | None = None,
    options: argparse.Namespace | None = None,
) -> BenchReport:
    """Start the upstream, then measure each target in order, ``config.repeat`` rounds of them
    (interleaved: a slow spell on a shared machine hits every target, not one); return the
    report (`pick_runs` of each target's rounds).

    A target is a registered name (see `register_target`; started just before it is measured and
    stopped right after, in every round) or a ready `Target` / ``(name, base_url, api_key, model)``
    tuple that the caller runs itself. The upstream (the ``upstream`` target) runs for the whole
    benchmark; pass ``upstream_base_url`` to use one that is already running instead.
    """
    report = BenchReport(
        config=config,
        started_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        environment=environment_info(config),
    )
    rounds: dict[int, list[TargetReport]] = {}
    with ProcessSet(log_dir) as base:
        upstream_url = upstream_base_url
        if upstream_url is None:
            _proc, upstream_url = start_upstream(
                base,
                cpus=config.cpus.servers,
                workers=upstream_workers,
                chunk_delay_ms=upstream_chunk_delay_ms,
            )
        repeat = max(1, config.repeat)
        for round_no, (index, spec) in itertools.product(range(repeat), enumerate(targets)):
            if index == 0 and repeat > 1:
                log(f"round {round_no + 1} of {repeat}")
            with ProcessSet(log_dir) as scope:
                started = time.monotonic()
                if isinstance(spec, str):
                    factory = _FACTORIES.get(spec)
                    if factory is None:
                        raise BenchError(f"unknown target {spec!r}; known: {', '.join(_FACTORIES)}")
                    ctx = BenchContext(
                        scope, upstream_url, DEFAULT_MODEL, config.cpus, log_dir, options
                    )
                    target = factory(ctx)
                    own_names = ctx.own_process_names
                    startup = time.monotonic() - started if scope.procs else None
                else:
                    target, startup, own_names = Target.of(spec), None, set()
                log(f"measuring {target.name} at {target.base_url}")
                target_report = measure_target(target, config, BackgroundMeter(own_names))
                target_report.startup_s = round(startup, 2) if startup is not None else None
                rounds.setdefault(index, []).append(target_report)
    report.targets = [pick_runs(rounds[index], config) for index in sorted(rounds)]
    return report


# ============================================================================================
# Report
# ============================================================================================


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def render_table(report: BenchReport) -> str:
    """The one markdown table of the run."""
    cfg = report.config
    base = report.get(cfg.baseline)
    ref = report.get(cfg.reference)
    floor = report.get(cfg.floor)
    floor_head = f" req/s ÷ {cfg.floor} |" if floor else ""
    lines = [
        (
            f"| target | conns | req/s | p50 ms | p99 ms | errors | req/s ÷ {cfg.reference} |{floor_head}"
            f" +p50 ms vs {cfg.baseline} | stream TTFB p50 ms | +TTFB ms vs {cfg.baseline} |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if floor else ""),
    ]
    for t in report.targets:
        for r in t.load:
            ref_r = ref.at(r.conns) if ref else None
            base_r = base.at(r.conns) if base else None
            ratio = _fmt(r.rps / ref_r.rps, 1, "×") if ref_r and ref_r.rps > 0 else "—"
            if floor:
                floor_r = floor.at(r.conns)
                share = _fmt(r.rps / floor_r.rps, 2) if floor_r and floor_r.rps > 0 else "—"
                ratio += f" | {share}"
            added = _fmt(r.p50_ms - base_r.p50_ms, 3) if base_r and t is not base else "—"
            ttfb = added_ttfb = "—"
            if r.conns == 1 and t.ttfb is not None:  # TTFB is sequential, i.e. one connection
                ttfb = _fmt(t.ttfb.ttfb_p50_ms, 3)
                if base is not None and base.ttfb is not None and t is not base:
                    added_ttfb = _fmt(t.ttfb.ttfb_p50_ms - base.ttfb.ttfb_p50_ms, 3)
            lines.append(
                f"| {t.target.name} | {r.conns} | {_fmt(r.rps, 0)} | {_fmt(r.p50_ms, 3)} "
                f"| {_fmt(r.p99_ms, 3)} | {r.error_count} | {ratio} | {added} | {ttfb} | {added_ttfb} |"
            )
    return "\n".join(lines)


def goal_lines(report: BenchReport) -> list[str]:
    """One verdict line per target other than the baseline and the reference."""
    cfg = report.config
    base = report.get(cfg.baseline)
    ref = report.get(cfg.reference)
    lines: list[str] = []
    for t in report.targets:
        if t.target.name in (cfg.baseline, cfg.reference) or not t.load:
            continue
        parts: list[str] = []
        top = max(t.load, key=lambda r: r.conns)
        ref_top = ref.at(top.conns) if ref else None
        if ref_top and ref_top.rps > 0:
            ratio = top.rps / ref_top.rps
            verdict = "PASS" if ratio >= cfg.goal_rps_ratio else "FAIL"
            parts.append(
                f"req/s at {top.conns} conns = {ratio:.1f}× {cfg.reference} "
                f"(goal ≥ {cfg.goal_rps_ratio:g}×: {verdict})"
            )
        floor = report.get(cfg.floor)
        floor_top = floor.at(top.conns) if floor and t is not floor else None
        if floor_top and floor_top.rps > 0:
            parts.append(f"req/s at {top.conns} conns = {top.rps / floor_top.rps:.2f} of {cfg.floor}")
        one, base_one = t.at(1), base.at(1) if base else None
        if one and base_one:
            added = one.p50_ms - base_one.p50_ms
            verdict = "PASS" if added <= cfg.goal_added_p50_ms else "FAIL"
            parts.append(
                f"p50 added at 1 conn = {added:+.3f} ms (goal ≤ {cfg.goal_added_p50_ms:g} ms: {verdict})"
            )
        if t.ttfb and base and base.ttfb:
            parts.append(
                f"stream TTFB added = {t.ttfb.ttfb_p50_ms - base.ttfb.ttfb_p50_ms:+.3f} ms"
            )
        if t.error_count_total():
            parts.append(f"ERRORS: {t.error_count_total()}")
        if parts:
            lines.append(f"- **{t.target.name}**: " + "; ".join(parts))
    return lines


def _added_p50(report: BenchReport, t: TargetReport) -> float | None:
    one, base = t.at(1), report.get(report.config.baseline)
    base_one = base.at(1) if base else None
    return one.p50_ms - base_one.p50_ms if one and base_one else None


def _added_ttfb(report: BenchReport, t: TargetReport) -> float | None:
    base = report.get(report.config.baseline)
    if t.ttfb is None or base is None or base.ttfb is None:
        return None
    return t.ttfb.ttfb_p50_ms - base.ttfb.ttfb_p50_ms


def render_comparisons(report: BenchReport) -> str:
    """The second table: each compared target against the one it is compared with (see
    `register_comparison`), with PASS/FAIL per goal; empty when no pair was measured."""
    cfg = report.config
    top_conns = max(cfg.conns)
    rows: list[str] = []
    for name, against, max_cost in cfg.comparisons:
        t, a = report.get(name), report.get(against)
        if t is None or a is None:
            continue
        t_top, a_top = t.at(top_conns), a.at(top_conns)
        rps_ratio = t_top.rps / a_top.rps if t_top and a_top and a_top.rps > 0 else None
        t_added, a_added = _added_p50(report, t), _added_p50(report, a)
        p50_ratio = t_added / a_added if t_added is not None and a_added and a_added > 0 else None
        ttfb_added = _added_ttfb(report, t)
        rps_ok = rps_ratio is not None and rps_ratio >= 1 / max_cost
        p50_ok = p50_ratio is not None and p50_ratio <= max_cost
        ttfb_ok = ttfb_added is not None and ttfb_added < cfg.goal_added_ttfb_ms
        verdicts = [
            f"req/s {'PASS' if rps_ok else 'FAIL'}",
            f"p50 {'PASS' if p50_ok else 'FAIL'}",
            f"TTFB {'PASS' if ttfb_ok else 'FAIL'}",
        ]
        rows.append(
            f"| {name} | {t.target.door} | {_fmt(t_top.rps if t_top else None, 0)} "
            f"| {_fmt(rps_ratio, 3)} | {_fmt(t_added, 3)} | {_fmt(p50_ratio, 3, '×')} "
            f"| {_fmt(ttfb_added, 3)} | ≥ {1 / max_cost:.3f} and ≤ {max_cost:g}× | {', '.join(verdicts)} |"
        )
    if not rows:
        return ""
    against_names = sorted({against for name, against, _ in cfg.comparisons if report.get(name)})
    ref = against_names[0] if len(against_names) == 1 else "the compared target"
    return "\n".join([
        f"| target | door | req/s at {top_conns} | req/s ÷ {ref} | +p50 ms at 1 vs {cfg.baseline} "
        f"| +p50 ÷ {ref}'s | +TTFB ms vs {cfg.baseline} | goal (req/s ratio, +p50 ratio) "
        f"| verdict (TTFB goal < {cfg.goal_added_ttfb_ms:g} ms) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
        *rows,
    ])


def render_report(report: BenchReport) -> str:
    """Header, the table, and the goal lines, as markdown."""
    env = report.environment
    cfg = report.config
    header = (
        f"Gateway benchmark, {report.started_at} — {env['cpus']} CPUs ({env['cpu_model']}), "
        f"kernel {env['kernel']}, Python {env['python']} + {env['loop']}, {env['wrk']}, "
        f"LiteLLM {env['litellm']}; {env['pinning']}; wrk {cfg.duration_s:g} s after "
        f"{cfg.warmup_s:g} s warm-up{f', {cfg.pick} of {cfg.repeat} interleaved rounds' if cfg.repeat > 1 else ''}, "
        f"threads = min(conns, {cfg.max_threads}); TTFB: median of "
        f"{cfg.ttfb_requests} sequential streaming requests."
    )
    parts = [header, "", render_table(report)]
    comparisons = render_comparisons(report)
    if comparisons:
        parts += ["", comparisons]
    goals = goal_lines(report)
    if goals:
        parts += ["", *goals]
    notes = [f"- {t.target.name}: {n}" for t in report.targets for n in t.notes]
    if cfg.repeat > 1:
        notes += [
            f"- {t.target.name}, {r.conns} conn, every round by req/s: req/s {r.runs_rps}, "
            f"p50 ms {r.runs_p50_ms}, p99 ms {r.runs_p99_ms}"
            for t in report.targets for r in t.load
        ]
    startups = [f"{t.target.name} {t.startup_s:.1f} s" for t in report.targets if t.startup_s]
    if startups:
        notes.append("- time to ready: " + ", ".join(startups))
    if notes:
        parts += ["", *notes]
    return "\n".join(parts)


# ============================================================================================
# CLI
# ============================================================================================


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (exposed so wrappers can add options)."""
    p = argparse.ArgumentParser(
        description="Benchmark OpenAI-compatible gateways against a loopback upstream with wrk.",
    )
    p.add_argument(
        "--targets",
        default=f"{BASELINE},{REFERENCE}",
        help=f"comma-separated registered targets, measured in order (known: {', '.join(_FACTORIES)})",
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    p.add_argument("--conns", default="1,16", help="comma-separated connection counts")
    p.add_argument("--max-threads", type=int, default=2, help="wrk threads = min(conns, this)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds: measure every target N times, one round after another (each target "
        "started afresh per round); see --pick for which run is reported",
    )
    p.add_argument(
        "--pick",
        choices=("median", "quietest"),
        default="median",
        help="report the run with the median req/s, or the one during which other processes "
        "used the least CPU (for shared machines)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="wrk per-request timeout, seconds")
    p.add_argument("--ttfb-requests", type=int, default=200, help="0 skips the streaming TTFB")
    p.add_argument("--ttfb-warmup", type=int, default=20)
    p.add_argument("--ttfb-client", choices=("auto", "aiohttp", "raw"), default="auto")
    p.add_argument("--pin", choices=("auto", "none"), default="auto", help="CPU pinning")
    p.add_argument(
        "--loadgen-cpus", help="taskset list for wrk and the TTFB client (overrides --pin)"
    )
    p.add_argument("--server-cpus", help="taskset list for the servers (overrides --pin)")
    p.add_argument("--upstream-workers", type=int, default=1)
    p.add_argument(
        "--upstream-chunk-delay-ms",
        type=float,
        default=0.0,
        help="delay between the upstream's SSE events (0: one write)",
    )
    p.add_argument("--litellm-venv", default=str(DEFAULT_LITELLM_VENV))
    p.add_argument("--wrk", default="wrk", help="wrk executable")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=30.0,
        help="before each measured run, wait up to this many seconds for other processes to "
        "use less than --busy-threshold CPUs (0: do not wait)",
    )
    p.add_argument("--busy-threshold", type=float, default=0.15, help="in CPUs")
    p.add_argument("--goal-ratio", type=float, default=15.0)
    p.add_argument("--goal-added-p50-ms", type=float, default=1.0)
    p.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), help="where results and logs go")
    p.add_argument("--no-save", action="store_true", help="do not write results files")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A BenchConfig from parsed CLI arguments."""
    cpus = CpuPlan.auto() if args.pin == "auto" else CpuPlan()
    if args.loadgen_cpus or args.server_cpus:
        cpus = CpuPlan(
            loadgen=args.loadgen_cpus or cpus.loadgen, servers=args.server_cpus or cpus.servers
        )
    return BenchConfig(
        conns=tuple(int(c) for c in args.conns.split(",") if c.strip()),
        duration_s=args.duration,
        warmup_s=args.warmup,
        max_threads=args.max_threads,
        repeat=args.repeat,
        pick=args.pick,
        request_timeout_s=args.timeout,
        ttfb_requests=args.ttfb_requests,
        ttfb_warmup=args.ttfb_warmup,
        ttfb_client=args.ttfb_client,
        cpus=cpus,
        wrk=args.wrk,
        goal_rps_ratio=args.goal_ratio,
        goal_added_p50_ms=args.goal_added_p50_ms,
        busy_threshold_cpu=args.busy_threshold,
        wait_quiet_s=args.wait_quiet,
        comparisons=registered_comparisons(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run the benchmark, print the report, save it; return the exit status.

    Exit status 0 when every target was measured without errors, 1 when a target had errors,
    2 on a failure (a server did not start, wrong answers, wrk failed), 130 on Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    install_signal_handlers()
    config = config_from_args(args)
    if shutil.which(config.wrk) is None:
        log(f"{config.wrk} not found: run `bash bench/setup.sh` first")
        return 2
    out_dir = Path(args.out_dir)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    try:
        report = run_benchmark(
            targets,
            config,
            log_dir=out_dir / "logs",
            upstream_workers=args.upstream_workers,
            upstream_chunk_delay_ms=args.upstream_chunk_delay_ms,
            options=args,
        )
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        kill_all_children()
    text = render_report(report)
    print(text, flush=True)
    if not args.no_save:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (out_dir / f"gateway-{stamp}.md").write_text(text + "\n")
        (out_dir / f"gateway-{stamp}.json").write_text(
            json.dumps(report.to_json(), indent=2) + "\n"
        )
        log(f"saved {out_dir}/gateway-{stamp}.md and .json")
    return 1 if any(t.error_count_total() for t in report.targets) else 0


if __name__ == "__main__":
    sys.exit(main())
