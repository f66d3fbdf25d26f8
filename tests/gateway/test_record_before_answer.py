"""Every door hands a request's usage record to the ledger writer (whose journal keeps it on
disk at once) before the answer's last bytes leave, and a stream's open marker before its first
bytes: a worker that dies after answering has recorded what it answered.

How it is seen from outside: the writer's ``add`` (and ``open``) is made to hold the worker's
event loop for a moment. The client can then receive the end of its answer only after the
record was handed over; a gateway that recorded after answering would let the answer out first."""

import json
import threading
import time

import httpx
import pytest

from gateway.app import gateway
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

HOLD = 0.4  # seconds the spy holds the worker's loop
HELLO = [{"role": "user", "content": "Say hello"}]
USAGE = {"prompt_tokens": 120, "completion_tokens": 30}


class Spy:
    """Wraps the live writer's ``add`` and ``open``: notes when each returned, per request id,
    after holding the loop for HOLD seconds."""

    def __init__(self, monkeypatch):
        self.added: dict[str, tuple[float, object]] = {}
        self.opened: dict[str, tuple[float, object]] = {}
        self.lock = threading.Lock()
        writer = gateway.usage
        add, open_ = writer.add, writer.open

        def spy_add(record):
            time.sleep(HOLD)
            add(record)
            with self.lock:
                self.added[record.request_id] = (time.monotonic(), record)

        def spy_open(record):
            time.sleep(HOLD)
            open_(record)
            with self.lock:
                self.opened[record.request_id] = (time.monotonic(), record)

        monkeypatch.setattr(writer, "add", spy_add)
        monkeypatch.setattr(writer, "open", spy_open)


@pytest.fixture
def spy(live, monkeypatch):
    return Spy(monkeypatch)


@pytest.fixture
def upstream(world):
    with FakeOpenAI(models=["gpt-4o-mini", "text-embedding-3-small"], usage=USAGE, reply="Hello there!") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        yield fake


def post_whole(url: str, key: str, body: dict, **headers) -> tuple[httpx.Response, float]:
    """A non-streamed request: the answer and when its last byte had arrived."""
    response = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}", **headers}, timeout=20)
    return response, time.monotonic()


def post_stream(url: str, key: str, body: dict, **headers) -> tuple[httpx.Response, float, float, bytes]:
    """A streamed request: the answer, when its headers arrived, when its last byte did, its bytes."""
    with httpx.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}", **headers},
                      timeout=20) as response:
        headers_at = time.monotonic()
        data = b"".join(response.iter_bytes())
        return response, headers_at, time.monotonic(), data


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "up:gpt-4o-mini", "messages": HELLO}),
    ("/v1/embeddings", {"model": "up:text-embedding-3-small", "input": "hello"}),
    ("/v1/responses", {"model": "up:gpt-4o-mini", "input": "Say hello"}),
    ("/v1/messages", {"model": "up:gpt-4o-mini", "max_tokens": 50, "messages": HELLO}),
])
def test_a_whole_answer_leaves_only_after_its_record_was_handed_over(world, live, spy, upstream, path, body):
    response, done_at = post_whole(f"{live.url}{path}", world.chat_key, body, **{"anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    added_at, record = spy.added[request_id]
    assert added_at <= done_at  # the record was with the writer before the answer was complete
    assert record.status == "ok" and record.input_tokens == USAGE["prompt_tokens"]
    assert wait_usage(request_id).input_tokens == USAGE["prompt_tokens"]


def test_an_error_answer_leaves_only_after_its_record_was_handed_over(world, live, spy, upstream):
    response, done_at = post_whole(f"{live.url}/v1/chat/completions", world.chat_key,
                                   {"model": "up:no-such-model", "messages": HELLO})
    assert response.status_code in (400, 404) and response.json()["error"]["message"]
    added_at, record = spy.added[response.headers["x-request-id"]]
    assert added_at <= done_at
    assert record.status != "ok" and record.error_type


@pytest.mark.parametrize("path, body, last_event", [
    ("/v1/chat/completions", {"model": "up:gpt-4o-mini", "messages": HELLO, "stream": True,
                              "stream_options": {"include_usage": True}}, b"data: [DONE]"),
    ("/v1/responses", {"model": "up:gpt-4o-mini", "input": "Say hello", "stream": True}, b"response.completed"),
    ("/v1/messages", {"model": "up:gpt-4o-mini", "max_tokens": 50, "messages": HELLO, "stream": True},
     b"message_stop"),
])
def test_a_stream_is_marked_open_before_its_first_byte_and_recorded_before_its_last(
        world, live, spy, upstream, path, body, last_event):
    response, headers_at, done_at, data = post_stream(f"{live.url}{path}", world.chat_key, body,
                                                      **{"anthropic-version": "2023-06-01"})
    assert response.status_code == 200 and last_event in data
    request_id = response.headers["x-request-id"]
    opened_at, marker = spy.opened[request_id]
    added_at, record = spy.added[request_id]
    assert opened_at <= headers_at  # the marker stood for the stream before the client saw it
    assert added_at <= done_at  # the final record before its end
    # the marker is what a dead worker's stream becomes; the record is the stream's own usage
    assert (marker.status, marker.error_type, marker.tokens_estimated) == ("partial", "worker_lost", True)
    assert record.status == "ok" and (record.input_tokens, record.output_tokens) == (120, 30)
    assert not record.tokens_estimated
    row = wait_usage(request_id)
    assert (row.status, row.input_tokens, row.output_tokens) == ("ok", 120, 30)


def test_a_stream_the_client_leaves_is_recorded_partial_with_what_it_sent(world, live, spy):
    with FakeOpenAI(models=["gpt-4o-mini"], reply=" ".join(["word"] * 40), usage=USAGE) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        fake.set_fault("slow", chunk_delay=0.2)
        with httpx.stream("POST", f"{live.url}/v1/chat/completions", timeout=20,
                          headers={"Authorization": f"Bearer {world.chat_key}"},
                          json={"model": "up:gpt-4o-mini", "messages": HELLO, "stream": True}) as response:
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # leave after the first words
        row = wait_usage(request_id, timeout=10)
    assert (row.status, row.error_type) == ("partial", "client_disconnected")
    assert row.tokens_estimated and row.output_tokens >= 1
    assert request_id in spy.opened  # its marker went out with its headers
