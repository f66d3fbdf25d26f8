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


@pytest.fixture
def scoped(world):
    """acme with projects ``support`` (``support_project``) and ``web`` (one chat key each), ``support_admin`` (admin of
    support only), ``support_viewer`` (viewer of support only); models: the platform's
    ``openai:gpt-4o`` (chosen by acme) and ``gpt-4o-mini`` (not chosen), acme's own
    ``ollama:llama3:70b``, and the alias ``smart`` → gpt-4o. The outsider ``other`` has a project
    ``theirs`` and its own alias ``theirs-alias``."""
    from decimal import Decimal as D

    from django.contrib.auth import get_user_model

    from providers.models import AliasTarget, Provider, ProviderModel, TenantModel
    from tenants.models import Project, ProjectMembership, Role
    from tenants.services import api_key_create

    User = get_user_model()
    w = world
    w.support_project = Project.objects.create(tenant=w.tenant, slug="support", name="Support")
    w.web = Project.objects.create(tenant=w.tenant, slug="web", name="Web")
    w.theirs = Project.objects.create(tenant=w.other, slug="theirs", name="Theirs")
    w.support_key, w.support_raw = api_key_create(tenant=w.tenant, name="support key", project=w.support_project,
                                                  actor=SYSTEM)
    w.web_key, _ = api_key_create(tenant=w.tenant, name="web key", project=w.web, actor=SYSTEM)
    w.support_admin = User.objects.create_user("supportadmin@acme.test", "supportadmin@acme.test", "pw")
    w.support_viewer = User.objects.create_user("supportviewer@acme.test", "supportviewer@acme.test", "pw")
    ProjectMembership.objects.create(project=w.support_project, user=w.support_admin, role=Role.ADMIN)
    ProjectMembership.objects.create(project=w.support_project, user=w.support_viewer, role=Role.VIEWER)
    openai = Provider.objects.create(name="openai", provider_type="openai")
    price = {"input_price": D("2.5"), "output_price": D("10")}
    w.gpt = ProviderModel.objects.create(provider=openai, model_id="gpt-4o", **price)
    w.mini = ProviderModel.objects.create(provider=openai, model_id="gpt-4o-mini", **price)
    TenantModel.objects.create(tenant=w.tenant, provider_model=w.gpt)
    ollama = Provider.objects.create(owner=w.tenant, name="ollama", provider_type="ollama")
    w.llama = ProviderModel.objects.create(provider=ollama, model_id="llama3:70b")
    w.smart = ModelAlias.objects.create(tenant=w.tenant, name="smart")
    AliasTarget.objects.create(alias=w.smart, position=0, provider_model=w.gpt)
    ModelAlias.objects.create(tenant=w.other, name="theirs-alias")
    return w


def spend_on(tenant, day: date, cost: str, *, key=None, model=None) -> UsageDaily:
    """A rollup row of ``cost`` through ``key`` on ``model`` (a ProviderModel)."""
    return UsageDaily.objects.create(
        tenant=tenant, day=day, provider_id=model.provider_id if model else 1,
        provider_model_id=model.pk if model else next(_model_ids),
        api_key_id=key.pk if key is not None else 0, requests=1, cost=Decimal(cost),
    )
