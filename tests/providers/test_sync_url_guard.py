"""The catalog sync and the connection test (providers/sync.py) go through the guarded client
(core/net.py), also for provider rows that bypassed the validation of the API and the forms."""

import pytest

from core.net import UnsafeURL
from providers.models import Provider
from providers.sync import connection_test, provider_sync
from tests.fakes import FakeOpenAI


def rogue_provider(base_url: str) -> Provider:
    return Provider.objects.create(name="rogue", provider_type="openai_compatible",
                                   base_url=base_url, api_key="sk-rogue-key-0001",
                                   timeout_seconds=3)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "base_url",
    ["http://169.254.169.254:8080/v1", "http://[::ffff:169.254.169.254]:8080/v1",
     "http://[fd00:ec2::254]/v1", "http://100.100.100.200/v1"],
)
def test_sync_refuses_a_metadata_literal_stored_without_validation(settings, base_url):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    provider = rogue_provider(base_url)
    with pytest.raises(UnsafeURL, match="metadata"):
        provider_sync(provider=provider)
    provider.refresh_from_db()
    assert "metadata" in provider.last_sync_error


@pytest.mark.django_db
def test_sync_refuses_a_loopback_literal_when_private_urls_are_off(settings):
    with FakeOpenAI() as fake:
        provider = rogue_provider(fake.base_url)
        settings.ALLOW_PRIVATE_PROVIDER_URLS = False
        with pytest.raises(UnsafeURL, match="ALLOW_PRIVATE_PROVIDER_URLS"):
            provider_sync(provider=provider)
        report = connection_test(provider=provider)
        assert not report.reachable and "ALLOW_PRIVATE_PROVIDER_URLS" in report.error
        assert fake.requests == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:a9fe:a9fe]/latest/",
     "http://[fd00:ec2::254]/latest/"],
)
def test_sync_does_not_follow_a_redirect_to_a_refused_literal(settings, location):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    with FakeOpenAI() as fake:
        provider = rogue_provider(fake.base_url)
        fake.set_fault("redirect", location=location)
        with pytest.raises(UnsafeURL, match=r"redirected to .*, which is refused: .*metadata"):
            provider_sync(provider=provider)
        assert len(fake.requests) == 1
