"""The management API's OpenAPI description is valid and true.

* The schema at /api/schema/ passes openapi-spec-validator.
* Every GET, called with the ids of real objects, answers what its schema declares (and so do
  a test call and the DELETEs).
* A bounded, derandomized schemathesis run over every /api operation finds no server error
  and no response (errors included) that differs from the schema.

Schemathesis calls the Django app in-process through its WSGI transport: the requests run in
the test's own thread, so they see (and roll back with) the test's database transaction, no
port or server process is needed, and the run is fast enough for every `make test`. The /api
routes are plain Django views under both WSGI and ASGI (the raw-ASGI data plane on /v1 is
tested elsewhere), so nothing is lost by not going through uvicorn."""

import os
from datetime import UTC, date, datetime

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing.end_users import end_user_block
from billing.limit_services import limit_rule_create
from billing.models import AlertKind, BudgetAlert
from billing.services import budget_create
from billing.usage_selectors import GROUPINGS
from providers.models import ProviderModel
from providers.services import alias_create, provider_create, provider_get_or_create
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tenants.models import Project, ProjectMembership
from tenants.services import api_key_create
from tests.billing.usage.factories import record, usage

SCHEMA_URL = "/api/schema/?format=json"
GONE = "http://127.0.0.1:9/v1"  # the discard port: connections are refused at once


def not_an_undeclared_server_error(ctx, response, case):
    """schemathesis' not_a_server_error, except for the upstream failures (502, 504) that the
    operations which call a provider declare: a sync of a provider whose URL a generated PUT
    pointed somewhere unreachable answers 502, as it should."""
    if str(response.status_code) not in case.operation.responses.status_codes:
        return not_a_server_error(ctx, response, case)
    return None


