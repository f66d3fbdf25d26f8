"""Provider secrets encrypted at rest (with key rotation and masking), and catalog sync: the mock
provider's sync, then upserts that update changed models, mark vanished ones stale and keep
manual prices."""

from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers.catalog import CatalogEntry
from providers.crypto import mask
from providers.fetchers import mock
from providers.fetchers.registry import catalog_fetch
from providers.models import PriceSource, Provider, ProviderModel
from providers.services import provider_get_or_create, provider_models_upsert
from providers.sync import provider_sync

pytestmark = pytest.mark.django_db


def raw_column(provider: Provider, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM providers_provider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


def test_api_key_and_headers_are_encrypted_at_rest():
    provider, _ = provider_get_or_create(name="oai", provider_type="openai", base_url="https://api.openai.com/v1")
    provider.api_key = "sk-live-abcdef123456"
    provider.extra_headers = {"OpenAI-Organization": "org-secret"}
    provider.save()
    assert "sk-live" not in raw_column(provider, "api_key")
    assert "org-secret" not in raw_column(provider, "extra_headers")
    again = Provider.objects.get(pk=provider.pk)
    assert again.api_key == "sk-live-abcdef123456"
    assert again.extra_headers == {"OpenAI-Organization": "org-secret"}


def test_a_second_key_still_decrypts_old_values(settings):
    provider, _ = provider_get_or_create(name="oai", provider_type="openai")
    provider.api_key = "sk-old-key-0001"
    provider.save()
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.ENCRYPTION_KEYS]
    assert Provider.objects.get(pk=provider.pk).api_key == "sk-old-key-0001"


def test_mask_shows_only_the_edges():
    assert mask("sk-proj-abcdefghijklmnop1234") == "sk-…1234"
    assert mask("short") == "…"
    assert mask("") == ""


def test_mock_sync_adds_then_writes_nothing_when_unchanged():
    provider, _ = provider_get_or_create(name="mock", provider_type="mock")
    first = provider_sync(provider=provider)
    assert (first.added, first.updated, first.stale) == (len(mock.CATALOG), 0, 0)
    provider.refresh_from_db()
    assert provider.sync_status == "ok" and provider.last_sync_at is not None

    with CaptureQueriesContext(connection) as queries:
        second = provider_models_upsert(provider=provider, catalog=catalog_fetch(provider))
    assert (second.added, second.updated, second.stale, second.unchanged) == (0, 0, 0, len(mock.CATALOG))
    writes = [q["sql"] for q in queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []


def test_upsert_updates_changed_marks_gone_stale_and_keeps_manual_prices():
    provider, _ = provider_get_or_create(name="mock", provider_type="mock")
    provider_sync(provider=provider)
    ProviderModel.objects.filter(provider=provider, model_id="mock-smart").update(
        input_price=Decimal("9"), output_price=Decimal("9"), price_source=PriceSource.MANUAL
    )
    catalog = [
        CatalogEntry(model_id="mock-fast", context_length=32_000, input_price=Decimal("0.2"),
                     output_price=Decimal("0.8"), price_source=PriceSource.SYNCED),
        CatalogEntry(model_id="mock-smart", context_length=128_000, input_price=Decimal("1"),
                     output_price=Decimal("2"), price_source=PriceSource.SYNCED),
        CatalogEntry(model_id="mock-new"),
    ]
    result = provider_models_upsert(provider=provider, catalog=catalog)
    assert (result.added, result.stale) == (1, 1)
    rows = {m.model_id: m for m in ProviderModel.objects.filter(provider=provider)}
    assert rows["mock-fast"].context_length == 32_000 and rows["mock-fast"].input_price == Decimal("0.2")
    assert rows["mock-smart"].input_price == Decimal("9") and rows["mock-smart"].price_source == "manual"
    assert rows["mock-embed"].stale and not rows["mock-embed"].enabled
    assert rows["mock-new"].price_source == "unknown" and rows["mock-new"].input_price is None

    # It comes back: no longer stale, enabled again.
    provider_models_upsert(provider=provider, catalog=[*catalog, *mock.CATALOG[2:]])
    embed = ProviderModel.objects.get(provider=provider, model_id="mock-embed")
    assert not embed.stale and embed.enabled
