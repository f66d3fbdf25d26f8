"""Control-plane changes take effect on the next /v1 request of every worker: each test warms
a second app instance (its own process, so its own caches), changes something the way the API,
console or admin would, and calls that instance at once."""

from decimal import Decimal

import httpx
import pytest

from billing.services import budget_create
from providers.models import ProviderModel
from providers.services import alias_create, provider_model_set_enabled, provider_model_set_price
from tenants.access import SYSTEM
from tenants.keys import key_hash
from tenants.models import ApiKey
from tenants.services import api_key_revoke, tenant_update
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)


def chat(base, key, model="up:m", **body):
    return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


def models(base, key):
    response = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return [m["id"] for m in response.json()["data"]]


def test_a_new_alias_answers_at_once(world, second_instance):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        assert chat(second_instance, world.chat_key, "fast").status_code == 404  # cached: no such alias
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "fast", "targets": [{"model": "up:m"}]})
        response = chat(second_instance, world.chat_key, "fast")
        assert response.status_code == 200, response.text
        assert "fast" in models(second_instance, world.chat_key)


def test_a_disabled_model_stops_being_served_and_listed_at_once(world, second_instance):
    with FakeOpenAI(models=["m"]) as fake:
        provider = add_provider(world.tenant, fake)
        assert chat(second_instance, world.chat_key).status_code == 200
        assert "up:m" in models(second_instance, world.chat_key)
        served = len(fake.requests_to("/v1/chat/completions"))
        model = ProviderModel.objects.get(provider=provider, model_id="m")
        provider_model_set_enabled(provider_model=model, tenant=world.tenant, enabled=False, actor=SYSTEM)
        refused = chat(second_instance, world.chat_key)
        assert refused.status_code == 404 and "not enabled" in refused.json()["error"]["message"]
        assert "up:m" not in models(second_instance, world.chat_key)
        assert len(fake.requests_to("/v1/chat/completions")) == served


def test_a_revoked_key_and_a_suspended_tenant_are_refused_at_once(world, second_instance):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        assert chat(second_instance, world.chat_key).status_code == 200
        assert chat(second_instance, world.admin_key).status_code == 200
        api_key_revoke(key=ApiKey.objects.get(key_hash=key_hash(world.chat_key)), actor=SYSTEM)
        revoked = chat(second_instance, world.chat_key)
        assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
        world.tenant.is_active = False
        world.tenant.save()  # what the admin's "active" checkbox does
        suspended = chat(second_instance, world.admin_key)
        assert suspended.status_code == 403 and suspended.json()["error"]["code"] == "tenant_suspended"


def test_settings_budgets_and_prices_apply_at_once(world, second_instance):
    with FakeOpenAI(models=["gpt-4o-mini"], usage={"prompt_tokens": 10, "completion_tokens": 10}) as fake:
        provider = add_provider(world.tenant, fake, provider_type="openai")
        first = chat(second_instance, world.chat_key, "up:gpt-4o-mini")
        assert first.status_code == 200
        tenant_update(tenant=world.tenant, changes={"max_tokens": 77}, actor=SYSTEM)
        assert chat(second_instance, world.chat_key, "up:gpt-4o-mini").status_code == 200
        assert fake.requests_to("/v1/chat/completions")[-1].body["max_tokens"] == 77

        model = ProviderModel.objects.get(provider=provider, model_id="gpt-4o-mini")
        provider_model_set_price(provider_model=model, tenant=world.tenant, actor=SYSTEM,
                                 prices={"input": Decimal("1000"), "output": Decimal("1000")})
        priced = chat(second_instance, world.chat_key, "up:gpt-4o-mini")
        assert wait_usage(priced.headers["x-request-id"]).cost == Decimal("0.02")  # 20 tokens at $1,000 / M

        budget_create(tenant=world.tenant, actor=SYSTEM, data={"name": "Stop", "amount": "0.000001", "action": "block"})
        blocked = chat(second_instance, world.chat_key, "up:gpt-4o-mini")
        assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "budget_exceeded"