CHECKS = [
    not_an_undeclared_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Seeded:
    """acme (from the world fixture) with its own mock provider, a platform provider, an
    alias, a budget with an alert, and ledger rows: every list has something in it."""

    def __init__(self, world):
        self.world = world
        self.provider = provider_create(
            owner=world.tenant, data={"name": "own", "provider_type": "mock"}
        )
        provider_sync(provider=self.provider)
        platform, _ = provider_get_or_create(name="shared", provider_type="mock")
        provider_sync(provider=platform)
        self.model = ProviderModel.objects.get(provider=self.provider, model_id="mock-fast")
        self.alias = alias_create(
            tenant=world.tenant,
            data={
                "name": "smart",
                "targets": [
                    {"model": "own:mock-fast"},
                    {"model": "own:mock-smart", "overrides": {"temperature": 0.2}},
                ],
            },
            actor=SYSTEM,
        )
        self.budget = budget_create(
            tenant=world.tenant, data={"name": "Monthly", "amount": "100"}, actor=SYSTEM
        )
        self.limit_rule = limit_rule_create(
            tenant=world.tenant, data={"requests_per_minute": 60}, actor=SYSTEM
        )
        key = world.tenant.api_keys.get(scope="admin")
        BudgetAlert.objects.create(
            tenant=world.tenant,
            budget=self.budget,
            kind=AlertKind.BUDGET,
            period_start=date.today().replace(day=1),
            threshold=50,
            spent="50",
            limit="100",
        )
        at = datetime.now(UTC)
        record(
            world.tenant,
            [
                usage(world.tenant, at=at, model=self.model, key=key, conversation_id="c1", end_user="alice"),
                usage(
                    world.tenant,
                    at=at,
                    model=None,
                    key=None,
                    cost=None,
                    status="error",
                    error_type="bad",
                ),
            ],
        )
        self.key = key
        self.chat_key = world.tenant.api_keys.get(scope="chat")
        self.member = world.tenant.memberships.get(user=world.viewer)
        self.project = Project.objects.create(tenant=world.tenant, slug="bot", name="Support bot")
        api_key_create(tenant=world.tenant, name="bot key", project=self.project, actor=SYSTEM)
        outsider = get_user_model().objects.create_user("bot@acme.test", "bot@acme.test", "pw")
        self.project_member = ProjectMembership.objects.create(project=self.project, user=outsider, role="viewer")
        self.block, _ = end_user_block(tenant=world.tenant, end_user="alice", project=self.project, actor=SYSTEM)

    def path_values(self) -> dict[str, object]:
        return {
            "alias_id": self.alias.pk,
            "budget_id": self.budget.pk,
            "rule_id": self.limit_rule.pk,
            "key_id": self.chat_key.pk,
            "member_id": self.member.pk,
            "provider_id": self.provider.pk,
            "tenant_id": self.world.tenant.pk,
            "model_id": self.model.model_id,
            "project": self.project.pk,
            "project_member_id": self.project_member.pk,
            "block_id": self.block.pk,
        }


@pytest.fixture
def seeded(world) -> Seeded:
    return Seeded(world)


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """A WSGI server's Django closes the database connection after each request; here that
    connection holds the test's transaction, so keep it open (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def load_schema():
    return schemathesis.openapi.from_wsgi(SCHEMA_URL, get_wsgi_application())


CSRF = "openapitestcsrfsecret0123456789x"  # any 32 letters and digits: the cookie and the header


def auths(seeded, client_for) -> dict[str, dict]:
    """How Case / as_strategy authenticate: the tenant's admin key, or the owner's session
    (with a CSRF token, so unsafe methods pass too)."""
    session = client_for(user=seeded.world.owner).cookies[django_settings.SESSION_COOKIE_NAME].value
    return {
        "admin key": {"headers": {"Authorization": f"Bearer {seeded.world.admin_key}"}},
        "owner session": {
            "cookies": {
                django_settings.SESSION_COOKIE_NAME: session,
                django_settings.CSRF_COOKIE_NAME: CSRF,
            },
            "headers": {"X-CSRFToken": CSRF},
        },
    }


def owners_only(operation) -> bool:
    """Members and the audit trail are the owners' (an admin key gets 403 there)."""
    return operation.path.startswith(("/api/members", "/api/audit")) or operation.path.endswith(
        ("/members", "/members/{project_member_id}"))


def test_schema_is_valid_openapi(client):
    response = client.get(SCHEMA_URL)
    assert response.status_code == 200
    validate(response.json())


@pytest.mark.django_db(transaction=True)  # the test call is served by the gateway's database thread
@override_settings(ALLOW_PRIVATE_PROVIDER_URLS=True)
def test_real_objects_answer_per_schema(seeded, client_for):
    """Every GET on objects that exist, read with an admin key and with the owner's session;
    then each usage grouping, a test call, a sync that fails upstream (502) and every DELETE:
    the answers, checked against the schema."""
    schema = load_schema()
    values = seeded.path_values()
    ways = auths(seeded, client_for)
    ok = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "GET":
            continue
        params = {p.name: values[p.name] for p in operation.path_parameters}
        for label, auth in ways.items():
            response = operation.Case(path_parameters=params, **auth).call_and_validate(
                checks=CHECKS
            )
            assert response.status_code in (200, 403), (label, operation.label, response.text[:300])
            ok += response.status_code == 200
    assert ok >= 30

    admin, owner = ways["admin key"], ways["owner session"]
    summary = schema["/api/usage/summary"]["GET"]
    for grouping in GROUPINGS:  # each grouping's key: a date, an id, a name or null
        response = summary.Case(query={"group_by": grouping}, **admin).call_and_validate(
            checks=CHECKS
        )
        assert response.status_code == 200, (grouping, response.text[:300])
    answered = (
        schema["/api/test/llm"]["POST"]
        .Case(body={"model": "own:mock-fast", "prompt": "Say hi"}, **admin)
        .call_and_validate(checks=CHECKS)
    )
    assert answered.status_code == 200, answered.text
    unreachable = provider_create(
        owner=seeded.world.tenant, data={"name": "gone", "base_url": GONE}
    )
    synced = (
        schema["/api/providers/{provider_id}/sync"]["POST"]
        .Case(path_parameters={"provider_id": unreachable.pk}, **admin)
        .call_and_validate(checks=CHECKS)
    )
    assert synced.status_code == 502, synced.text
    for path, auth, expected in [
        ("/api/aliases/{alias_id}", admin, 204),
        ("/api/budgets/{budget_id}", admin, 204),
        ("/api/end-users/blocks/{block_id}", admin, 204),
        ("/api/limits/{rule_id}", admin, 204),
        ("/api/keys/{key_id}", admin, 200),
        ("/api/members/{member_id}", owner, 204),
        ("/api/projects/{project}/members/{project_member_id}", owner, 204),
        ("/api/projects/{project}", admin, 409),  # it has an active key
        ("/api/providers/{provider_id}", admin, 409),  # its usage rows keep it
    ]:
        operation = schema[path]["DELETE"]
        params = {p.name: values[p.name] for p in operation.path_parameters}
        response = operation.Case(path_parameters=params, **auth).call_and_validate(checks=CHECKS)
        assert response.status_code == expected, (path, response.text[:300])


# Per operation and way of generating (66 operations; valid and invalid input with generated
# ids, valid input with the ids of real objects): ~30 s here. FUZZ_EXAMPLES=200 searches deeper.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))


def test_api_fuzz_no_server_error_and_responses_match_schema(seeded, client_for):
    """Generated requests to every operation, with a tenant admin key (the owner's session for
    members and the audit trail): no 5xx, and every answer, errors included, is what the
    schema declares. Derandomized: the same requests every run."""
    schema = load_schema()
    ways = auths(seeded, client_for)
    real = seeded.path_values()
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        auth = ways["owner session" if owners_only(operation) else "admin key"]
        runs = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
        if operation.path_parameters and operation.method.upper() != "DELETE":
            ids = {p.name: real[p.name] for p in operation.path_parameters}
            runs.append((GenerationMode.POSITIVE, {"path_parameters": ids}))
        for mode, fixed in runs:

            @settings(
                max_examples=FUZZ_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(mode, **auth, **fixed))
            def run(case):
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # nothing to get wrong (e.g. a GET without parameters)
                assert mode == GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 (every operation is tried)
                ids = " with real ids" if fixed else ""
                failures.append(f"--- {operation.label} ({mode.value}{ids}): {_describe(exc)}")
    assert not failures, f"{len(failures)} failing:\n" + "\n".join(failures)


def _describe(exc: BaseException) -> str:
    parts = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
    return "\n".join(str(part)[:1500] for part in parts)
