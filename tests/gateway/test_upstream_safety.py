"""The data plane never follows an upstream's redirect, and every connection it opens — IP
literals included — passes the address policy of core/net.py (SSRF)."""

import asyncio
import time

import aiohttp
import httpx
import pytest

from gateway.upstream import RefusedAddress, attempt_timeout, new_session
from providers.models import Provider
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

LEAK = "BODY-OF-THE-REDIRECT-NOT-FOR-CLIENTS"
ENDPOINTS = {  # what the client calls -> (the upstream path, the request body)
    "chat": ("/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    "stream": ("/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                     "stream": True}),
    "embeddings": ("/embeddings", {"model": "text-embedding-3-small", "input": ["hi"]}),
}
MODELS = ["m", "text-embedding-3-small"]


def call(live, key, endpoint):
    path, body = ENDPOINTS[endpoint]
    return httpx.post(f"{live.url}/v1{path}", headers={"Authorization": f"Bearer {key}"}, json=body,
                      timeout=15)


def upstream_error(response, status=502):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    return error


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_upstream_redirect_is_a_failure_and_is_not_followed(world, live, endpoint):
    # Given a tenant's provider that answers every call with 307 to another server
    path, _ = ENDPOINTS[endpoint]
    with FakeOpenAI(models=MODELS) as evil, FakeOpenAI(models=MODELS) as target:
        add_provider(world.tenant, evil, max_retries=2, api_key="sk-tenant-secret-0001",
                     extra_headers={"x-extra": "also-secret"})
        evil.set_fault("redirect", location=target.base_url + path, message=LEAK)
        # When a client calls /v1
        response = call(live, world.chat_key, endpoint)
        # Then the gateway answers 502 naming the redirect, without echoing the upstream's body
        error = upstream_error(response)
        assert error["code"] == "redirect"
        assert "answered with a redirect (307)" in error["message"]
        assert "does not follow redirects" in error["message"]
        assert LEAK not in response.text and target.base_url not in response.text
        # and the redirect target was never called, nor the provider asked again
        assert target.requests == []
        assert len(evil.requests_to(path)) == 1
        row = wait_usage(response.headers["x-request-id"])
    assert row.status == "error" and row.error_type == "redirect" and row.attempts == 1


def test_a_redirect_falls_back_to_the_next_target(world, live):
    with FakeOpenAI(models=["m"]) as moved, FakeOpenAI(models=["m"], reply="from b") as good:
        add_provider(world.tenant, moved, name="a", priority=5, max_retries=3)
        add_provider(world.tenant, good, name="b", priority=1)
        moved.set_fault("redirect", location=good.base_url + "/chat/completions", status=308)
        response = call(live, world.chat_key, "chat")
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "from b"
        assert len(moved.requests_to("/chat/completions")) == 1
        assert len(good.requests_to("/chat/completions")) == 1
        assert wait_usage(response.headers["x-request-id"]).attempts == 2


@pytest.mark.parametrize("endpoint", ["chat", "stream"])
def test_a_loopback_ip_literal_is_refused_at_connect_time_when_private_urls_are_off(
        world, live, settings, endpoint):
    # Given a provider on 127.0.0.1 that was accepted while private URLs were allowed
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake, max_retries=2)
        fake.clear_requests()
        # When the platform stops allowing private addresses (read at connect time)
        settings.ALLOW_PRIVATE_PROVIDER_URLS = False
        response = call(live, world.chat_key, endpoint)
        # Then the data plane refuses to connect: nothing reaches the fake
        error = upstream_error(response)
        assert "127.0.0.1" in error["message"] and "ALLOW_PRIVATE_PROVIDER_URLS" in error["message"]
        assert error["code"] == "refused_address"
        assert fake.requests == []
        row = wait_usage(response.headers["x-request-id"])
    assert row.status == "error" and row.error_type == "refused_address" and row.attempts == 1


def test_a_metadata_ip_literal_that_bypassed_validation_is_refused(world, live):
    # Given a provider row pointing at the metadata address, written past all validation
    with FakeOpenAI(models=["m"]) as fake:
        provider = add_provider(world.tenant, fake, max_retries=0, timeout_seconds=3)
    Provider.objects.filter(pk=provider.pk).update(base_url="http://169.254.169.254:80/v1")
    # When a client calls it
    started = time.monotonic()
    response = call(live, world.chat_key, "chat")
    # Then no connection is attempted (no timeout): the address is refused outright
    error = upstream_error(response)
    assert "169.254.169.254" in error["message"] and "metadata" in error["message"]
    assert time.monotonic() - started < 2


def fetch(url, *, headers=None):
    """One GET through a fresh data-plane session: the status, or the connection error."""

    async def run():
        upstream = new_session()
        try:
            async with upstream.request("GET", url, data=None, headers=headers or {},
                                        timeout=attempt_timeout(5, stream=False)) as response:
                return response.status
        finally:
            await upstream.close()

    return asyncio.run(run())


def test_the_session_vets_names_and_cached_dns_answers_when_connecting(settings):
    with FakeOpenAI() as fake:
        url = f"http://localhost:{fake.port}/v1/models"
        # A name is refused when it resolves (the message names the host) ...
        settings.ALLOW_PRIVATE_PROVIDER_URLS = False
        with pytest.raises(aiohttp.ClientConnectorError, match="localhost resolves to"):
            fetch(url)
        assert fake.requests == []

    async def cached_then_refused():
        upstream = new_session()
        try:
            settings.ALLOW_PRIVATE_PROVIDER_URLS = True
            async with upstream.request("GET", url, data=None, headers={"connection": "close"},
                                        timeout=attempt_timeout(5, stream=False)) as response:
                assert response.status == 200
            # ... and a cached answer (no new lookup) is refused when the socket is made.
            settings.ALLOW_PRIVATE_PROVIDER_URLS = False
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await upstream.request("GET", url, data=None, headers={},
                                       timeout=attempt_timeout(5, stream=False))
            return str(caught.value.os_error)
        finally:
            await upstream.close()

    with FakeOpenAI() as fake:
        url = f"http://localhost:{fake.port}/v1/models"
        message = asyncio.run(cached_then_refused())
        assert "ALLOW_PRIVATE_PROVIDER_URLS" in message and "resolves to" not in message
        assert len(fake.requests) == 1


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/"])
def test_the_session_refuses_metadata_literals_even_with_private_urls_allowed(settings, url):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    with pytest.raises(aiohttp.ClientConnectorError, match="metadata") as caught:
        fetch(url)
    assert isinstance(caught.value.os_error, RefusedAddress)


def test_the_session_returns_a_redirect_instead_of_following_it():
    with FakeOpenAI() as moved, FakeOpenAI() as target:
        moved.set_fault("redirect", location=target.base_url + "/models")
        assert fetch(moved.base_url + "/models") == 307
        assert target.requests == []
