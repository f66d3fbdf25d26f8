"""Project aliases and the project's default model through /v1, against a loopback fake: a key of
project ``bot`` reaches bot's aliases, whose ``fast`` shadows the tenant-wide ``fast`` for it only;
a key of another project gets the tenant's 404 for them (listing what it may use), /v1/models lists
per project, and a request without ``model`` gets its project's default model (chat, Messages and
Responses doors), else the tenant's; a change of either is seen on the next request; a budget's
downgrade alias is resolved as the key sees it."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest

from billing.models import Budget, UsageDaily, UsageLog
from providers.models import ProviderModel
from providers.services import alias_create
from tenants.access import SYSTEM
from tenants.models import Project
from tenants.services import api_key_create, project_update, tenant_update
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def setup(world, live):
    """acme: provider ``up`` serving m1, m2, m3; tenant-wide alias ``fast`` (up:m1); project ``bot``
    with its own ``fast`` (up:m2) and ``bot-only`` (up:m3); project ``web`` with none. A key each."""
    with FakeOpenAI(models=["m1", "m2", "m3"]) as fake:
        add_provider(world.tenant, fake, max_retries=0)
        bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Bot")
        web = Project.objects.create(tenant=world.tenant, slug="web", name="Web")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "fast", "targets": [{"model": "up:m1"}]})
        alias_create(tenant=world.tenant, actor=SYSTEM,
                     data={"name": "fast", "project": bot, "targets": [{"model": "up:m2"}]})
        alias_create(tenant=world.tenant, actor=SYSTEM,
                     data={"name": "bot-only", "project": bot, "targets": [{"model": "up:m3"}]})
        world.bot, world.web, world.fake = bot, web, fake
        world.bot_key_row, world.bot_key = api_key_create(tenant=world.tenant, name="bot", project=bot, actor=SYSTEM)
        world.web_key = api_key_create(tenant=world.tenant, name="web", project=web, actor=SYSTEM)[1]
        yield world


def chat(live, key: str, model: str | None = None) -> httpx.Response:
    body = {"messages": HELLO, **({"model": model} if model is not None else {})}
    return httpx.post(f"{live.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=20)


def served(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-tollgate-model"]


def test_a_project_alias_shadows_the_tenant_alias_for_its_keys_only(setup, live):
    assert served(chat(live, setup.bot_key, "fast")) == "up:m2"
    assert served(chat(live, setup.web_key, "fast")) == "up:m1"
    assert served(chat(live, setup.chat_key, "fast")) == "up:m1"  # the default project's key
    response = chat(live, setup.bot_key, "bot-only")
    assert served(response) == "up:m3"
    row = wait_usage(response.headers["x-request-id"])
    assert (row.model_requested, row.project_id) == ("bot-only", setup.bot.pk)
    assert [r.body["model"] for r in setup.fake.requests_to("/v1/chat/completions")] == ["m2", "m1", "m1", "m3"]


def test_another_projects_alias_is_unknown_listing_what_the_key_may_use(setup, live):
    refused = chat(live, setup.web_key, "bot-only")
    assert refused.status_code == 404, refused.text
    message = refused.json()["error"]["message"]
    assert message.startswith("Model 'bot-only' is not enabled for this tenant; available: fast, up:m1")
    assert "bot-only" not in message.partition("available:")[2]
    # the bot key's listing names its own aliases
    refused = chat(live, setup.bot_key, "nope")
    assert refused.status_code == 404
    assert "available: bot-only, fast, up:m1, up:m2, up:m3" in refused.json()["error"]["message"]
    assert not setup.fake.requests_to("/v1/chat/completions")
    assert not UsageLog.objects.filter(model_requested="bot-only", status="ok").exists()


def test_v1_models_lists_per_project(setup, live):
    def ids(key, **headers):
        response = httpx.get(f"{live.url}/v1/models", headers={"Authorization": f"Bearer {key}", **headers})
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()["data"]]

    models = ["up:m1", "up:m2", "up:m3"]
    assert ids(setup.bot_key) == ["bot-only", "fast", *models]
    assert ids(setup.web_key) == ["fast", *models]
    assert ids(setup.chat_key) == ["fast", *models]
    # Anthropic's shape (Claude Code's discovery) lists the same
    assert ids(setup.bot_key, **{"anthropic-version": "2023-06-01"}) == ["bot-only", "fast", *models]
    assert ids(setup.web_key, **{"anthropic-version": "2023-06-01"}) == ["fast", *models]


def test_a_request_without_model_gets_its_projects_default_else_the_tenants(setup, live):
    tenant_update(tenant=setup.tenant, changes={"default_model": "fast"}, actor=SYSTEM)
    project_update(project=setup.bot, changes={"default_model": "bot-only"}, actor=SYSTEM)
    assert served(chat(live, setup.bot_key)) == "up:m3"
    assert served(chat(live, setup.web_key)) == "up:m1"  # no default of its own: the tenant's
    # the Messages door falls through the same resolve
    messages = httpx.post(f"{live.url}/v1/messages", json={"max_tokens": 10, "messages": HELLO},
                          headers={"x-api-key": setup.bot_key, "anthropic-version": "2023-06-01"}, timeout=20)
    assert served(messages) == "up:m3" and messages.json()["type"] == "message"
    # and the Responses door
    responses = httpx.post(f"{live.url}/v1/responses", json={"input": "hi"},
                           headers={"Authorization": f"Bearer {setup.bot_key}"}, timeout=20)
    assert served(responses) == "up:m3"
    # the tenant's default resolved as the key sees it: for bot, "fast" is bot's own
    project_update(project=setup.bot, changes={"default_model": ""}, actor=SYSTEM)
    assert served(chat(live, setup.bot_key)) == "up:m2"
    # a change of the project's default is seen on the very next request
    project_update(project=setup.bot, changes={"default_model": "up:m1"}, actor=SYSTEM)
    assert served(chat(live, setup.bot_key)) == "up:m1"


def test_a_project_alias_created_now_is_served_at_once_and_only_to_its_project(setup, live):
    assert chat(live, setup.web_key, "web-new").status_code == 404
    alias_create(tenant=setup.tenant, actor=SYSTEM,
                 data={"name": "web-new", "project": setup.web, "targets": [{"model": "up:m3"}]})
    assert served(chat(live, setup.web_key, "web-new")) == "up:m3"
    assert chat(live, setup.bot_key, "web-new").status_code == 404


def test_a_project_alias_falls_back_to_its_projects_alias(world, live):
    with FakeOpenAI(models=["m"]) as small, FakeOpenAI(models=["m"], reply="roomy") as big:
        add_provider(world.tenant, small, name="small", max_retries=0)
        add_provider(world.tenant, big, name="big", max_retries=0)
        bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Bot")
        key = api_key_create(tenant=world.tenant, name="bot", project=bot, actor=SYSTEM)[1]
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "roomy", "project": bot, "retries": 0,
                                                              "targets": [{"model": "big:m"}]})
        alias_create(tenant=world.tenant, actor=SYSTEM, data={
            "name": "short", "project": bot, "retries": 0, "targets": [{"model": "small:m"}],
            "context_window_fallbacks": ["roomy"]})
        small.set_fault("context_window")
        response = chat(live, key, "short")
        assert served(response) == "big:m"
        assert response.json()["choices"][0]["message"]["content"] == "roomy"


def test_a_budget_downgrade_resolves_its_alias_as_the_key_sees_it(setup, live):
    # bot's budget is spent; it downgrades to "fast", which for bot's keys is bot's own fast (up:m2)
    Budget.objects.create(tenant=setup.tenant, name="Bot spend", scope="project", project=setup.bot,
                          amount=Decimal("0.000001"), period="day", action="downgrade", downgrade_alias="fast")
    today = datetime.now(ZoneInfo(setup.tenant.timezone)).date()
    m3 = ProviderModel.objects.get(provider__owner=setup.tenant, model_id="m3").pk
    UsageDaily.objects.create(tenant=setup.tenant, day=today, api_key_id=setup.bot_key_row.pk,
                              provider_model_id=m3, requests=1, cost=Decimal("1"))
    response = chat(live, setup.bot_key, "bot-only")
    assert served(response) == "up:m2"
    assert response.headers["x-tollgate-budget-downgrade"] == "Bot spend"
    assert served(chat(live, setup.web_key, "up:m3")) == "up:m3"  # web's keys: not in the budget
