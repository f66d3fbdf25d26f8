"""The data plane's HTTP client: one aiohttp session per worker, used only through
:class:`Upstream`, so that a provider URL cannot be turned towards cloud metadata or, unless
allowed, the private network.

* Redirects are never followed: :meth:`Upstream.request` is the only way to send, and it always
  passes ``allow_redirects=False``; the engine reports a 3xx as an upstream failure.
* Every connection is vetted with the address policy of :func:`core.net.vet_resolved`, read
  when the connection is made (so ``ALLOW_PRIVATE_PROVIDER_URLS`` applies without a restart):
  the socket factory sees the address each socket is about to connect to — IP-literal hosts
  (which aiohttp never hands to a resolver) and cached DNS answers included — and the resolver
  refuses a host name as soon as any of its addresses is forbidden, naming the host.
"""

import asyncio
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from core.net import UnsafeURL, vet_resolved


class RefusedAddress(OSError):
    """A connection the address policy forbids; it is never attempted. aiohttp reports it as
    the ``os_error`` of a ``ClientConnectorError``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = self.strerror = message  # aiohttp's own message quotes strerror


def _vet(host: str, addresses: list) -> None:
    try:
        vet_resolved(host, addresses)
    except UnsafeURL as exc:
        raise RefusedAddress(exc.message) from exc


def _vetted_socket(addr_info: tuple) -> socket.socket:
    """aiohttp's ``socket_factory``: a socket for ``addr_info`` if its address may be contacted."""
    family, type_, proto, _canonname, sockaddr = addr_info
    address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
    _vet(str(address), [address])
    return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    def __init__(self):
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        _vet(host, [ipaddress.ip_address(r["host"]) for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()


class Upstream:
    """The guarded session. ``request`` is the one way the data plane talks to a provider."""

    def __init__(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,  # no global cap; per-host pools grow with load
            limit_per_host=0,
            resolver=GuardedResolver(),
            socket_factory=_vetted_socket,
            ttl_dns_cache=10,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            trust_env=False,  # a proxy from the environment would bypass the address check
            skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def request(self, method: str, url: str, *, data: Any, headers: dict[str, str],
                timeout: aiohttp.ClientTimeout):
        """``session.request`` without following redirects (a 3xx comes back as it is); use as
        ``async with`` or await it."""
        return self._session.request(method, url, data=data, headers=headers, timeout=timeout,
                                     allow_redirects=False)

    async def close(self) -> None:
        await self._session.close()


def new_session() -> Upstream:
    return Upstream()


def attempt_timeout(seconds: float, *, stream: bool) -> aiohttp.ClientTimeout:
    """Non-streamed calls get ``seconds`` in total; streams get it to connect and between reads
    (a long answer that keeps flowing is not cut off)."""
    if stream:
        return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
    return aiohttp.ClientTimeout(total=seconds, sock_connect=seconds)


async def sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)
