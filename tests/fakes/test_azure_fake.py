"""FakeAzure's faults, from base.py's machinery, in Azure's shapes: slow, 429 with retry-after,
500, a reset mid-stream and a malformed frame, plus the prompt-filter chunk that opens a stream."""

import json
import time

import httpx
import pytest

from tests.fakes import FakeAzure

KEY = "azure-fake-key"
URL = "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
BODY = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def fake():
    with FakeAzure(api_key=KEY, reply="one two three four", stream_chunks=4) as server:
        yield server


def post(fake, body=BODY, **kw):
    return httpx.post(fake.url + URL, headers={"api-key": KEY}, json=body, timeout=10, **kw)


def frames(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_stream_opens_with_the_prompt_filter_chunk_and_ends_with_usage(fake):
    response = post(fake, {**BODY, "stream": True, "stream_options": {"include_usage": True}})
    chunks = frames(response.text)
    assert chunks[0]["choices"] == [] and chunks[0]["id"] == "" and chunks[0]["prompt_filter_results"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three four"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0
    assert all(c["model"] == "gpt-4o" for c in chunks[1:]) and response.text.rstrip().endswith("data: [DONE]")


def test_429_carries_retry_after_and_azures_error_shape(fake):
    fake.set_fault("status", status=429, retry_after=7, times=1)
    response = post(fake)
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "429" and "retry after" in response.json()["error"]["message"]
    assert post(fake).status_code == 200  # times=1


def test_500_slow_reset_and_malformed(fake):
    fake.set_fault("status", status=500, times=1)
    assert post(fake).json()["error"]["code"] == "InternalServerError"
    fake.set_fault("slow", delay=0.3, times=1)
    started = time.monotonic()
    assert post(fake).status_code == 200 and time.monotonic() - started >= 0.3
    fake.set_fault("reset", after_chunks=2, times=1)
    with pytest.raises(httpx.HTTPError):
        post(fake, {**BODY, "stream": True})
    fake.set_fault("malformed", after_chunks=2, times=1)
    text = post(fake, {**BODY, "stream": True}).text
    with pytest.raises(json.JSONDecodeError):
        frames(text)
