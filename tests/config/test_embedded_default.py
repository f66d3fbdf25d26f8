"""`make run` on a fresh machine's embedded default: SQLite, local-memory cache, filesystem
Celery broker, no external services. Boots the real thing and stops it with Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.utils.procs import REPO, embedded_env, free_port, wait_http

pytestmark = pytest.mark.slow


def test_make_run_boots_answers_healthz_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = embedded_env(tmp_path, PORT=str(port))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            response = wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120, proc=proc)
            assert response.status_code == 200
            assert response.json() == {
                "status": "ok", "checks": {"database": "ok", "redis": "not configured"}
            }
            docs = wait_http(f"http://127.0.0.1:{port}/api/docs/", timeout=10)
            assert docs.status_code == 200 and "swagger" in docs.text.lower()
            chat_key = re.search(r"chat key:\s+(tg_\w+)", log.read_text()).group(1)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=chat_key, max_retries=0)
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",  # no model: the default
                                headers={"Authorization": f"Bearer {chat_key}"},
                                json={"messages": [{"role": "user", "content": "hello demo"}]})
            assert answer.headers["x-tollgate-model"] == "mock:mock-fast"
            assert "hello demo" in answer.json()["choices"][0]["message"]["content"]
            stream = client.chat.completions.create(model="mock:mock-smart", stream=True,
                                                    messages=[{"role": "user", "content": "stream please"}])
            assert "stream please" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            _wait_for(log, "ready.", "worker")
            _wait_for(log, "beat: Starting", "beat")
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError("make run did not stop within 30 s of Ctrl-C") from None
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the group is left running

    text = log.read_text(errors="replace")
    assert (tmp_path / "var" / "tollgate.sqlite3").exists()
    assert (tmp_path / ".env").read_text().count("SECRET_KEY=") == 1
    login = re.search(r"login:\s+demo / (\S+)", text)
    key = re.search(r"chat key:\s+(tg_\w+)", text)
    assert login and key, text[-3000:]

    # Running it again is safe: no duplicate demo data, the same login and key.
    again = subprocess.run(
        [sys.executable, "manage.py", "seed_demo"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert key.group(1) in again.stdout and login.group(1) in again.stdout
    counts = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from tenants.models import *; from providers.models import *;"
         "print(Tenant.objects.count(), ApiKey.objects.count(), Provider.objects.count(), "
         "ProviderModel.objects.count())"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )
    assert counts.stdout.strip().splitlines()[-1].split() == ["1", "2", "1", "3"]
    # Both chats are in the ledger: the server wrote its buffered rows when Ctrl-C stopped it.
    ledger = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from billing.models import UsageLog;"
         "print(sorted((r.status, r.stream, r.output_tokens > 0) for r in UsageLog.objects.all()))"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )
    assert ledger.stdout.strip().splitlines()[-1] == "[('ok', False, True), ('ok', True, True)]"


def _wait_for(log, needle: str, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise AssertionError(f"the Celery {what} did not start: {log.read_text(errors='replace')[-3000:]}")
