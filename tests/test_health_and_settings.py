import subprocess
import sys

import pytest
import redis

from tests.support.procs import REPO, embedded_env, free_port, wait_http

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


@pytest.mark.django_db
def test_healthz_503_names_redis_when_it_is_down(client, monkeypatch):
    nobody_listens = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    monkeypatch.setattr("config.health.get_redis", lambda: nobody_listens)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")


def test_healthz_503_names_the_database_when_it_is_down(tmp_path):
    port = free_port()
    env = embedded_env(tmp_path, DEBUG="true", DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/none")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        response = wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error: ")


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
