"""Fixtures for the console's view and browser tests: acme (owner, admin, viewer) with a
platform provider, an own provider, an alias, a budget and some usage; the outsider tenant
``other`` with objects of its own whose ids must be 404s in acme's URLs."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from billing.ledger import usage_records_write
from billing.models import Budget
from billing.records import UsageRecord
from billing.services import budget_create
from providers.models import ModelAlias, Provider, ProviderModel, TenantModel
from providers.services import alias_create, provider_create
from tenants.access import SYSTEM
from tenants.models import ApiKey


def pytest_configure(config):
    # Also listed in pyproject's markers once that file allows it; registered here so
    # --strict-markers accepts it meanwhile.
    config.addinivalue_line("markers", "e2e: end-to-end tests in a real headless browser (chromium + Playwright)")


OWN_KEY = "sk-own-provider-secret-1234"
LAB_URL = "http://127.0.0.1:9/v1"  # the discard port: connections are refused at once
PLATFORM_KEY = "sk-platform-secret-9876"


@dataclass
class Console:
    world: object
    platform: Provider
    gpt: ProviderModel  # platform model, priced, enabled for acme
    mini: ProviderModel  # platform model, unknown price, not chosen by acme
    own: Provider  # acme's own provider (openai-compatible, with a key)
    llama: ProviderModel
    alias: ModelAlias
    budget: Budget
    chat_key: ApiKey
    other_provider: Provider
    other_alias: ModelAlias
    other_budget: Budget
    other_key: ApiKey

    @property
    def tenant(self):
        return self.world.tenant


def build_console(world) -> Console:
    tenant, other = world.tenant, world.other
    platform = provider_create(owner=None, data={"name": "openai", "provider_type": "openai",
                                                 "api_key": PLATFORM_KEY})
    gpt = ProviderModel.objects.create(provider=platform, model_id="gpt-4o", display_name="GPT-4o",
                                       context_length=128_000, supports_tools=True, supports_vision=True,
                                       input_price=Decimal("2.5"), output_price=Decimal("10"), price_source="catalog")
    mini = ProviderModel.objects.create(provider=platform, model_id="gpt-4o-mini")
    TenantModel.objects.create(tenant=tenant, provider_model=gpt, enabled=True)
    with override_settings(ALLOW_PRIVATE_PROVIDER_URLS=True):  # nothing listens there: fails fast, offline
        own = provider_create(owner=tenant, data={"name": "lab", "provider_type": "openai_compatible",
                                                  "base_url": LAB_URL, "api_key": OWN_KEY})
    llama = ProviderModel.objects.create(provider=own, model_id="meta-llama/llama-3.1-8b:free", context_length=8192,
                                         input_price=Decimal("0.1"), output_price=Decimal("0.2"))
    alias = alias_create(tenant=tenant, data={"name": "smart-cheap", "targets": [
        {"model": "lab:meta-llama/llama-3.1-8b:free", "overrides": {"temperature": 0.2}},
        {"model": "openai:gpt-4o"}]}, actor=SYSTEM)
    budget = budget_create(tenant=tenant, data={"name": "Monthly", "amount": Decimal("10")}, actor=SYSTEM)

    other_provider = provider_create(owner=other, data={"name": "theirs", "provider_type": "openai_compatible",
                                                        "base_url": "https://their.example/v1",
                                                        "api_key": "sk-theirs-0000"})
    other_model = ProviderModel.objects.create(provider=other_provider, model_id="their-model")
    other_alias = alias_create(tenant=other, data={"name": "their-alias",
                                                   "targets": [{"model": "theirs:their-model"}]},
                               actor=SYSTEM)
    other_budget = budget_create(tenant=other, data={"name": "Theirs", "amount": Decimal("5")}, actor=SYSTEM)
    assert other_model.pk
    return Console(
        world=world, platform=platform, gpt=gpt, mini=mini, own=own, llama=llama, alias=alias, budget=budget,
        chat_key=ApiKey.objects.get(tenant=tenant, scope="chat"),
        other_provider=other_provider, other_alias=other_alias, other_budget=other_budget,
        other_key=ApiKey.objects.get(tenant=other, scope="chat"),
    )


def write_usage(console: Console, *, days: int = 3, per_day: int = 4) -> None:
    """Ledger rows (and their rollups) through the gateway's own writer: ``per_day`` requests
    on each of the last ``days`` days, on two models, one failed, one of unknown cost."""
    now = timezone.now()
    rows = []
    for d in range(days):
        at = now - timedelta(days=d)
        for i in range(per_day):
            model = console.gpt if i % 2 else console.llama
            rows.append(UsageRecord(
                request_id=f"req_web_{d}_{i}_{console.tenant.pk}", tenant_id=console.tenant.pk,
                api_key_id=console.chat_key.pk, provider_id=model.provider_id, provider_model_id=model.pk,
                model_requested="smart-cheap", status="error" if i == 3 else "ok", input_tokens=1000,
                cached_input_tokens=200, output_tokens=100, latency_ms=120,
                cost=None if i == 2 else Decimal("0.0125"), conversation_id=f"conv-{i % 2}",
                created_at=at, day=at.astimezone(timezone.get_default_timezone()).date(),
            ))
    usage_records_write(rows)


@pytest.fixture
def console(world, settings) -> Console:
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the own provider's URL is on loopback
    return build_console(world)


@pytest.fixture
def login():
    """``login(user)`` is a Django test client with that user logged in (CSRF enforced, as a
    browser would be); ``login(None)`` is anonymous."""

    def make(user=None) -> Client:
        client = Client(enforce_csrf_checks=False)
        if user is not None:
            client.force_login(user)
        return client

    return make
