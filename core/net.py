"""The guarded outbound HTTP client: SSRF rules for every call to a URL someone typed.

Everything Tollgate fetches from an admin- or tenant-supplied URL (a provider's model catalog
and connection tests, a budget alert's webhook) goes through this module, because such a URL
is an SSRF vector: it could point at a cloud metadata service or at something on the private
network. (Turning what a person typed into a provider's base URL is providers/base_urls.py.)

* :func:`check_url` refuses URLs whose host is, or resolves to, a forbidden address;
  :func:`vet_resolved` applies the same policy to addresses a caller resolved itself.
* :func:`guarded_client` builds an ``httpx.Client`` that repeats that check at connect time for
  the addresses it actually connects to (so DNS rebinding cannot slip past a check made
  earlier), ignores proxy environment variables and never follows redirects by itself.
* :func:`fetch_json` performs one request with that client: it follows redirects by hand,
  vetting every ``Location``; caps the body size and the total time; and turns every failure
  into a domain error whose message says what went wrong.

Address policy (the same at check time and at connect time):

* link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254,
  100.100.100.200, 168.63.129.16), also when embedded in an IPv6 address (``::ffff:a.b.c.d``,
  NAT64, 6to4), are refused always;
* private, loopback, unspecified, CGNAT, multicast, reserved and other non-global addresses are
  refused unless private URLs are allowed (``settings.ALLOW_PRIVATE_PROVIDER_URLS``, or the
  ``allow_private`` argument).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from core.errors import InvalidInput

__all__ = [
    "GuardedClient",
    "NetError",
    "NotJSON",
    "ProviderFailed",
    "ResponseTooLarge",
    "TooManyRedirects",
    "UnsafeURL",
    "UpstreamUnreachable",
    "check_url",
    "fetch_json",
    "guarded_client",
    "vet_resolved",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class NetError(InvalidInput):
    """Base class of the errors raised by this module; ``field`` defaults to ``base_url``."""

    def __init__(self, message: str, *, field: str | None = "base_url"):
        super().__init__(message, field=field)


class UnsafeURL(NetError):
    """The URL points (or resolves, or redirects) to an address Tollgate must not contact."""


class ProviderFailed(NetError):
    """The provider failed, not the caller: a 502."""

    status = 502
    type = "upstream_error"


class UpstreamUnreachable(ProviderFailed):
    """The provider could not be reached: DNS, connection, TLS, timeout or protocol failure."""


class ResponseTooLarge(ProviderFailed):
    """The response body was larger than the client's ``max_bytes``; reading was aborted."""


class NotJSON(ProviderFailed):
    """A successful response whose body is not JSON, i.e. probably not an LLM API."""


class TooManyRedirects(ProviderFailed):
    """More redirects than :func:`fetch_json` was allowed to follow."""


# --------------------------------------------------------------------------------------------
# Address policy
# --------------------------------------------------------------------------------------------

# Never contacted, whatever the settings say: link-local (where every major cloud serves its
# instance metadata) and the metadata/platform endpoints that live elsewhere.
_METADATA_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local; AWS, GCP, Azure, OCI metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("168.63.129.16/32"),  # Azure platform (WireServer) endpoint
)

# Non-global ranges the ipaddress module of Python 3.11 does not already flag.
_EXTRA_PRIVATE_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (shared address space)
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

_METADATA = "metadata"
_PRIVATE = "private"


