"""Prices are bounded where they enter: a manual price through the API, the service or the admin,
and prices a provider's catalog reports. A request at the dearest allowed price still has a cost
the ledger can store."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from billing.models import UsageLog
from billing.pricing import MAX_COST, MAX_TOKENS, usage_cost
from core.errors import InvalidInput
from providers.models import MAX_PRICE, Provider, ProviderModel
from providers.services import provider_model_set_price
from tenants.access import SYSTEM
from tests.fakes import FakeOpenRouter
from tests.providers.test_api_providers import SECRET, add_provider

pytestmark = pytest.mark.django_db


def test_the_dearest_request_at_the_dearest_price_fits_a_ledger_row():
    cost = usage_cost(input_tokens=MAX_TOKENS, cached_input_tokens=0, output_tokens=MAX_TOKENS,
                      input_price=MAX_PRICE, output_price=MAX_PRICE, cached_input_price=None)
    assert cost <= MAX_COST
    field = UsageLog._meta.get_field("cost")
    assert MAX_COST == Decimal(10) ** (field.max_digits - field.decimal_places) - Decimal(10) ** -field.decimal_places
    assert all(f.get_internal_type() == "PositiveIntegerField" for f in (
        UsageLog._meta.get_field(name) for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                                                    "output_tokens", "reasoning_tokens")))


def test_a_manual_price_above_the_bound_is_a_400_naming_the_field(world, client_for):
    with FakeOpenRouter(models=["openai/gpt-4o"], api_key=SECRET) as fake:
        client = client_for(key=world.admin_key)
        provider_id = add_provider(client, fake, provider_type="openrouter")["id"]
        client.post(f"/api/providers/{provider_id}/sync")
    url = f"/api/providers/{provider_id}/models/openai/gpt-4o/price"
    response = client.put(url, {"input": "2.5", "output": "10001"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["output"]
    assert "at most 10000 USD per million tokens" in error["message"]
    huge = client.put(url, {"input": "2.5", "output": "10", "cached_input": "1e20"}, format="json")
    assert huge.status_code == 400 and list(huge.json()["error"]["fields"]) == ["cached_input"]
    assert client.put(url, {"input": "10000", "output": "10000"}, format="json").status_code == 200


def test_the_service_refuses_a_price_out_of_bounds(world):
    provider = Provider.objects.create(name="p", provider_type="openai")
    model = ProviderModel.objects.create(provider=provider, model_id="m")
    with pytest.raises(InvalidInput) as refused:
        provider_model_set_price(provider_model=model, prices={"input": Decimal(1), "output": Decimal(1),
                                                               "cache_write": Decimal(20_000)},
                                 actor=SYSTEM, tenant=None)
    assert refused.value.field == "cache_write"
    model.refresh_from_db()
    assert model.input_price is None


def test_the_admin_refuses_a_price_out_of_bounds(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@t.test", "pw"))
    provider = Provider.objects.create(name="p", provider_type="openai")
    model = ProviderModel.objects.create(provider=provider, model_id="m")
    form = {"provider": provider.pk, "model_id": "m", "display_name": "", "mode": "chat", "context_length": "",
            "input_price": "1", "output_price": "99999", "cached_input_price": "", "cache_write_price": "",
            "price_source": "manual", "enabled": "on"}
    response = client.post(f"/admin/providers/providermodel/{model.pk}/change/", form)
    assert response.status_code == 200 and "at most 10000 USD per million tokens" in response.content.decode()
    model.refresh_from_db()
    assert model.output_price is None


def test_absurd_synced_prices_are_refused_not_stored(world, client_for):
    catalog = [
        {"id": "sane/model", "pricing": {"prompt": "0.0000025", "completion": "0.00001"}},
        {"id": "dear/model", "pricing": {"prompt": "0.5", "completion": "1"}},  # $500,000 per million
        {"id": "absurd/model", "pricing": {"prompt": "1e30", "completion": "1e30"}},
        {"id": "half/model", "pricing": {"prompt": "0.000001", "completion": "0.000001",
                                         "input_cache_write": "50"}},
    ]
    with FakeOpenRouter(models=catalog, api_key=SECRET) as fake:
        client = client_for(key=world.admin_key)
        provider_id = add_provider(client, fake, provider_type="openrouter")["id"]
        synced = client.post(f"/api/providers/{provider_id}/sync")
    assert synced.status_code == 200, synced.json()
    rows = {m.model_id: m for m in ProviderModel.objects.filter(provider_id=provider_id)}
    assert set(rows) == {"sane/model", "dear/model", "absurd/model", "half/model"}
    assert rows["sane/model"].output_price == Decimal("10")
    for model_id in ("dear/model", "absurd/model", "half/model"):
        row = rows[model_id]
        assert (row.input_price, row.output_price, row.cache_write_price, row.price_source) == (
            None, None, None, "unknown"), model_id
