"""One request-body limit (MAX_REQUEST_BYTES) for every route, counted as the bytes arrive:
chunked bodies without a Content-Length included. Against the real server, over raw sockets,
so nothing in between buffers the body."""

import json
import socket

import httpx
import pytest

from tenants.models import Tenant
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 64 * 1024


@pytest.fixture
def limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    return LIMIT


def route(world, name: str) -> tuple[str, str, dict[str, str]]:
    """(method, path, headers) of one route of each kind."""
    return {
        "api": (
            "PUT",
            f"/api/tenants/{world.tenant.pk}",
            {"Authorization": f"Bearer {world.admin_key}"},
        ),
        "console": ("POST", "/accounts/login/", {}),
        "v1": ("POST", "/v1/chat/completions", {"Authorization": f"Bearer {world.chat_key}"}),
    }[name]


def open_request(live, method: str, path: str, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def send_chunks(sock: socket.socket, total: int, size: int = 8192) -> None:
    """``total`` bytes of a JSON-ish body in chunks, and never the final empty chunk."""
    sent = 0
    while sent < total:
        data = b"[" * min(size, total - sent)
        sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        sent += len(data)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)
    }
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_closed_by_server(sock: socket.socket) -> None:
    """The server stopped reading: it closed the connection after its answer."""
    try:
        assert sock.recv(65536) == b""
    except ConnectionResetError:
        pass


def assert_413(name: str, status: int, body: bytes, *words: str) -> None:
    assert status == 413, body
    error = json.loads(body)["error"]
    if name == "v1":  # the gateway answers in OpenAI's shape
        assert (
            set(error) == {"message", "type", "param", "code"}
            and error["code"] == "request_too_large"
        )
    else:
        assert set(error) == {"type", "message"} and error["type"] == "request_too_large"
    for word in words:
        assert word in error["message"], error["message"]


@pytest.mark.parametrize("name", ["api", "console", "v1"])
def test_a_chunked_body_over_the_limit_is_refused_before_it_ends(world, live, limit, name):
    method, path, headers = route(world, name)
    sock = open_request(live, method, path, {**headers, "Transfer-Encoding": "chunked"})
    with sock:
        # One byte past the limit, and the body never ends: an answer now means the server
        # neither waited for the rest nor spooled it.
        send_chunks(sock, limit + 1)
        status, response_headers, body = read_response(sock)
        assert_413(name, status, body, f"limit of {limit} bytes")
        assert response_headers.get("connection") == "close"
        assert_closed_by_server(sock)


@pytest.mark.parametrize("name", ["api", "console", "v1"])
def test_a_declared_length_over_the_limit_is_refused_before_any_byte(world, live, limit, name):
    method, path, headers = route(world, name)
    sock = open_request(live, method, path, {**headers, "Content-Length": str(limit + 1)})
    with sock:
        status, response_headers, body = read_response(sock)
        assert_413(name, status, body, f"{limit + 1} bytes", f"the limit is {limit} bytes")
        assert response_headers.get("connection") == "close"
        assert_closed_by_server(sock)


def padded(obj: dict, size: int) -> bytes:
    raw = json.dumps(obj).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def chunked(raw: bytes, size: int = 8192):
    for i in range(0, len(raw), size):
        yield raw[i : i + size]


def test_a_chunked_body_of_exactly_the_limit_still_works_on_api(world, live, limit):
    body = padded({"name": "Acme Renamed"}, limit)
    response = httpx.put(
        f"{live.url}/api/tenants/{world.tenant.pk}",
        content=chunked(body),
        headers={"Authorization": f"Bearer {world.admin_key}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert Tenant.objects.get(pk=world.tenant.pk).name == "Acme Renamed"


def test_a_chunked_body_of_exactly_the_limit_still_works_on_v1(world, live, limit):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        body = padded({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, limit)
        response = httpx.post(
            f"{live.url}/v1/chat/completions",
            content=chunked(body),
            headers={
                "Authorization": f"Bearer {world.chat_key}",
                "Content-Type": "application/json",
            },
            timeout=10,
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
