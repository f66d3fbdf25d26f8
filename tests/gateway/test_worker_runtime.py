"""How a data-plane worker keeps its event loop free: the garbage collector tuned when the worker
starts (what start-up made is frozen, young collections are rare), and the ledger written on the
worker's database thread, never on the loop's."""

import gc
import threading

import httpx
import pytest

from billing import writer as writer_module
from gateway import collector
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_started_worker_has_frozen_its_start_up_objects_and_raised_the_thresholds(world, live):
    # given a worker started by uvicorn (lifespan on, in this process), serving a request
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake)
        resp = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                          json={"model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                          timeout=20)
    assert resp.status_code == 200
    wait_usage(resp.headers["x-request-id"])
    # then the collector walks only what was allocated since start-up, and rarely
    assert gc.get_threshold() == collector.THRESHOLDS
    assert gc.get_freeze_count() > 10_000  # Django, the apps and the gateway, loaded before


def test_the_ledger_is_written_on_the_database_thread_not_the_event_loop(world, live, monkeypatch):
    threads = []
    write = writer_module.usage_records_write

    def spy(rows):
        threads.append(threading.current_thread().name)
        return write(rows)

    monkeypatch.setattr(writer_module, "usage_records_write", spy)
    with FakeOpenAI(models=["gpt-4o-mini"]) as fake:
        add_provider(world.tenant, fake)
        resp = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                          json={"model": "up:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                          timeout=20)
    wait_usage(resp.headers["x-request-id"])
    assert threads and all(name.startswith("tollgate-db") for name in threads)  # not live.thread, the loop's
