"""The data plane's HTTP client: one aiohttp session per worker, whose resolver vets every
address it connects to (the same policy as providers/net.py), so a provider URL cannot be
turned towards cloud metadata or, unless allowed, the private network."""

import asyncio
import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from providers.net import UnsafeURL, vet_resolved


class GuardedResolver(AbstractResolver):
    def __init__(self):
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        addresses = [ipaddress.ip_address(r["host"]) for r in results]
        try:
            vet_resolved(host, addresses)
        except UnsafeURL as exc:
            raise OSError(exc.message) from exc  # aiohttp reports it as a connection error
        return results

    async def close(self) -> None:
        await self._inner.close()


def new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=0,  # no global cap; per-host pools grow with load
        limit_per_host=0,
        resolver=GuardedResolver(),
        ttl_dns_cache=10,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        trust_env=False,  # a proxy from the environment would bypass the address check
        skip_auto_headers=("User-Agent",),
        timeout=aiohttp.ClientTimeout(total=None),
    )


def attempt_timeout(seconds: float, *, stream: bool) -> aiohttp.ClientTimeout:
    """Non-streamed calls get ``seconds`` in total; streams get it to connect and between reads
    (a long answer that keeps flowing is not cut off)."""
    if stream:
        return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
    return aiohttp.ClientTimeout(total=seconds, sock_connect=seconds)


async def sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)
