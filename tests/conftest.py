"""Shared fixtures. The suite runs against real PostgreSQL and Redis: if either is missing
the run fails at once (it never skips), because a green run without them proves nothing."""

import gc
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from core.redis import get_redis
from support.groups import SUPPORT_GROUP
from tenants.models import Membership, Role
from tenants.services import tenant_create
from tests.utils.live import LiveServer


def pytest_sessionstart(session):
    problems = []
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        problems.append(
            f"DATABASE_URL must point at PostgreSQL for the test suite (got engine {engine}); "
            "`make test` sets postgres://postgres@127.0.0.1:5432/tollgate."
        )
    else:
        import psycopg

        db = settings.DATABASES["default"]
        try:
            psycopg.connect(
                host=db.get("HOST") or None, port=db.get("PORT") or None, user=db.get("USER"),
                password=db.get("PASSWORD") or None, dbname="postgres", connect_timeout=3,
            ).close()
        except Exception as exc:
            problems.append(f"PostgreSQL is not reachable: {exc}")
    client = get_redis()
    if client is None:
        problems.append("REDIS_URL must be set for the test suite (`make test` sets it).")
    else:
        try:
            client.ping()
        except Exception as exc:
            problems.append(f"Redis is not reachable at {settings.REDIS_URL}: {exc}")
    if problems:
        pytest.exit("Test services missing:\n  " + "\n  ".join(problems), returncode=3)


@pytest.fixture(scope="session", autouse=True)
def _close_gateway_database_thread(django_db_setup, django_db_blocker):
    """The data plane's database thread (gateway/db.py) keeps its own connection; close
    it before pytest-django drops the test database."""
    yield
    from django.db import connections

    from gateway.db import _executor

    with django_db_blocker.unblock():
        _executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(scope="session")
def live_server_session():
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture
def live(live_server_session, transactional_db):
    """The live server, with the gateway's per-worker caches emptied for this test."""
    from gateway.app import gateway

    gateway.keys.clear()
    gateway.configs.clear()
    yield live_server_session
    # Rows of this test still buffered would point at tables the next test empties.
    time.sleep(settings.GATEWAY_USAGE_FLUSH_SECONDS * 2)
    if gateway.usage is not None:
        gateway.usage.pending.clear()
    # Django views served by the live server leave their database connections to the garbage
    # collector (they belong to each request's context); collect them now, or the test
    # database cannot be dropped at the end of the run.
    gc.collect()


@pytest.fixture(autouse=True)
def _live_server_flush_interval_kept(settings):
    """The session's live server runs in this process, from the first test that uses it to the
    end of the run, and its usage writer reads GATEWAY_USAGE_FLUSH_SECONDS at every tick: a test
    that changes it, even one that never uses the live server, can leave that writer asleep for
    as long, and the tests after it get no usage rows. A writer of one's own can be flushed by
    hand (tests/billing/test_journal.py's ``started_by_hand``); a server with another interval
    is a subprocess (tests/gateway/test_durability.py)."""
    interval = settings.GATEWAY_USAGE_FLUSH_SECONDS
    yield
    assert settings.GATEWAY_USAGE_FLUSH_SECONDS == interval, (
        "this test changed GATEWAY_USAGE_FLUSH_SECONDS, which the shared live server reads while it runs")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_redis():
    """Each test starts with an empty Redis (cache, counters)."""
    get_redis().flushdb()
    yield


@pytest.fixture
def celery_eager():
    """Run queued tasks inline, as a worker would, for tests that are about the task's work
    rather than the broker."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


class World:
    """Two tenants. ``acme`` has an owner, an admin and a viewer; ``other`` is the outsider
    whose users and keys must see nothing of acme. Plus support staff and plain staff."""

    def __init__(self):
        User = get_user_model()
        created = tenant_create(slug="acme", name="Acme", admin_email="owner@acme.test")
        self.tenant = created.tenant
        self.owner = created.owner
        self.chat_key = created.chat_key
        self.admin_key = created.admin_key
        self.admin = User.objects.create_user("admin@acme.test", "admin@acme.test", "pw")
        self.viewer = User.objects.create_user("viewer@acme.test", "viewer@acme.test", "pw")
        Membership.objects.create(tenant=self.tenant, user=self.admin, role=Role.ADMIN)
        Membership.objects.create(tenant=self.tenant, user=self.viewer, role=Role.VIEWER)

        other = tenant_create(slug="other", name="Other Co", admin_email="owner@other.test")
        self.other = other.tenant
        self.other_owner = other.owner
        self.other_chat_key = other.chat_key
        self.other_admin_key = other.admin_key

        self.support = User.objects.create_user("support@tollgate.test", "support@tollgate.test", "pw", is_staff=True)
        self.support.groups.add(Group.objects.get(name=SUPPORT_GROUP))
        self.plain_staff = User.objects.create_user("staff@tollgate.test", "staff@tollgate.test", "pw", is_staff=True)


@pytest.fixture
def world(db) -> World:
    return World()


@pytest.fixture
def client_for():
    """``client_for(user=…)`` logs a user in; ``client_for(key=…)`` sends a bearer key."""

    def make(*, user=None, key: str | None = None, csrf: bool = False) -> APIClient:
        client = APIClient(enforce_csrf_checks=csrf)
        if user is not None:
            client.force_login(user)
        if key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make
