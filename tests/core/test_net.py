"""The guarded outbound HTTP client (core/net.py): the address guard (literal, resolved, at
connect time, on redirects) and fetch_json's limits and errors.

The HTTP cases talk to real servers on 127.0.0.1 (stdlib ``http.server`` in a thread); only
DNS is faked, by patching ``socket.getaddrinfo``. Nothing here needs the database.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.errors import InvalidInput
from core.net import (
    NotJSON,
    ResponseTooLarge,
    TooManyRedirects,
    UnsafeURL,
    UpstreamUnreachable,
    check_url,
    fetch_json,
    guarded_client,
)

# --------------------------------------------------------------------------------------------
# check_url
# --------------------------------------------------------------------------------------------

METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.0.1:8080/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://2852039166/",  # decimal
    "http://0xa9.0xfe.0xa9.0xfe/",  # hex
    "http://0xA9FEA9FE/",  # one hex number
    "http://0251.0376.0251.0376/",  # octal
    "http://169.254.43518/",  # a.b.c with c as 16 bits
]


@pytest.mark.parametrize("url", METADATA_URLS)
@pytest.mark.parametrize("allow_private", [False, True])
def test_metadata_addresses_are_always_refused(url, allow_private):
    with pytest.raises(UnsafeURL, match="link-local / cloud metadata") as caught:
        check_url(url, allow_private=allow_private)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.field == "base_url"


PRIVATE_URLS = [
    "http://127.0.0.1:11434/",
    "http://127.1/",
    "http://2130706433/",  # 127.0.0.1 in decimal
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.10/",
    "http://[fd12:3456::1]/",
    "http://100.64.0.1/",  # CGNAT
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://localhost/",
    "http://LOCALHOST.:8000/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_addresses_need_allow_private(url):
    with pytest.raises(UnsafeURL, match="ALLOW_PRIVATE_PROVIDER_URLS"):
        check_url(url, allow_private=False)
    check_url(url, allow_private=True)


def test_localhost_message_names_the_resolved_address():
    with pytest.raises(UnsafeURL, match=r"localhost resolves to (127\.0\.0\.1|::1)"):
        check_url("http://localhost:11434", allow_private=False)


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8/v1", "http://[2001:4860:4860::8888]/", "http://[64:ff9b::808:808]/"]
)
def test_public_addresses_pass(url):
    check_url(url, allow_private=False)


def test_allow_private_none_reads_the_setting(settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    check_url("http://127.0.0.1:8000/")
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    with pytest.raises(UnsafeURL):
        check_url("http://127.0.0.1:8000/")
    with pytest.raises(UnsafeURL, match="metadata"):
        check_url("http://169.254.169.254/", allow_private=None)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "http:///path", "nonsense"])
def test_non_http_urls_are_refused(url):
    with pytest.raises(UnsafeURL):
        check_url(url, allow_private=True)


@pytest.fixture
def fake_dns(monkeypatch):
    """``fake_dns({"name": ["ip", ...]})``: each lookup of a name pops the next answer (the last
    answer repeats). Numeric hosts and unknown names go to the real resolver; names mapped
    to ``None`` fail to resolve. Returns the list of (name, answer) lookups made."""
    real = socket.getaddrinfo
    lookups: list[tuple[str, str | None]] = []

    def install(answers: dict[str, list[str] | None]):
        queues = {name: list(ips) if ips is not None else None for name, ips in answers.items()}

        def getaddrinfo(host, port, *args, **kwargs):
            if host not in queues:
                return real(host, port, *args, **kwargs)
            queue = queues[host]
            if queue is None:
                lookups.append((host, None))
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            ip = queue.pop(0) if len(queue) > 1 else queue[0]
            lookups.append((host, ip))
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port)
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return lookups

    return install


def test_every_resolved_address_must_pass(monkeypatch):
    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(UnsafeURL, match="resolves to 10.0.0.7"):
        check_url("https://mixed.example/v1", allow_private=False)


def test_hostname_resolving_to_metadata_is_refused(fake_dns):
    fake_dns({"metadata.google.internal": ["169.254.169.254"]})
    with pytest.raises(UnsafeURL, match="resolves to 169.254.169.254"):
        check_url("http://metadata.google.internal/", allow_private=True)


def test_unresolvable_host(fake_dns):
    fake_dns({"nowhere.example": None})
    with pytest.raises(UpstreamUnreachable, match="could not resolve host nowhere.example"):
        check_url("https://nowhere.example/v1", allow_private=False)


# --------------------------------------------------------------------------------------------
# A real HTTP server on 127.0.0.1
# --------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Routes: /json, /echo, /html, /error-html, /empty, /big, /big-declared, /slow, /drip,
    /loop and /redirect?to=<location>&code=<status>."""

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on purpose (size or time limit)

    do_POST = do_GET

    def send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def route(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length).decode() if length else ""
        path = parts.path
        if path == "/json":
            self.send(200, b'{"data": [{"id": "m1"}]}', "application/json")
        elif path == "/echo":
            echo = {
                "method": self.command,
                "host": self.headers.get("Host"),
                "authorization": self.headers.get("Authorization"),
                "x_api_key": self.headers.get("X-Api-Key"),
                "body": request_body,
            }
            self.send(200, json.dumps(echo).encode(), "application/json")
        elif path == "/html":
            page = b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head></html>"
            self.send(200, page, "text/html; charset=utf-8")
        elif path == "/error-html":
            self.send(502, b"<html><body>Bad Gateway</body></html>", "text/html")
        elif path == "/empty":
            self.send(204, b"", "application/json")
        elif path == "/big":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b" " * 65536)
        elif path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "50000000")
            self.end_headers()
            self.wfile.write(b"{}")
        elif path == "/slow":
            time.sleep(1.5)
            self.send(200, b"{}", "application/json")
        elif path == "/drip":  # a byte every 0.1 s: no single read times out
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b" ")
                time.sleep(0.1)
        elif path == "/loop":
            self.send(302, b"", "text/plain", Location="/loop")
        elif path == "/redirect":
            self.send(int(query.get("code", "302")), b"", "text/plain", Location=query["to"])
        else:
            self.send(404, b'{"error": "not found"}', "application/json")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Base URL of a threaded HTTP server on 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def port(server) -> int:
    return int(server.rsplit(":", 1)[1])


