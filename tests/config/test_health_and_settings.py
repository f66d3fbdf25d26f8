"""/healthz and /readyz (a dead Redis or database is named, its reason only logged) and the
production settings: ``check --deploy`` is clean, and a missing secret stops the start."""

import logging
import subprocess
import sys

import httpx
import pytest

from core.redis import get_redis
from tests.utils.procs import REPO, embedded_env, free_port, wait_http

PROD = {
    "DEBUG": "false",
    "SECRET_KEY": "k3y-" + "x1y2z3w4" * 8,
    "ENCRYPTION_KEYS": "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzJieXRlcyE=",
    "ALLOWED_HOSTS": "tollgate.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tollgate",
}


@pytest.mark.django_db
def test_healthz_ok_with_postgres_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.fixture
def dead_redis(settings):
    """REDIS_URL points at a port where nobody listens (the process's client is rebuilt)."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    get_redis.cache_clear()
    yield
    get_redis.cache_clear()


@pytest.mark.django_db
@pytest.mark.parametrize("path, status", [("/healthz", 503), ("/readyz", 200)])
def test_a_dead_redis_is_named_but_the_reason_goes_only_to_the_log(
    client, dead_redis, caplog, path, status
):
    # readyz keeps the instance in rotation: every instance shares Redis, and the data plane
    # answers for itself meanwhile (503 store_unavailable in each door's shape, or fails open)
    with caplog.at_level(logging.WARNING, logger="config.health"):
        response = client.get(path)
    assert response.status_code == status
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "error"
    text = response.content.decode()
    assert "Connection" not in text and "127.0.0.1" not in text
    logged = [r for r in caplog.records if r.name == "config.health"]
    assert any("redis" in r.getMessage() and "Connection" in r.getMessage() for r in logged), logged


def test_a_dead_database_is_named_but_the_reason_goes_only_to_the_log(tmp_path):
    port, db_port = free_port(), free_port()
    env = embedded_env(tmp_path, DEBUG="true", LOG_FORMAT="plain",
                       DATABASE_URL=f"postgres://postgres@127.0.0.1:{db_port}/none")
    log_file = tmp_path / "stderr.log"
    with log_file.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        health = wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    log = log_file.read_text()
    for response in (health, ready):
        assert response.status_code == 503
        assert response.json()["checks"]["database"] == "error"
        assert str(db_port) not in response.text and "connection" not in response.text.lower()
    assert "database" in log and str(db_port) in log  # psycopg's reason names the address


def manage(tmp_path, *args, **env_vars):
    env = embedded_env(tmp_path, **env_vars)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_check_deploy_is_clean_in_production(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PROD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ENCRYPTION_KEYS", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_secrets(tmp_path, missing):
    env = {k: v for k, v in PROD.items() if k != missing}
    result = manage(tmp_path, "check", **env)
    assert result.returncode != 0
    assert f"{missing} must be set when DEBUG is false" in result.stderr
