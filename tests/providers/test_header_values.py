"""What a provider sends upstream in HTTP headers (its API key and extra headers) and what goes
back to clients in one (its name and model ids, in x-tollgate-model). A line break there made
every request through the provider a 500 (the HTTP client refuses the header); a non-ASCII
value broke every catalog sync. Every entry path refuses them, naming the field."""

import pytest
from django.contrib.auth import get_user_model

from core.errors import InvalidInput
from providers.models import Provider, ProviderModel
from providers.services import provider_create, provider_update
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tests.fakes import FakeOpenAI

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/v1"  # the discard port: nothing here connects

BAD_HEADERS = [
    ({"X-Team": "a\r\nX-Injected: 1"}, "extra_headers.X-Team", "line breaks"),
    ({"X-Team": "a\nb"}, "extra_headers.X-Team", "line breaks"),
    ({"X-Team": "a\x1bb"}, "extra_headers.X-Team", "control characters"),
    ({"X-Team": "équipe"}, "extra_headers.X-Team", "ASCII"),
    ({"X Team": "a"}, "extra_headers.X Team", "not a valid header name"),
    ({"X-Team:": "a"}, "extra_headers.X-Team:", "not a valid header name"),
    ({"X-Tëam": "a"}, "extra_headers.X-Tëam", "not a valid header name"),
    ({"Host": "evil"}, "extra_headers.Host", "cannot be sent as an extra header"),
    ({"X-Team\n": "a"}, "extra_headers.X-Team\n", "not a valid header name"),
]
BAD_KEYS = ["sk-abc\r\ndef", "sk-abc\ndef", "sk-\x01abc", "sk-clé"]


@pytest.mark.parametrize(
    ("headers", "field", "words"),
    [
        *BAD_HEADERS,
        ({"X-Team": "a\x00b"}, "extra_headers.X-Team", "control characters"),
    ],
)
def test_service_refuses_bad_extra_headers(world, headers, field, words):
    with pytest.raises(InvalidInput, match=words) as caught:
        provider_create(
            owner=world.tenant, data={"name": "p", "base_url": URL, "extra_headers": headers}
        )
    assert caught.value.field == field
    provider = provider_create(owner=world.tenant, data={"name": "p", "base_url": URL})
    with pytest.raises(InvalidInput) as caught:
        provider_update(provider=provider, data={"extra_headers": headers}, actor=SYSTEM)
    assert caught.value.field == field


@pytest.mark.parametrize("key", BAD_KEYS)
def test_service_refuses_bad_api_keys(world, key):
    with pytest.raises(InvalidInput) as caught:
        provider_create(owner=world.tenant, data={"name": "p", "base_url": URL, "api_key": key})
    assert caught.value.field == "api_key"


@pytest.mark.parametrize(("headers", "field", "words"), BAD_HEADERS)
def test_api_answers_400_naming_the_header(world, client_for, headers, field, words):
    client = client_for(key=world.admin_key)
    created = client.post(
        "/api/providers", {"name": "p", "base_url": URL, "extra_headers": headers}, format="json"
    )
    own = client.post("/api/providers", {"name": "q", "base_url": URL}, format="json").json()["id"]
    changed = client.patch(f"/api/providers/{own}", {"extra_headers": headers}, format="json")
    for response in (created, changed):
        assert response.status_code == 400, response.json()
        assert list(response.json()["error"]["fields"]) == [field]
        assert words in response.json()["error"]["message"]
    assert list(Provider.objects.values_list("name", flat=True)) == ["q"]
    assert Provider.objects.get(name="q").extra_headers == {}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_api_refuses_bad_keys_on_save_and_in_connection_tests(world, client_for, key):
    client = client_for(key=world.admin_key)
    with FakeOpenAI(models=["m"]) as fake:
        saved = client.post(
            "/api/providers",
            {"name": "p", "base_url": fake.base_url, "api_key": key},
            format="json",
        )
        tested = client.post(
            "/api/providers/test", {"base_url": fake.base_url, "api_key": key}, format="json"
        )
        assert fake.requests == []
    for response in (saved, tested):
        assert response.status_code == 400, response.json()
        assert list(response.json()["error"]["fields"]) == ["api_key"]


