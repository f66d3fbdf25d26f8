"""Start real processes (the platform, a second app instance) for tests, on free ports."""

import os
import socket
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh machine's `make run`: no PostgreSQL, no Redis, its own var
    directory and .env file."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        ENV_FILE=str(tmp_path / ".env"),
        STATIC_ROOT=str(tmp_path / "static"),
        **extra,
    )
    return env


def wait_http(url: str, *, timeout: float, proc=None) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout}s: {last}")
