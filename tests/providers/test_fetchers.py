"""Catalog fetchers (providers/fetchers/): one per provider type, the mock an ordinary entry
that needs no network. The HTTP fetchers are exercised against loopback fakes by
test_api_providers.py and test_net.py."""

from providers.fetchers import mock
from providers.fetchers.registry import FETCHERS, catalog_fetch
from providers.models import Provider, ProviderType


def test_every_provider_type_has_a_fetcher():
    assert set(FETCHERS) == set(ProviderType.values)


def test_the_mock_catalog_is_fixed_and_opens_no_client(monkeypatch):
    def no_client(**kwargs):
        raise AssertionError("the mock catalog must not open an HTTP client")

    monkeypatch.setattr("providers.fetchers.registry.guarded_client", no_client)
    catalog = catalog_fetch(Provider(name="mock", provider_type="mock"))
    assert [e.model_id for e in catalog] == ["mock-fast", "mock-smart", "mock-embed"]
    assert catalog == list(mock.CATALOG)