def test_console_forms_refuse_them(world, client_for):
    client = client_for(user=world.owner)
    form = {
        "name": "lab",
        "provider_type": "openai_compatible",
        "base_url": URL,
        "priority": "0",
        "timeout_seconds": "30",
        "max_retries": "1",
        "sync_interval_minutes": "60",
        "enabled": "on",
    }
    headers = client.post("/app/acme/providers/new/", {**form, "extra_headers": "X-Team: a\x01b"})
    assert headers.status_code == 400
    assert (
        "Line 1: The value of header &#x27;X-Team&#x27; must not contain"
        in headers.content.decode()
    )
    key = client.post("/app/acme/providers/new/", {**form, "api_key": "sk-a\x7fb"})
    assert key.status_code == 400 and "api_key must not contain" in key.content.decode()
    assert not Provider.objects.exists()
    with FakeOpenAI(models=["m"]) as fake:
        tested = client.post(
            "/app/acme/providers/test/", {"base_url": fake.base_url, "api_key": "sk-a\x01b"}
        )
        assert fake.requests == []
    assert "api_key must not contain" in tested.content.decode()


def test_admin_forms_refuse_them(world, client):
    client.force_login(
        get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw")
    )
    form = {
        "name": "p",
        "display_name": "P",
        "provider_type": "openai_compatible",
        "base_url": URL,
        "api_key": "sk-abc\x0bdef",
        "priority": 0,
        "timeout_seconds": 30,
        "max_retries": 1,
        "sync_interval_minutes": 60,
        "enabled": "on",
    }
    response = client.post("/admin/providers/provider/add/", form)
    assert response.status_code == 200 and "api_key must not contain" in response.content.decode()
    assert not Provider.objects.exists()

    provider = provider_create(owner=None, data={"name": "p", "provider_type": "mock"})
    provider_sync(provider=provider)
    model = ProviderModel.objects.get(provider=provider, model_id="mock-fast")
    change = {
        "provider": provider.pk,
        "model_id": "mock\x0bfast",
        "display_name": "",
        "mode": "chat",
        "price_source": "unknown",
        "enabled": "on",
    }
    response = client.post(f"/admin/providers/providermodel/{model.pk}/change/", change)
    assert response.status_code == 200 and "model_id must not contain" in response.content.decode()
    model.refresh_from_db()
    assert model.model_id == "mock-fast"


def test_catalog_sync_leaves_out_ids_no_client_could_use(world):
    """A tenant's own upstream decides its model ids: one with a line break would break the
    x-tollgate-model header of every answer it gives, one over 255 characters the whole sync."""
    with FakeOpenAI(models=["good", "bad\r\nid", "tab\tid", "x" * 300]) as fake:
        provider = provider_create(
            owner=world.tenant, data={"name": "p", "base_url": fake.base_url}
        )
        result = provider_sync(provider=provider)
    assert result.added == 1
    assert list(
        ProviderModel.objects.filter(provider=provider).values_list("model_id", flat=True)
    ) == ["good"]


def test_openrouter_attribution_comes_first_and_a_providers_own_headers_win(settings):
    settings.OPENROUTER_SITE_URL = "https://tollgate.example"
    settings.OPENROUTER_APP_NAME = "Tollgate Test"
    provider = Provider(provider_type="openrouter", extra_headers={"X-Title": "Mine", "A-Team": "1"})
    assert provider.upstream_extra_headers() == (
        ("HTTP-Referer", "https://tollgate.example"), ("X-Title", "Tollgate Test"), ("A-Team", "1"),
        ("X-Title", "Mine"))
    openai = Provider(provider_type="openai", extra_headers={"A-Team": "1"})
    assert openai.upstream_extra_headers() == (("A-Team", "1"),)
    settings.OPENROUTER_SITE_URL = ""
    settings.OPENROUTER_APP_NAME = ""
    assert Provider(provider_type="openrouter").upstream_extra_headers() == ()
