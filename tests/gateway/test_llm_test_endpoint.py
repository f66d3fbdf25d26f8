"""POST /api/test/llm: one request through the tenant's routing, from the management API."""

from decimal import Decimal

import pytest

from billing.models import UsageLog
from providers.services import provider_get_or_create, provider_model_set_enabled
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tenants.keys import key_hash
from tenants.models import ApiKey
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider

pytestmark = pytest.mark.django_db(transaction=True)


def test_answers_with_provider_model_latency_and_cost(world, client_for, live):
    with FakeOpenAI(models=["gpt-4o-mini"], reply="pong", usage={"prompt_tokens": 12, "completion_tokens": 3}) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        response = client_for(key=world.admin_key).post("/api/test/llm", {"model": "up:gpt-4o-mini", "prompt": "ping"},
                                                       format="json")
        assert response.status_code == 200, response.json()
        body = response.json()
        assert (body["answer"], body["provider"], body["model"]) == ("pong", "up", "gpt-4o-mini")
        assert body["latency_ms"] > 0 and (body["input_tokens"], body["output_tokens"]) == (12, 3)
        assert Decimal(body["cost"]) > 0
        assert fake.requests_to("/v1/chat/completions")[-1].body["messages"] == [{"role": "user", "content": "ping"}]
    row = UsageLog.objects.get(request_id=body["request_id"])
    # Recorded like a /v1 request of the admin key that asked.
    admin_key = ApiKey.objects.get(key_hash=key_hash(world.admin_key))
    assert row.status == "ok" and row.api_key_id == admin_key.pk and row.cost == Decimal(body["cost"])


def test_default_model_and_mock(world, client_for, live):
    provider, _ = provider_get_or_create(name="mock", provider_type="mock")
    provider_sync(provider=provider)
    for model in provider.models.all():
        provider_model_set_enabled(provider_model=model, tenant=world.tenant, enabled=True, actor=SYSTEM)
    world.tenant.default_model = "mock:mock-fast"
    world.tenant.save()
    body = client_for(user=world.owner).post("/api/test/llm", {"prompt": "hello"}, format="json").json()
    assert body["provider"] == "mock" and "hello" in body["answer"]


def test_errors_come_back_in_words(world, client_for, live):
    client = client_for(key=world.admin_key)
    unknown = client.post("/api/test/llm", {"model": "nope", "prompt": "x"}, format="json")
    assert unknown.status_code == 404 and "not enabled" in unknown.json()["error"]["message"]
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake, max_retries=0)
        fake.set_fault("status", status=500)
        failed = client.post("/api/test/llm", {"model": "m", "prompt": "x"}, format="json")
        assert failed.status_code == 502 and "answered 500" in failed.json()["error"]["message"]
    assert client.post("/api/test/llm", {"model": "m"}, format="json").status_code == 400


def test_viewer_chat_key_and_outsider(world, client_for, live):
    assert client_for(user=world.viewer).post("/api/test/llm", {"prompt": "x"}, format="json").status_code == 403
    assert client_for(key=world.chat_key).post("/api/test/llm", {"prompt": "x"}, format="json").status_code == 403
    with FakeOpenAI(models=["mine"]) as fake:
        add_provider(world.tenant, fake)
        outsider = client_for(key=world.other_admin_key).post("/api/test/llm", {"model": "up:mine", "prompt": "x"},
                                                             format="json")
        assert outsider.status_code == 404
        assert fake.requests_to("/v1/chat/completions") == []
