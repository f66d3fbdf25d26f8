"""A client that leaves mid-stream, and two app instances (separate processes) sharing rate
limits and cooldowns through Redis."""

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.db import connection

from billing.models import Budget, UsageDaily
from providers.services import alias_create
from tenants.access import SYSTEM
from tenants.services import tenant_update
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage
from tests.utils.procs import REPO, free_port, wait_http

pytestmark = pytest.mark.django_db(transaction=True)


def hello():
    return [{"role": "user", "content": "hi"}]


def test_client_disconnect_mid_stream_cancels_upstream_and_records_partial(world, live):
    with FakeOpenAI(models=["m"], reply="tick " * 40, stream_chunks=20) as fake:
        add_provider(world.tenant, fake)
        fake.set_fault("slow", chunk_delay=0.25)
        body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "count"}]}'
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {world.chat_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        received = b""
        while b"data: {" not in received:
            received += sock.recv(65536)
        request_id = received.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
        left_at = time.monotonic()
        sock.close()  # the client goes away after the first chunk
        row = wait_usage(request_id, timeout=10)
        took = time.monotonic() - left_at
        deadline = time.monotonic() + 5
        while fake.abandoned == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert row.status == "partial" and row.error_type == "client_disconnected"
    assert row.tokens_estimated and row.output_tokens > 0
    assert took < 3  # not the ~5 s the whole stream would take: the upstream call was cancelled
    assert fake.abandoned == 1


def call(base, key, model="m"):
    return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": hello()}, timeout=10)


def test_rate_limit_is_shared_by_two_instances(world, live, second_instance):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        tenant_update(tenant=world.tenant, changes={"requests_per_minute": 4}, actor=SYSTEM)
        codes = [call(base, world.chat_key).status_code for base in (live.url, second_instance) * 2]
        assert codes == [200, 200, 200, 200]
        assert call(second_instance, world.chat_key).status_code == 429
        assert call(live.url, world.chat_key).status_code == 429


def test_cooldown_is_shared_by_two_instances(world, live, second_instance):
    with FakeOpenAI(models=["primary"]) as a, FakeOpenAI(models=["backup"], reply="backup") as b:
        add_provider(world.tenant, a, name="a")
        add_provider(world.tenant, b, name="b")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={
            "name": "chain", "retries": 0, "allowed_fails": 1, "cooldown_seconds": 60,
            "targets": [{"model": "a:primary"}, {"model": "b:backup"}],
        })
        a.set_fault("status", status=500)
        for _ in range(2):  # the second failure passes allowed_fails: a cools down
            assert call(live.url, world.chat_key, "chain").json()["choices"][0]["message"]["content"] == "backup"
        tried = len(a.requests_to("/v1/chat/completions"))
        assert tried == 2
        response = call(second_instance, world.chat_key, "chain")
        assert response.status_code == 200 and response.headers["x-tollgate-model"] == "b:backup"
        assert len(a.requests_to("/v1/chat/completions")) == tried  # the other instance skipped it
        row = wait_usage(response.headers["x-request-id"])
        assert row.attempts == 1


def test_budget_is_shared_by_two_instances(world, live, second_instance):
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 100}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        Budget.objects.create(tenant=world.tenant, name="Shared", amount=Decimal("0.001"), action="block")
        UsageDaily.objects.create(tenant=world.tenant, day=datetime.now(ZoneInfo("UTC")).date(), cost=Decimal("0.0009"))
        first = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                           json={"model": "gpt-4o-mini", "max_tokens": 100, "messages": hello()}, timeout=10)
        assert first.status_code == 200
        wait_usage(first.headers["x-request-id"])
        time.sleep(0.3)  # the first instance settles the real cost into Redis after writing the row
        second = httpx.post(f"{second_instance}/v1/chat/completions",
                            headers={"Authorization": f"Bearer {world.chat_key}"},
                            json={"model": "gpt-4o-mini", "max_tokens": 100, "messages": hello()}, timeout=10)
        assert second.status_code == 429 and second.json()["error"]["code"] == "budget_exceeded"


def test_sigterm_lets_an_in_flight_stream_finish(world, live, settings):
    with FakeOpenAI(models=["m"], reply="one two three four five six seven eight", stream_chunks=8) as fake:
        add_provider(world.tenant, fake)
        fake.set_fault("slow", chunk_delay=0.3)
        port = free_port()
        db = settings.DATABASES["default"]
        env = {**os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true",
               "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                               f"{connection.settings_dict['NAME']}"}
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port),
                                 "--timeout-graceful-shutdown", "20", "--log-level", "warning"],
                                cwd=REPO, env=env, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
            text = ""
            with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                              headers={"Authorization": f"Bearer {world.chat_key}"},
                              json={"model": "m", "stream": True, "messages": hello()}, timeout=30) as response:
                request_id = response.headers["x-request-id"]
                for chunk in response.iter_text():
                    if not text:
                        os.killpg(proc.pid, signal.SIGTERM)  # the deploy stops this instance mid-stream
                    text += chunk
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert text.rstrip().endswith("data: [DONE]")
    assert "eight" in text
    row = wait_usage(request_id)
    assert row.status == "ok" and row.stream
