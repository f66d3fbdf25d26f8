"""Operations: Prometheus metrics across worker processes, bounded labels, the JSON request
log line, and the audit trail with secrets masked."""

import json
import logging
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
from django.db import connection

from providers.services import provider_create, provider_update
from tenants.access import Principal
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider
from tests.utils.procs import REPO, free_port, wait_http


def series(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_metrics_count_requests_of_two_worker_processes_with_bounded_labels(world, settings, tmp_path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    db = settings.DATABASES["default"]
    env = {**os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                           f"{connection.settings_dict['NAME']}"}
    port = free_port()
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port),
                                 "--workers", "2", "--log-level", "warning"], cwd=REPO, env=env,
                                start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
            sent = 60
            for i in range(sent):  # a new connection each time, so both workers take some
                response = httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {world.chat_key}", "Connection": "close",
                             "x-tollgate-conversation": f"conversation-{i}"},
                    json={"model": "m", "messages": [{"role": "user", "content": f"secret user text {i}"}],
                          "user": f"end-user-{i}"}, timeout=10)
                assert response.status_code == 200
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"messages": []},
                       headers={"Authorization": f"Bearer {world.chat_key}"})  # a 400
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    workers = {m.group(1) for f in metrics_dir.iterdir() if (m := re.search(r"_(\d+)\.db$", f.name))}
    assert len(workers) >= 2, "both worker processes wrote metrics"
    requests = series(text, "tollgate_requests_total")
    assert requests['tollgate_requests_total{model="up:m",provider="up",status="ok",tenant="acme"}'] == sent
    assert sum(requests.values()) == sent + 1
    assert 'tollgate_request_latency_seconds_count{provider="up"}' in text
    for leaked in ("secret user text", "conversation-", "end-user-", "req_", "tg_"):
        assert leaked not in text
    assert len(requests) <= 3  # one series per tenant × provider × model × status


@pytest.mark.django_db
def test_metrics_need_the_token_or_an_allowed_ip(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.9.9.9"]
    assert client.get("/metrics").status_code == 403
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    assert client.get("/metrics").status_code == 200
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")


@pytest.mark.django_db(transaction=True)
def test_one_structured_log_line_per_request(world, live, caplog):
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 7, "completion_tokens": 3}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        with caplog.at_level(logging.INFO, logger="tollgate.requests"):
            response = httpx.post(f"{live.url}/v1/chat/completions",
                                  headers={"Authorization": f"Bearer {world.chat_key}"},
                                  json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    records = [r for r in caplog.records
               if r.name == "tollgate.requests" and getattr(r, "request_id", "") == request_id]
    assert len(records) == 1
    record = records[0]
    assert (record.tenant, record.model_requested, record.model_used, record.provider) == (
        "acme", "gpt-4o-mini", "up:gpt-4o-mini", "up")
    assert (record.status, record.attempts, record.input_tokens, record.output_tokens) == ("ok", 1, 7, 3)
    assert record.api == "chat"
    assert record.key_prefix == world.chat_key[:12] and world.chat_key not in json.dumps(record.__dict__, default=str)
    assert record.latency_ms >= 0 and record.cost == "0.000002850000"  # 7 × 0.15 + 3 × 0.60 per million


def test_json_formatter_writes_one_object_per_line():
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                              rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})
    record = logging.LogRecord("tollgate.requests", logging.INFO, __file__, 1, "req_x acme", (), None)
    record.request_id, record.status = "req_x", "ok"
    line = formatter.format(record)
    parsed = json.loads(line)
    assert "\n" not in line and parsed["request_id"] == "req_x" and parsed["level"] == "INFO"


@pytest.mark.django_db
def test_audit_trail_masks_secrets_and_is_for_owners_and_staff(world, client_for):
    provider = provider_create(owner=world.tenant, actor=Principal(user=world.admin),
                               data={"name": "p", "base_url": "http://127.0.0.1:9/v1",
                                     "api_key": "sk-first-secret-1111"})
    provider_update(provider=provider, actor=Principal(user=world.admin),
                    data={"api_key": "sk-second-secret-2222", "priority": 3})
    owner = client_for(user=world.owner).get("/api/audit?action=provider")
    assert owner.status_code == 200
    body = owner.content.decode()
    assert "sk-first-secret" not in body and "sk-second-secret" not in body
    events = owner.json()["results"]
    assert [e["action"] for e in events] == ["provider.update", "provider.create"]
    assert events[0]["actor"] == "user:admin@acme.test"
    assert events[0]["before"]["api_key"] == "sk-…1111" and events[0]["after"]["api_key"] == "sk-…2222"
    assert client_for(user=world.admin).get("/api/audit").status_code == 403
    assert client_for(key=world.admin_key).get("/api/audit").status_code == 403
    assert client_for(user=world.support).get("/api/audit?tenant=acme").status_code == 200
    theirs = client_for(user=world.other_owner).get("/api/audit").json()["results"]
    assert {e["action"] for e in theirs} == {"tenant.create", "project.create", "api_key.create"}  # their own only
