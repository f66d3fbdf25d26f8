"""Billing fixtures: rollup rows written straight into UsageDaily (what the ledger writer would
have added), budgets made through the service, and a loopback webhook receiver."""

import itertools
import json
import threading
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing.models import UsageDaily
from billing.services import budget_create
from providers.models import ModelAlias
from tenants.access import SYSTEM

_model_ids = itertools.count(1000)


def add_spend(tenant, day: date, cost: str | Decimal, *, key=None) -> UsageDaily:
    """One rollup row: ``cost`` USD spent by ``tenant`` (through ``key``) on local ``day``."""
    return UsageDaily.objects.create(
        tenant=tenant, day=day, provider_id=1, provider_model_id=next(_model_ids),
        api_key_id=key.pk if key is not None else 0, requests=1, cost=Decimal(str(cost)),
    )


def make_budget(tenant, **data):
    data.setdefault("name", "Monthly")
    data.setdefault("amount", Decimal("100"))
    return budget_create(tenant=tenant, data=data, actor=SYSTEM)


def make_alias(tenant, name: str) -> ModelAlias:
    return ModelAlias.objects.create(tenant=tenant, name=name)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that answers the statuses in ``script`` in turn (the last
    one repeats) and records every JSON body it gets."""

    def __init__(self, script=(200,)):
        self.script = list(script)
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.bodies.append(json.loads(body))
                    index = len(receiver.bodies) - 1
                    status = receiver.script[min(index, len(receiver.script) - 1)]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver(settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the receiver is on loopback
    servers = []

    def make(script=(200,)):
        server = WebhookReceiver(script).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__(None, None, None)