def test_fetch_json_ok(server):
    with guarded_client(timeout=5, allow_private=True) as client:
        status, headers, data, snippet = fetch_json(client, "GET", f"{server}/json")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert data == {"data": [{"id": "m1"}]}
    assert snippet.startswith('{"data"')


def test_loopback_server_refused_without_allow_private(server):
    with guarded_client(timeout=5, allow_private=False) as client:
        with pytest.raises(UnsafeURL, match="ALLOW_PRIVATE_PROVIDER_URLS"):
            fetch_json(client, "GET", f"{server}/json")
        # The client itself refuses at connect time too, without fetch_json's pre-check.
        with pytest.raises(UnsafeURL):
            client.get(f"{server}/json")


def test_guarded_client_refuses_metadata_at_connect_time():
    with guarded_client(timeout=5, allow_private=True) as client:
        with pytest.raises(UnsafeURL, match="metadata"):
            client.get("http://169.254.169.254/latest/meta-data/")
        with pytest.raises(UnsafeURL, match="metadata"):
            client.get("http://2852039166/")


def test_dns_rebinding_is_refused_at_connect_time(fake_dns):
    # The first lookup (fetch_json's check) sees a public address, the second (the
    # connection) the metadata address: the connection must not happen.
    lookups = fake_dns({"rebind.example": ["93.184.215.14", "169.254.169.254"]})
    with guarded_client(timeout=5, allow_private=True) as client:
        with pytest.raises(UnsafeURL, match="rebind.example resolves to 169.254.169.254"):
            fetch_json(client, "GET", "http://rebind.example/v1/models")
    assert lookups == [("rebind.example", "93.184.215.14"), ("rebind.example", "169.254.169.254")]