def _without_scope(address: IPAddress) -> IPAddress:
    """Drop an IPv6 zone id (``fe80::1%eth0``) so network membership tests work."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, IPv4-compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _classify(address: IPAddress) -> str | None:
    """``"metadata"`` (always refused), ``"private"`` (refused unless allowed) or ``None``."""
    address = _without_scope(address)
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
    if any(c in net for c in candidates for net in _METADATA_NETWORKS if c.version == net.version):
        return _METADATA
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address in _NAT64
    ):
        # ::ffff:a.b.c.d reaches a.b.c.d through a dual-stack socket, and 64:ff9b::a.b.c.d
        # (what DNS64 answers on IPv6-only networks) through the NAT64 gateway: judge a.b.c.d.
        candidates = candidates[1:]
    for c in candidates:
        if (
            not c.is_global
            or c.is_private
            or c.is_loopback
            or c.is_link_local
            or c.is_unspecified
            or c.is_multicast
            or c.is_reserved
            or any(c in net for net in _EXTRA_PRIVATE_NETWORKS if c.version == net.version)
        ):
            return _PRIVATE
    return None


def _allow_private(allow_private: bool | None) -> bool:
    """Resolve the ``allow_private`` argument: ``None`` means the Django setting."""
    if allow_private is None:
        return bool(getattr(settings, "ALLOW_PRIVATE_PROVIDER_URLS", False))
    return bool(allow_private)


def _as_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is a standard literal (zone id allowed), else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to, in resolver order, without duplicates.

    Standard IP literals are returned as they are. Anything else goes through
    ``socket.getaddrinfo``, which also turns the odd IPv4 spellings (``2852039166``,
    ``0xa9.0xfe.0xa9.0xfe``, ``0251.0376.0251.0376``, ``169.254.43518``) into the address the
    operating system would really connect to.
    """
    literal = _as_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UpstreamUnreachable(f"could not resolve host {host}: {_os_error_text(exc)}") from exc
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UpstreamUnreachable(f"could not resolve host {host}: no IPv4 or IPv6 address")
    return addresses


def _vet_host(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses if every one of them passes the policy.

    Raises :class:`UnsafeURL` naming the first forbidden address, or
    :class:`UpstreamUnreachable` if the name does not resolve.
    """
    addresses = _resolve(host, port)
    vet_resolved(host, addresses, allow_private=allow_private)
    return addresses


def vet_resolved(host: str, addresses: list[IPAddress], *, allow_private: bool | None = None) -> None:
    """Apply the address policy to what ``host`` already resolved to (for clients that
    resolve and connect on their own, like the data plane's aiohttp connector in
    gateway/upstream.py). Raises :class:`UnsafeURL`."""
    allow_private = _allow_private(allow_private)
    for address in addresses:
        verdict = _classify(address)
        if verdict is None:
            continue
        where = f"{host}" if _as_ip(host) == address else f"{host} resolves to {address}, which"
        if verdict == _METADATA:
            raise UnsafeURL(
                f"{where} is a link-local / cloud metadata address; Tollgate never sends "
                "requests there. Use the provider's real API address instead."
            )
        if not allow_private:
            raise UnsafeURL(
                f"{where} is a private, loopback or otherwise non-public address. Providers on "
                "a private network are refused unless ALLOW_PRIVATE_PROVIDER_URLS is enabled."
            )


def _host_and_port(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an absolute http(s) URL; :class:`UnsafeURL` otherwise."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise UnsafeURL(f"'{url}' is not a valid URL: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"only http:// and https:// URLs can be fetched (got '{url}').")
    if not host:
        raise UnsafeURL(f"'{url}' has no host name.")
    return scheme, host.rstrip(".") or host, port or (443 if scheme == "https" else 80)


def check_url(url: str, *, allow_private: bool | None = None) -> None:
    """Refuse ``url`` unless it is http(s) and every address its host resolves to is allowed.

    Link-local / cloud metadata addresses are always refused; private, loopback, CGNAT,
    multicast and other non-global addresses only when ``allow_private`` is false
    (``None``: ``settings.ALLOW_PRIVATE_PROVIDER_URLS``). Raises :class:`UnsafeURL`, or
    :class:`UpstreamUnreachable` when the host name does not resolve.

    A check made now says nothing about what the name resolves to later; clients from
    :func:`guarded_client` therefore check again when they connect.
    """
    _scheme, host, port = _host_and_port(url)
    _vet_host(host, port, allow_private=_allow_private(allow_private))


# --------------------------------------------------------------------------------------------
# Connect-time enforcement
# --------------------------------------------------------------------------------------------


class _GuardedBackend(httpcore.SyncBackend):
    """An httpcore network backend that vets the addresses it is about to connect to.

    httpcore hands it the request's host name; it resolves that name once, checks every
    address against the policy and connects to a vetted IP. TLS (SNI, certificate check) and
    the Host header still use the original name, since httpcore takes those from the URL.
    """

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _vet_host(host, port, allow_private=self.allow_private)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # _vet_host never returns an empty list
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UnsafeURL("connections over Unix sockets are not allowed for providers.")


# The pool's limits unless the caller sets its own: none on connections or keep-alives.
_UNBOUNDED = httpx.Limits()


class _GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool uses :class:`_GuardedBackend`.

    ``HTTPTransport`` has no parameter for the network backend, so after its own set-up we
    swap the pool (``_pool``) for an ``httpcore.ConnectionPool`` built with ours. The
    constructor fails loudly if a future httpx stops keeping its pool there, rather than
    silently sending requests without the guard.
    """

    def __init__(self, *, allow_private: bool, limits: httpx.Limits = _UNBOUNDED) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError(
                "httpx.HTTPTransport no longer keeps an httpcore.ConnectionPool in `_pool`; "
                "core.net cannot install its connect-time address check."
            )
        self.backend = _GuardedBackend(allow_private=allow_private)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )


class GuardedClient(httpx.Client):
    """An ``httpx.Client`` that remembers the policy :func:`fetch_json` applies to it."""

    def __init__(self, *, allow_private: bool, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_private = allow_private
        self.max_bytes = max_bytes


def guarded_client(
    *,
    timeout: float,
    allow_private: bool | None = None,
    max_bytes: int = 10_000_000,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """A sync ``httpx.Client`` for talking to provider base URLs.

    * Every TCP connection is vetted at connect time (see :func:`check_url` for the policy);
      a refused address raises :class:`UnsafeURL` out of the request call.
    * Redirects are not followed and proxy / ``.netrc`` environment variables are ignored
      (a proxy would connect on our behalf, unvetted).
    * ``timeout`` applies to each network operation; :func:`fetch_json` also uses it as the
      budget for a whole exchange, and reads at most ``max_bytes`` of a body.

    Use it as a context manager, or close it, to release its connections.
    """
    allow = _allow_private(allow_private)
    return GuardedClient(
        allow_private=allow,
        max_bytes=max_bytes,
        transport=_GuardedTransport(allow_private=allow),
        timeout=timeout,
        headers=headers,
        follow_redirects=False,
        trust_env=False,
    )


# --------------------------------------------------------------------------------------------
# fetch_json
# --------------------------------------------------------------------------------------------

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_BODY_ARGUMENTS = ("content", "data", "files", "json")
# Headers that may follow a redirect to a different origin; everything else (Authorization,
# x-api-key, the provider's extra headers) could carry a credential and is dropped.
_CROSS_ORIGIN_HEADERS = frozenset(
    {
        "host", "accept", "accept-encoding", "user-agent",
        "content-type", "content-length", "connection",
    }
)
_SNIPPET_CHARS = 200


def _origin(url: httpx.URL) -> str:
    """``scheme://host[:port]`` of ``url`` for messages."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port is not None and url.port != default else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}"


def _host_port(url: httpx.URL) -> str:
    """``host:port`` of ``url`` (port always present) for messages."""
    port = url.port or (443 if url.scheme == "https" else 80)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{port}"


def _same_credentials_scope(first: httpx.URL, then: httpx.URL) -> bool:
    """May the request headers of ``first`` be sent to ``then``?

    Yes for the same origin, and for the http → https upgrade of the same host on default
    ports (what a provider's plain-http URL usually redirects to).
    """
    if (first.scheme, first.host, first.port) == (then.scheme, then.host, then.port):
        return True
    return (
        first.host == then.host
        and first.scheme == "http"
        and then.scheme == "https"
        and first.port in (None, 80)
        and then.port in (None, 443)
    )


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _os_error_text(exc: BaseException) -> str:
    """A short human text for an OS / SSL error, without the C source location."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)


def _timeout_value(client: httpx.Client, exc: httpx.TimeoutException) -> float | None:
    """The configured timeout that ``exc`` ran into."""
    kinds = {
        httpx.ConnectTimeout: client.timeout.connect,
        httpx.ReadTimeout: client.timeout.read,
        httpx.WriteTimeout: client.timeout.write,
        httpx.PoolTimeout: client.timeout.pool,
    }
    for kind, value in kinds.items():
        if isinstance(exc, kind):
            return value
    return client.timeout.read


def _unreachable(client: httpx.Client, exc: httpx.HTTPError, url: httpx.URL) -> NetError:
    """Translate an httpx error for a request to ``url`` into a domain error."""
    where = _host_port(url)
    if isinstance(exc, httpx.TimeoutException):
        seconds = _timeout_value(client, exc)
        doing = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
        return UpstreamUnreachable(f"timed out after {seconds} s {doing} {where}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return UnsafeURL(f"only http:// and https:// URLs can be fetched (got '{url}').")
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return UpstreamUnreachable(f"connection refused by {where}")
        if isinstance(cause, ssl.SSLError):
            return UpstreamUnreachable(f"TLS error: {_os_error_text(cause)} ({where})")
        if isinstance(cause, socket.gaierror):
            return UpstreamUnreachable(
                f"could not resolve host {url.host}: {_os_error_text(cause)}"
            )
        if isinstance(cause, socket.timeout):
            return UpstreamUnreachable(
                f"timed out after {client.timeout.connect} s connecting to {where}"
            )
    if isinstance(exc, httpx.RemoteProtocolError):
        return UpstreamUnreachable(
            f"{where} closed the connection or did not answer with valid HTTP: {exc}"
        )
    if isinstance(exc, httpx.ConnectError):
        detail = next(
            (_os_error_text(c) for c in _causes(exc) if isinstance(c, OSError)), str(exc)
        )
        return UpstreamUnreachable(f"could not connect to {where}: {detail}")
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return UpstreamUnreachable(
            f"the connection to {where} broke off: {exc or type(exc).__name__}"
        )
    return UpstreamUnreachable(f"request to {where} failed: {exc or type(exc).__name__}")


def _charset(headers: httpx.Headers) -> str:
    """The body's declared charset, or UTF-8."""
    match = re.search(r"charset=[\"']?([\w.:-]+)", headers.get("content-type", ""), re.I)
    return match.group(1) if match else "utf-8"


def _snippet(body: bytes, headers: httpx.Headers) -> str:
    """The beginning of ``body`` as one short line of text."""
    try:
        text = body[: _SNIPPET_CHARS * 4].decode(_charset(headers), errors="replace")
    except LookupError:
        text = body[: _SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


def _read_body(
    response: httpx.Response, *, max_bytes: int, deadline: float, budget: float | None
) -> bytes:
    """Read a streamed ``response`` body, aborting beyond ``max_bytes`` or the deadline."""
    where = _origin(response.request.url)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(
            f"{where} announced a {int(declared):,}-byte response; the limit is "
            f"{max_bytes:,} bytes, so it was not read."
        )
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(
                f"the response from {where} exceeded {max_bytes:,} bytes; reading was aborted."
            )
        if time.monotonic() > deadline:
            raise UpstreamUnreachable(
                f"timed out after {budget} s reading the response from {where}"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes) -> tuple[bool, Any]:
    """``(True, value)`` if ``body`` is a JSON document, else ``(False, None)``."""
    try:
        return True, json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False, None


def fetch_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    max_redirects: int = 3,
    **kw: Any,
) -> tuple[int, httpx.Headers, Any | None, str]:
    """Send one request with ``client`` and return ``(status, headers, json, snippet)``.

    ``kw`` goes to ``client.build_request`` (``headers=``, ``params=``, ``json=``, …).
    ``json`` is the parsed body, or ``None`` when the body is empty or when a non-2xx answer
    is not JSON (an HTML error page, say); ``snippet`` is the beginning of the body as text,
    for error messages.

    * ``url`` and every redirect target are vetted with :func:`check_url` (the client's
      ``allow_private``) before they are requested; at most ``max_redirects`` redirects are
      followed. A 303, or a 301/302 answering a POST, continues as a GET without a body, as
      browsers do. Request headers other than a few harmless ones are dropped when a
      redirect leaves the original origin, so an API key is never sent to a third party.
    * The body is streamed and reading stops with :class:`ResponseTooLarge` past the client's
      ``max_bytes`` (10 MB unless set in :func:`guarded_client`); an exchange that takes
      longer than the client's timeout fails with :class:`UpstreamUnreachable`.
    * A 2xx body that is not JSON raises :class:`NotJSON`. Transport failures raise
      :class:`UpstreamUnreachable` with a message such as "connection refused by
      127.0.0.1:9999" or "timed out after 5.0 s …".

    Only a client from :func:`guarded_client` also checks addresses at connect time.
    """
    allow_private: bool | None = getattr(client, "allow_private", None)
    max_bytes: int = getattr(client, "max_bytes", 10_000_000)
    budget = client.timeout.read if client.timeout.read is not None else client.timeout.connect

    check_url(url, allow_private=allow_private)
    try:
        first_url = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"'{url}' is not a valid URL: {exc}.", field="base_url") from exc
    current_url = first_url
    current_method = method.upper()
    arguments = dict(kw)
    redirects = 0
    while True:
        request = client.build_request(current_method, current_url, **arguments)
        if not _same_credentials_scope(first_url, request.url):
            for name in list(request.headers.keys()):
                if name.lower() not in _CROSS_ORIGIN_HEADERS:
                    del request.headers[name]
        deadline = time.monotonic() + budget if budget is not None else float("inf")
        try:
            response = client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    next_url = request.url.join(location)
                else:
                    body = _read_body(
                        response, max_bytes=max_bytes, deadline=deadline, budget=budget
                    )
                    next_url = None
            finally:
                response.close()
        except httpx.InvalidURL as exc:
            raise InvalidInput(
                f"'{current_url}' is not a valid URL: {exc}.", field="base_url"
            ) from exc
        except httpx.HTTPError as exc:
            raise _unreachable(client, exc, request.url) from exc

        if next_url is None:
            break
        redirects += 1
        if redirects > max_redirects:
            raise TooManyRedirects(
                f"{_origin(first_url)} redirected more than {max_redirects} times "
                f"(last to {next_url}); give the final URL as base_url."
            )
        try:
            check_url(str(next_url), allow_private=allow_private)
        except UnsafeURL as exc:
            raise UnsafeURL(
                f"{request.url} redirected to {next_url}, which is refused: {exc.message}"
            ) from exc
        status = response.status_code
        if status == 303 or (status in (301, 302) and current_method == "POST"):
            current_method = "GET"
            for name in _BODY_ARGUMENTS:
                arguments.pop(name, None)
        arguments.pop("params", None)  # already part of the URL that was redirected
        current_url = next_url

    snippet = _snippet(body, response.headers)
    if not body.strip():
        return response.status_code, response.headers, None, snippet
    is_json, value = _parse_json(body)
    if is_json:
        return response.status_code, response.headers, value, snippet
    if response.is_success:
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        answered = f"answered {content_type}" if content_type else "answered without a content type"
        raise NotJSON(
            f"the server at {_origin(response.request.url)} {answered}, not JSON — is this an "
            f"LLM API? It began: {snippet!r}"
        )
    return response.status_code, response.headers, None, snippet

