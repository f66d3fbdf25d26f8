"""A live Tollgate (the real ASGI app under uvicorn, in a thread of the test process) and
helpers to set up tenants whose providers are loopback fakes. The fixtures are in
tests/conftest.py."""

import asyncio
import threading
import time

import aiohttp
import openai
import uvicorn

from billing.models import UsageLog
from providers.services import provider_create
from providers.sync import provider_sync
from tests.utils.procs import free_port


class LiveServer:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config("config.asgi:application", host="127.0.0.1", port=self.port, lifespan="on",
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=20)


def sdk(live, key: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0, **kwargs)


def add_provider(tenant, fake, name: str = "up", **data):
    provider = provider_create(owner=tenant, data={"name": name, "base_url": fake.base_url, **data})
    provider_sync(provider=provider)
    return provider


def wait_usage(request_id: str, timeout: float = 5.0) -> UsageLog:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = UsageLog.objects.filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no usage row for {request_id} within {timeout}s")


def burst(live, key: str, body: dict, n: int) -> list[int]:
    """POST ``body`` to /v1/chat/completions ``n`` times at once; the statuses."""

    async def run():
        async with aiohttp.ClientSession() as session:
            async def one():
                async with session.post(f"{live.url}/v1/chat/completions", json=body,
                                        headers={"Authorization": f"Bearer {key}"}) as resp:
                    await resp.read()
                    return resp.status
            return await asyncio.gather(*(one() for _ in range(n)))

    return asyncio.run(run())