def test_dns_rebinding_to_loopback_is_refused_at_connect_time(fake_dns):
    fake_dns({"rebind.example": ["93.184.215.14", "127.0.0.1"]})
    with guarded_client(timeout=5, allow_private=False) as client:
        with pytest.raises(UnsafeURL, match="rebind.example resolves to 127.0.0.1"):
            fetch_json(client, "GET", "http://rebind.example/v1/models")


def test_connects_to_the_vetted_address_but_keeps_the_host_name(fake_dns, port):
    lookups = fake_dns({"api.provider.test": ["127.0.0.1"]})
    with guarded_client(timeout=5, allow_private=True) as client:
        status, _, data, _ = fetch_json(client, "GET", f"http://api.provider.test:{port}/echo")
    assert status == 200
    assert data["host"] == f"api.provider.test:{port}"
    assert lookups == [("api.provider.test", "127.0.0.1")] * 2  # check, then connect


def test_redirect_to_metadata_is_refused(server):
    target = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    url = f"{server}/redirect?to={target}"
    with guarded_client(timeout=5, allow_private=True) as client:
        with pytest.raises(UnsafeURL, match=r"redirected to http://169\.254\.169\.254/") as caught:
            fetch_json(client, "GET", url)
        assert "link-local / cloud metadata" in caught.value.message
        # Even a caller who turns on httpx's own redirect following cannot get there.
        with pytest.raises(UnsafeURL, match="metadata"):
            client.get(url, follow_redirects=True)


def test_redirect_to_private_address_is_refused_unless_allowed(fake_dns, port):
    fake_dns({"public.example": ["127.0.0.1"]})
    # The first hop is to a host we pretend is fine; it redirects to a loopback literal.
    with guarded_client(timeout=5, allow_private=False) as client:
        with pytest.raises(UnsafeURL):
            fetch_json(client, "GET", f"http://public.example:{port}/redirect?to=http://127.0.0.1/")


def test_same_origin_redirect_is_followed_with_headers(server):
    with guarded_client(timeout=5, allow_private=True, headers={"Authorization": "Bearer sk"}) as c:
        status, _, data, _ = fetch_json(c, "GET", f"{server}/redirect?to=/echo")
    assert status == 200
    assert data["authorization"] == "Bearer sk"


def test_cross_origin_redirect_drops_credentials(server, port):
    # 127.0.0.1 -> localhost is another origin (both loopback, so allowed here).
    with guarded_client(timeout=5, allow_private=True, headers={"Authorization": "Bearer sk"}) as c:
        status, _, data, _ = fetch_json(
            c,
            "GET",
            f"{server}/redirect?to=http://localhost:{port}/echo",
            headers={"X-Api-Key": "secret"},
        )
    assert status == 200
    assert data["host"] == f"localhost:{port}"
    assert data["authorization"] is None
    assert data["x_api_key"] is None


@pytest.mark.parametrize(("code", "method", "body"), [(303, "GET", ""), (307, "POST", '{"a":1}')])
def test_redirect_method_rules(server, code, method, body):
    with guarded_client(timeout=5, allow_private=True) as client:
        _, _, data, _ = fetch_json(
            client, "POST", f"{server}/redirect?to=/echo&code={code}", json={"a": 1}
        )
    assert data["method"] == method
    assert data["body"] == body


def test_too_many_redirects(server):
    with guarded_client(timeout=5, allow_private=True) as client:
        with pytest.raises(TooManyRedirects, match="more than 2 times"):
            fetch_json(client, "GET", f"{server}/loop", max_redirects=2)


def test_redirect_without_following_returns_the_3xx(server):
    with guarded_client(timeout=5, allow_private=True) as client:
        response = client.get(f"{server}/redirect?to=/json")
    assert response.status_code == 302  # the client never follows by itself


def test_too_large_body_is_aborted(server):
    with guarded_client(timeout=5, allow_private=True, max_bytes=100_000) as client:
        with pytest.raises(ResponseTooLarge, match="exceeded 100,000 bytes"):
            fetch_json(client, "GET", f"{server}/big")


