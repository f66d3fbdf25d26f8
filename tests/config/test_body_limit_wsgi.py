"""The request-body limit under a WSGI server (config/wsgi.py): the same 413 and message as under
ASGI, for a declared Content-Length and for a chunked body, against a real server on loopback.

The server is the standard library's wsgiref, taught to hand a chunked body over de-chunked
with ``wsgi.input_terminated`` as gunicorn, waitress and mod_wsgi do (wsgiref itself passes the
raw chunk framing through)."""

import json
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

import httpx
import pytest
from django.db import connections

from config.wsgi import application
from tenants.models import Tenant
from tests.config.test_body_limit import padded, read_response, send_chunks

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 64 * 1024


class Dechunked:
    """A chunked request body, read as its payload (what a WSGI server's ``wsgi.input`` is)."""

    def __init__(self, raw):
        self.raw, self.left, self.done = raw, 0, False

    def read(self, size: int = -1) -> bytes:
        out = b""
        while not self.done and (size < 0 or len(out) < size):
            if self.left == 0:
                self.left = int(self.raw.readline(65537).split(b";")[0].strip() or b"0", 16)
                if self.left == 0:
                    self.raw.readline()  # the empty trailer
                    self.done = True
                    break
            data = self.raw.read(self.left if size < 0 else min(self.left, size - len(out)))
            if not data:
                raise ConnectionError("the client closed inside a chunk")
            out += data
            self.left -= len(data)
            if self.left == 0:
                self.raw.readline()  # the CRLF after each chunk
        return out


class Handler(WSGIRequestHandler):
    def handle(self):
        self.raw_requestline = self.rfile.readline(65537)
        if not self.parse_request():
            return
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        environ = self.get_environ()
        if chunked:
            environ["wsgi.input_terminated"] = True
        handler = ServerHandler(Dechunked(self.rfile) if chunked else self.rfile, self.wfile, self.get_stderr(),
                                environ, multithread=True)
        handler.request_handler = self
        try:
            handler.run(self.server.get_app())
        finally:
            connections.close_all()  # this thread's database connection

    def log_message(self, *args):
        pass


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def wsgi_server(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    server = ThreadingWSGIServer(("127.0.0.1", 0), Handler)
    server.set_app(application)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.server_address[1]
    server.shutdown()
    server.server_close()


def open_put(port: int, world, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"PUT /api/tenants/{world.tenant.pk} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Authorization: Bearer {world.admin_key}", *[f"{k}: {v}" for k, v in headers.items()]]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def assert_413(status: int, body: bytes, *words: str) -> None:
    assert status == 413, body
    error = json.loads(body)["error"]
    assert set(error) == {"type", "message"} and error["type"] == "request_too_large"  # as under ASGI
    for word in words:
        assert word in error["message"], error["message"]


def test_a_declared_length_over_the_limit_is_refused_before_any_byte(world, wsgi_server):
    _, port = wsgi_server
    with open_put(port, world, {"Content-Length": str(LIMIT + 1)}) as sock:  # and no body at all
        status, headers, body = read_response(sock)
    assert_413(status, body, f"Request body is {LIMIT + 1} bytes; the limit is {LIMIT} bytes.")
    assert headers["content-type"] == "application/json"
    assert Tenant.objects.get(pk=world.tenant.pk).name == "Acme"


def test_a_chunked_body_over_the_limit_is_refused_before_it_ends(world, wsgi_server):
    _, port = wsgi_server
    with open_put(port, world, {"Transfer-Encoding": "chunked"}) as sock:
        # One byte past the limit, and the body never ends: an answer now means the middleware
        # neither waited for the rest nor read past the limit.
        send_chunks(sock, LIMIT + 1)
        status, _, body = read_response(sock)
    assert_413(status, body, f"Request body is over the limit of {LIMIT} bytes.")


def test_bodies_within_the_limit_pass_declared_or_chunked(world, wsgi_server):
    url, _ = wsgi_server
    headers = {"Authorization": f"Bearer {world.admin_key}", "Content-Type": "application/json"}
    declared = httpx.put(f"{url}/api/tenants/{world.tenant.pk}", content=padded({"name": "Declared"}, LIMIT),
                         headers=headers, timeout=10)
    assert declared.status_code == 200, declared.text
    assert Tenant.objects.get(pk=world.tenant.pk).name == "Declared"

    body = padded({"name": "Chunked"}, LIMIT)  # exactly the limit, with no Content-Length
    chunked = httpx.put(f"{url}/api/tenants/{world.tenant.pk}",
                        content=(body[i:i + 8192] for i in range(0, len(body), 8192)), headers=headers, timeout=10)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert chunked.status_code == 200, chunked.text
    assert Tenant.objects.get(pk=world.tenant.pk).name == "Chunked"  # Django read the whole body

    assert httpx.get(f"{url}/api/tenants/{world.tenant.pk}", headers=headers, timeout=10).json()["name"] == "Chunked"


def test_the_limit_off_lets_any_body_through(world, wsgi_server, settings):
    url, _ = wsgi_server
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None
    response = httpx.put(f"{url}/api/tenants/{world.tenant.pk}", content=padded({"name": "Big"}, 2 * LIMIT),
                         headers={"Authorization": f"Bearer {world.admin_key}", "Content-Type": "application/json"},
                         timeout=10)
    assert response.status_code == 200, response.text