def test_too_large_declared_body_is_not_read(server):
    with guarded_client(timeout=5, allow_private=True, max_bytes=1_000_000) as client:
        with pytest.raises(ResponseTooLarge, match="announced a 50,000,000-byte response"):
            fetch_json(client, "GET", f"{server}/big-declared")


def test_non_json_body_is_reported(server):
    with guarded_client(timeout=5, allow_private=True) as client:
        with pytest.raises(NotJSON, match="answered text/html, not JSON — is this an LLM API") as e:
            fetch_json(client, "GET", f"{server}/html")
    assert "Welcome to nginx!" in e.value.message


def test_non_json_error_page_is_returned_not_raised(server):
    with guarded_client(timeout=5, allow_private=True) as client:
        status, _, data, snippet = fetch_json(client, "GET", f"{server}/error-html")
        assert (status, data) == (502, None)
        assert "Bad Gateway" in snippet
        status, _, data, snippet = fetch_json(client, "GET", f"{server}/empty")
        assert (status, data, snippet) == (204, None, "")
        status, _, data, _ = fetch_json(client, "GET", f"{server}/nope")
        assert (status, data) == (404, {"error": "not found"})


def test_connection_refused():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with guarded_client(timeout=5, allow_private=True) as client:
        expected = rf"connection refused by 127\.0\.0\.1:{free_port}$"
        with pytest.raises(UpstreamUnreachable, match=expected):
            fetch_json(client, "GET", f"http://127.0.0.1:{free_port}/v1/models")


def test_read_timeout(server):
    with guarded_client(timeout=0.3, allow_private=True) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamUnreachable, match=r"timed out after 0\.3 s"):
            fetch_json(client, "GET", f"{server}/slow")
    assert time.monotonic() - started < 1.4


def test_slow_drip_hits_the_total_time_budget(server):
    with guarded_client(timeout=0.5, allow_private=True) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamUnreachable, match=r"timed out after 0\.5 s reading"):
            fetch_json(client, "GET", f"{server}/drip")
    assert time.monotonic() - started < 2


def test_unresolvable_host_via_fetch_json(fake_dns):
    fake_dns({"nowhere.example": None})
    with guarded_client(timeout=5) as client:
        with pytest.raises(UpstreamUnreachable, match="could not resolve host nowhere.example"):
            fetch_json(client, "GET", "https://nowhere.example/v1/models")


def test_proxy_environment_is_ignored(server, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with guarded_client(timeout=5, allow_private=True) as client:
        status, _, _, _ = fetch_json(client, "GET", f"{server}/json")
    assert status == 200


# --------------------------------------------------------------------------------------------
# TLS: SNI keeps the host name; handshake failures are reported as TLS errors
# --------------------------------------------------------------------------------------------


def _self_signed_cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_uses_the_original_host_name_for_sni(tmp_path, fake_dns):
    cert, key = _self_signed_cert(tmp_path, "api.provider.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: seen_sni.append(name)

    listener = socket.create_server(("127.0.0.1", 0))
    tls_port = listener.getsockname()[1]

    def serve_one():
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client rejects our self-signed certificate

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    fake_dns({"api.provider.test": ["127.0.0.1"]})
    try:
        with guarded_client(timeout=5, allow_private=True) as client:
            with pytest.raises(UpstreamUnreachable, match="TLS error: certificate verify failed"):
                fetch_json(client, "GET", f"https://api.provider.test:{tls_port}/v1/models")
    finally:
        thread.join(timeout=5)
        listener.close()
    assert seen_sni == ["api.provider.test"]


def test_tls_to_a_plain_http_server_is_a_tls_error(server, port):
    with guarded_client(timeout=5, allow_private=True) as client:
        with pytest.raises(UpstreamUnreachable, match="TLS error: "):
            fetch_json(client, "GET", f"https://127.0.0.1:{port}/json")


def test_guarded_client_type():
    client = guarded_client(timeout=1, allow_private=False)
    try:
        assert isinstance(client, httpx.Client)
        assert client.follow_redirects is False
        assert client.trust_env is False
    finally:
        client.close()
