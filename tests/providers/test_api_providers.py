"""The providers REST API against loopback fake upstreams."""

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from providers.models import Provider, ProviderModel, TenantModel
from providers.services import provider_create
from tenants.models import AuditEvent
from tests.fakes import FakeAnthropic, FakeOllama, FakeOpenAI, FakeOpenRouter

pytestmark = pytest.mark.django_db

SECRET = "sk-test-super-secret-0042"


@pytest.fixture
def fake_openai():
    with FakeOpenAI(models=["gpt-4o-mini", "text-embedding-3-small", "meta-llama/llama-3.1-8b:free"],
                    api_key=SECRET) as fake:
        yield fake


@pytest.fixture
def platform_admin(db):
    user = get_user_model().objects.create_user("ops@tollgate.test", "ops@tollgate.test", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_provider"))
    return user


def add_provider(client, fake, **extra):
    body = {"name": "mine", "base_url": fake.base_url, "api_key": SECRET, **extra}
    response = client.post("/api/providers", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_admin_adds_own_provider_key_is_write_only(world, client_for, fake_openai):
    body = add_provider(client_for(user=world.admin), fake_openai)
    assert body["provider_type"] == "openai_compatible"  # detected from the loopback URL
    assert body["scope"] == "tenant" and body["owner"] == "acme"
    assert body["api_key_hint"] == "sk-…0042"
    text = json.dumps(body)
    assert SECRET not in text
    listed = client_for(user=world.viewer).get("/api/providers").content.decode()
    assert SECRET not in listed and "mine" in listed
    event = AuditEvent.objects.get(action="provider.create")
    assert SECRET not in json.dumps(event.after) and event.after["api_key"] == "sk-…0042"


def test_sync_adds_then_is_idempotent_then_updates_and_marks_stale(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai)["id"]
    first = client.post(f"/api/providers/{provider_id}/sync").json()
    assert (first["added"], first["updated"], first["stale"], first["sync_status"]) == (3, 0, 0, "ok")
    assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {SECRET}"

    second = client.post(f"/api/providers/{provider_id}/sync").json()
    assert (second["added"], second["updated"], second["stale"], second["unchanged"]) == (0, 0, 0, 3)

    fake_openai.models = ["gpt-4o-mini", "gpt-4.1"]
    third = client.post(f"/api/providers/{provider_id}/sync").json()
    assert (third["added"], third["stale"]) == (1, 2)
    rows = {m.model_id: m for m in ProviderModel.objects.filter(provider_id=provider_id)}
    assert rows["text-embedding-3-small"].stale and not rows["text-embedding-3-small"].enabled
    assert rows["text-embedding-3-small"].mode == "embedding"


def test_capabilities_and_catalog_prices_from_names(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai, provider_type="openai")["id"]
    client.post(f"/api/providers/{provider_id}/sync")
    models = {m["model_id"]: m for m in client.get(f"/api/providers/{provider_id}/models").json()["results"]}
    mini = models["gpt-4o-mini"]
    assert mini["supports_tools"] and mini["supports_vision"] and mini["mode"] == "chat"
    assert mini["prices"]["source"] == "catalog" and Decimal(mini["prices"]["input"]) > 0
    odd = models["meta-llama/llama-3.1-8b:free"]
    assert odd["prices"] == {"input": None, "output": None, "cached_input": None, "cache_write": None,
                             "source": "unknown", "known": False}


def test_sync_failure_is_recorded_in_words(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai, api_key="sk-wrong-key-123456")["id"]
    response = client.post(f"/api/providers/{provider_id}/sync")
    assert response.status_code == 502
    assert "rejected the API key" in response.json()["error"]["message"]
    provider = Provider.objects.get(pk=provider_id)
    assert provider.sync_status == "error" and "rejected the API key" in provider.last_sync_error


@pytest.mark.parametrize("fault, opts, words", [
    ("status", {"status": 500}, "answered 500"),
    ("status", {"status": 404}, "Is the base URL right"),
    ("not_json", {}, "not JSON"),
    ("malformed", {}, "JSON"),
])
def test_sync_upstream_faults_say_what_happened(world, client_for, fake_openai, fault, opts, words):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai)["id"]
    fake_openai.set_fault(fault, **opts)
    response = client.post(f"/api/providers/{provider_id}/sync")
    assert response.status_code == 502
    assert words in response.json()["error"]["message"]
    assert Provider.objects.get(pk=provider_id).sync_status == "error"


def test_huge_catalog_answer_is_an_error_not_a_crash(world, client_for, fake_openai, settings):
    settings.PROVIDER_MAX_RESPONSE_BYTES = 100_000
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai)["id"]
    fake_openai.set_fault("huge", size=1_000_000)
    response = client.post(f"/api/providers/{provider_id}/sync")
    assert response.status_code == 502
    assert "the limit is 100,000 bytes" in response.json()["error"]["message"]


def test_anthropic_catalog_is_paged(world, client_for):
    ids = [f"claude-test-{i:03}" for i in range(25)]
    with FakeAnthropic(models=ids, api_key=SECRET) as fake:
        client = client_for(key=world.admin_key)
        provider_id = add_provider(client, fake, provider_type="anthropic")["id"]
        result = client.post(f"/api/providers/{provider_id}/sync").json()
        assert result["added"] == 25
        sent = fake.requests_to("/v1/models")
        assert sent[0].headers["x-api-key"] == SECRET and sent[0].headers["anthropic-version"] == "2023-06-01"


def test_anthropic_paging_follows_last_id(world, client_for, monkeypatch):
    monkeypatch.setattr("providers.fetchers.anthropic.PAGE_SIZE", 10)
    with FakeAnthropic(models=[f"claude-x-{i:02}" for i in range(25)], api_key=SECRET) as fake:
        client = client_for(key=world.admin_key)
        provider_id = add_provider(client, fake, provider_type="anthropic")["id"]
        assert client.post(f"/api/providers/{provider_id}/sync").json()["added"] == 25
        assert len(fake.requests_to("/v1/models")) == 3


def test_ollama_tags_sync_as_free_local_models(world, client_for):
    with FakeOllama(models=["llama3:70b", "phi3:latest", "nomic-embed-text:latest"]) as fake:
        client = client_for(key=world.admin_key)
        body = add_provider(client, fake, name="ollama", api_key="", provider_type="ollama")
        client.post(f"/api/providers/{body['id']}/sync")
        models = {m.model_id: m for m in ProviderModel.objects.filter(provider_id=body["id"])}
        assert set(models) == {"llama3:70b", "phi3:latest", "nomic-embed-text:latest"}
        assert models["nomic-embed-text:latest"].mode == "embedding"
        assert models["llama3:70b"].price_source == "local" and models["llama3:70b"].input_price == 0


def test_openrouter_prices_capabilities_and_attribution_headers(world, client_for, settings):
    settings.OPENROUTER_SITE_URL = "https://tollgate.example.com"
    settings.OPENROUTER_APP_NAME = "Tollgate Test"
    catalog = [
        {"id": "meta-llama/llama-3.1-8b-instruct", "pricing": {"prompt": "0.00000002", "completion": "0.00000005"},
         "context_length": 131072, "supported_parameters": ["tools", "temperature"],
         "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]}},
        {"id": "openai/gpt-4o",
         "pricing": {"prompt": "0.0000025", "completion": "0.00001", "input_cache_read": "0.00000125"},
         "context_length": 128000, "supported_parameters": ["temperature"],
         "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image"],
                          "output_modalities": ["text"]}},
        {"id": "anthropic/claude-sonnet-4.5", "pricing": {"prompt": "0.000003", "completion": "0.000015",
                                                         "input_cache_read": "0.0000003",
                                                         "input_cache_write": "0.00000375"}},
        {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}, "context_length": 2000000},
    ]
    with FakeOpenRouter(models=catalog, api_key=SECRET) as fake:
        client = client_for(key=world.admin_key)
        body = add_provider(client, fake, name="openrouter", provider_type="openrouter")
        client.post(f"/api/providers/{body['id']}/sync")
        headers = fake.requests_to("/api/v1/models")[-1].headers
        assert headers["http-referer"] == "https://tollgate.example.com" and headers["x-title"] == "Tollgate Test"
    rows = {m.model_id: m for m in ProviderModel.objects.filter(provider_id=body["id"])}
    llama = rows["meta-llama/llama-3.1-8b-instruct"]
    assert (llama.input_price, llama.output_price) == (Decimal("0.02"), Decimal("0.05"))
    assert llama.supports_tools and not llama.supports_vision and llama.context_length == 131072
    gpt = rows["openai/gpt-4o"]
    assert gpt.supports_vision and not gpt.supports_tools
    assert (gpt.input_price, gpt.cached_input_price, gpt.price_source) == (Decimal("2.5"), Decimal("1.25"), "synced")
    assert gpt.cache_write_price is None  # none reported: cache writes cost the input price
    claude = rows["anthropic/claude-sonnet-4.5"]
    assert (claude.cached_input_price, claude.cache_write_price) == (Decimal("0.3"), Decimal("3.75"))
    auto = rows["openrouter/auto"]
    assert auto.input_price is None and auto.price_source == "unknown"


def test_manual_price_wins_and_survives_sync(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai, provider_type="openai")["id"]
    client.post(f"/api/providers/{provider_id}/sync")
    url = f"/api/providers/{provider_id}/models/gpt-4o-mini/price"
    response = client.put(url, {"input": "0.5", "output": "1.5", "cached_input": None, "cache_write": "0.625"},
                          format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["prices"]["source"] == "manual"
    assert response.json()["prices"]["cache_write"] == "0.625000000000"
    bad = client.put(url, {"input": "0.5", "output": "1.5", "cache_write": "-1"}, format="json")
    assert bad.status_code == 400 and "cache_write" in bad.json()["error"]["fields"]
    client.post(f"/api/providers/{provider_id}/sync")
    row = ProviderModel.objects.get(provider_id=provider_id, model_id="gpt-4o-mini")
    assert (row.input_price, row.output_price, row.price_source) == (Decimal("0.5"), Decimal("1.5"), "manual")
    # Dropping it lets the next sync bring the catalog price back.
    client.put(url, {"input": None, "output": None}, format="json")
    client.post(f"/api/providers/{provider_id}/sync")
    row.refresh_from_db()
    assert row.price_source == "catalog" and row.input_price != Decimal("0.5")


def test_model_ids_with_slashes_and_colons_route(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai)["id"]
    client.post(f"/api/providers/{provider_id}/sync")
    url = f"/api/providers/{provider_id}/models/meta-llama/llama-3.1-8b:free/enable"
    response = client.put(url, {"enabled": False}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["model_id"] == "meta-llama/llama-3.1-8b:free"
    assert response.json()["enabled"] is False
    assert client.put(f"/api/providers/{provider_id}/models/nope/x:y/enable", {"enabled": True},
                      format="json").status_code == 404
    assert client.put(url, {"enabled": "no"}, format="json").status_code == 400


def test_platform_models_are_chosen_per_tenant(world, client_for, fake_openai, platform_admin):
    staff = client_for(user=platform_admin)
    platform = staff.post("/api/providers", {"name": "shared", "base_url": fake_openai.base_url,
                                             "api_key": SECRET}, format="json")
    assert platform.status_code == 201 and platform.json()["scope"] == "platform"
    pid = platform.json()["id"]
    assert staff.post(f"/api/providers/{pid}/sync").status_code == 200

    acme = client_for(key=world.admin_key)
    assert acme.get("/api/providers/available/models").json()["count"] == 0
    enable = acme.put(f"/api/providers/{pid}/models/gpt-4o-mini/enable", {"enabled": True}, format="json")
    assert enable.status_code == 200 and enable.json()["tenant_enabled"] is True
    available = acme.get("/api/providers/available/models").json()["results"]
    assert [m["id"] for m in available] == ["shared:gpt-4o-mini"]
    assert TenantModel.objects.filter(tenant=world.tenant).count() == 1
    # The other tenant has chosen nothing, so it sees nothing available.
    assert client_for(key=world.other_admin_key).get("/api/providers/available/models").json()["count"] == 0
    # Tenants read platform providers but cannot change or sync them.
    assert acme.get(f"/api/providers/{pid}").status_code == 200
    assert acme.put(f"/api/providers/{pid}", {"priority": 5}, format="json").status_code == 403
    assert acme.post(f"/api/providers/{pid}/sync").status_code == 403
    assert acme.delete(f"/api/providers/{pid}").status_code == 403


def test_outsider_gets_404_on_every_provider_endpoint(world, client_for, fake_openai):
    provider_id = add_provider(client_for(key=world.admin_key), fake_openai)["id"]
    client_for(key=world.admin_key).post(f"/api/providers/{provider_id}/sync")
    for outsider in (client_for(key=world.other_admin_key), client_for(user=world.other_owner)):
        assert outsider.get(f"/api/providers/{provider_id}").status_code == 404
        assert outsider.put(f"/api/providers/{provider_id}", {"priority": 1}, format="json").status_code == 404
        assert outsider.delete(f"/api/providers/{provider_id}").status_code == 404
        assert outsider.post(f"/api/providers/{provider_id}/sync").status_code == 404
        assert outsider.get(f"/api/providers/{provider_id}/models").status_code == 404
        assert outsider.put(f"/api/providers/{provider_id}/models/gpt-4o-mini/enable", {"enabled": True},
                            format="json").status_code == 404
        assert outsider.put(f"/api/providers/{provider_id}/models/gpt-4o-mini/price",
                            {"input": "1", "output": "1"}, format="json").status_code == 404
        listed = outsider.get("/api/providers").json()
        assert provider_id not in [p["id"] for p in listed["results"]]
    assert Provider.objects.filter(pk=provider_id).exists()


def test_viewer_reads_but_cannot_change(world, client_for, fake_openai):
    provider_id = add_provider(client_for(key=world.admin_key), fake_openai)["id"]
    viewer = client_for(user=world.viewer)
    assert viewer.get(f"/api/providers/{provider_id}").status_code == 200
    created = viewer.post("/api/providers", {"name": "x", "base_url": fake_openai.base_url}, format="json")
    assert created.status_code == 403
    assert viewer.post(f"/api/providers/{provider_id}/sync").status_code == 403
    assert viewer.put(f"/api/providers/{provider_id}", {"enabled": False}, format="json").status_code == 403
    assert viewer.post("/api/providers/sync-all").status_code == 403


def test_update_keeps_the_key_unless_one_is_sent(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai)["id"]
    client.put(f"/api/providers/{provider_id}", {"priority": 7, "display_name": "Mine"}, format="json")
    provider = Provider.objects.get(pk=provider_id)
    assert provider.api_key == SECRET and provider.priority == 7
    client.put(f"/api/providers/{provider_id}", {"api_key": "sk-new-key-00000099"}, format="json")
    assert Provider.objects.get(pk=provider_id).api_key == "sk-new-key-00000099"
    event = AuditEvent.objects.filter(action="provider.update").order_by("pk").last()
    assert "sk-new-key" not in json.dumps(event.after) and event.after["api_key"] == "sk-…0099"


def test_duplicate_name_and_bad_input_are_400_or_409(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    add_provider(client, fake_openai)
    again = client.post("/api/providers", {"name": "mine", "base_url": fake_openai.base_url}, format="json")
    assert again.status_code == 409 and "already has a provider named 'mine'" in again.json()["error"]["message"]
    for body, field in [
        ({"name": "Bad:Name", "base_url": fake_openai.base_url}, "name"),
        ({"name": "x", "base_url": "ftp://example.com"}, "base_url"),
        ({"name": "x", "provider_type": "openai_compatible"}, "base_url"),
        ({"name": "x", "base_url": fake_openai.base_url, "timeout_seconds": "10"}, "timeout_seconds"),
        ({"name": "x", "base_url": fake_openai.base_url, "extra_headers": {"Host": "evil"}}, "extra_headers.Host"),
        ({"name": "x", "base_url": fake_openai.base_url, "provider_type": "cohere"}, "provider_type"),
        ({"name": "x", "base_url": fake_openai.base_url, "colour": 1}, "colour"),
    ]:
        response = client.post("/api/providers", body, format="json")
        assert response.status_code == 400, (body, response.json())
        assert field in response.json()["error"].get("fields", {}) or field in response.json()["error"]["message"]
    # The same name is fine in another tenant.
    other = client_for(key=world.other_admin_key).post(
        "/api/providers", {"name": "mine", "base_url": fake_openai.base_url}, format="json")
    assert other.status_code == 201


def test_metadata_urls_are_refused(world, client_for):
    client = client_for(key=world.admin_key)
    for url in ("http://169.254.169.254/latest", "http://[fd00:ec2::254]/v1"):
        response = client.post("/api/providers", {"name": "meta", "base_url": url}, format="json")
        assert response.status_code == 400, url
        test = client.post("/api/providers/test", {"base_url": url}, format="json")
        assert test.status_code == 400, url
    assert not Provider.objects.filter(name="meta").exists()


@pytest.mark.parametrize("url", ["[::1", "http://[::1", "http://[zz]", "http://[::1]x:80/v1"])
def test_malformed_urls_are_a_400_naming_base_url(world, client_for, url):
    """urlsplit raises ValueError on these: the connection test and the provider form answered 500."""
    client = client_for(key=world.admin_key)
    provider = client.post("/api/providers", {"name": "bad", "base_url": url}, format="json")
    test = client.post("/api/providers/test", {"base_url": url}, format="json")
    for response in (provider, test):
        assert response.status_code == 400, response.content[:300]
        assert list(response.json()["error"]["fields"]) == ["base_url"]
    patched = client.patch(f"/api/providers/{add_mock(client)}", {"base_url": url, "provider_type": "openai"},
                           format="json")
    assert patched.status_code == 400 and list(patched.json()["error"]["fields"]) == ["base_url"]


def add_mock(client) -> int:
    response = client.post("/api/providers", {"name": "mocked", "provider_type": "mock"}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_private_urls_need_the_setting(world, client_for, fake_openai, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    client = client_for(key=world.admin_key)
    response = client.post("/api/providers", {"name": "local", "base_url": fake_openai.base_url}, format="json")
    assert response.status_code == 400
    assert "ALLOW_PRIVATE_PROVIDER_URLS" in response.json()["error"]["message"]


def test_connection_test_reports_without_saving(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    ok = client.post("/api/providers/test", {"base_url": fake_openai.base_url, "api_key": SECRET}, format="json").json()
    assert ok["reachable"] and ok["model_count"] == 3 and ok["detected_type"] == "openai_compatible"
    assert ok["latency_ms"] >= 0 and ok["error"] is None
    bad_key = client.post("/api/providers/test", {"base_url": fake_openai.base_url, "api_key": "sk-nope-000000"},
                          format="json").json()
    assert not bad_key["reachable"] and "rejected the API key" in bad_key["error"]
    fake_openai.set_fault("not_json")
    html = client.post("/api/providers/test", {"base_url": fake_openai.base_url, "api_key": SECRET},
                       format="json").json()
    assert not html["reachable"] and "not JSON" in html["error"]
    fake_openai.clear_faults()
    port = fake_openai.port
    fake_openai.stop()
    refused = client.post("/api/providers/test", {"base_url": f"http://127.0.0.1:{port}/v1"}, format="json").json()
    assert not refused["reachable"] and "refused" in refused["error"]
    assert not Provider.objects.exists()


def test_connection_test_timeout(world, client_for, fake_openai, monkeypatch):
    monkeypatch.setattr("providers.api.CONNECTION_TEST_TIMEOUT", 0.5)
    fake_openai.set_fault("slow", delay=2)
    report = client_for(key=world.admin_key).post(
        "/api/providers/test", {"base_url": fake_openai.base_url, "api_key": SECRET}, format="json").json()
    assert not report["reachable"] and "timed out" in report["error"]


def test_sync_all_queues_own_enabled_providers(world, client_for, fake_openai, celery_eager):
    client = client_for(key=world.admin_key)
    first = add_provider(client, fake_openai)["id"]
    add_provider(client, fake_openai, name="off", enabled=False)
    provider_create(owner=world.other, data={"name": "theirs", "base_url": fake_openai.base_url})
    response = client.post("/api/providers/sync-all")
    assert response.status_code == 202 and response.json() == {"queued": [first]}
    assert Provider.objects.get(pk=first).sync_status == "ok"  # the eager worker ran it


# --- a saved key goes only to the URL it was saved with (issue #11, item 11) -------------------


def test_changing_the_base_url_needs_the_key_again(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    provider_id = add_provider(client, fake_openai)["id"]
    url = f"/api/providers/{provider_id}"
    with FakeOpenAI(models=["evil"]) as attacker:
        # When only the base URL changes
        response = client.put(url, {"base_url": attacker.base_url}, format="json")
        # Then it is refused, naming api_key and saying what to do
        assert response.status_code == 400, response.json()
        error = response.json()["error"]
        assert "api_key" in error["fields"]
        assert "send api_key again" in error["message"] and attacker.base_url in error["message"]
        provider = Provider.objects.get(pk=provider_id)
        assert (provider.base_url, provider.api_key) == (fake_openai.base_url, SECRET)
        client.post(f"/api/providers/{provider_id}/sync")
        assert attacker.requests == []
        # The same URL (as stored, or spelled differently) needs nothing
        same = client.put(url, {"base_url": fake_openai.base_url + "/", "priority": 2},
                          format="json")
        assert same.status_code == 200, same.json()
        # With the key sent again it is saved
        moved = client.put(url, {"base_url": attacker.base_url, "api_key": "sk-mine-0007"},
                           format="json")
        assert moved.status_code == 200 and moved.json()["base_url"] == attacker.base_url
        assert Provider.objects.get(pk=provider_id).api_key == "sk-mine-0007"


def test_a_new_base_url_needs_saved_headers_again_no_key_nothing(world, client_for, fake_openai):
    client = client_for(key=world.admin_key)
    keyless = add_provider(client, fake_openai, name="keyless", api_key="")["id"]
    with_headers = add_provider(client, fake_openai, name="headers",
                                extra_headers={"X-Org": "org-secret"})["id"]
    with FakeOpenAI() as other:
        moved = client.put(f"/api/providers/{keyless}", {"base_url": other.base_url}, format="json")
        assert moved.status_code == 200
        response = client.put(f"/api/providers/{with_headers}",
                              {"base_url": other.base_url, "api_key": SECRET}, format="json")
        assert response.status_code == 400 and "extra_headers" in response.json()["error"]["fields"]
        # Removing the secrets with the move is fine too: nothing saved goes to the new server
        response = client.put(f"/api/providers/{with_headers}",
                              {"base_url": other.base_url, "api_key": "", "extra_headers": {}},
                              format="json")
        assert response.status_code == 200, response.json()


# --- platform providers show tenants name, type and models only (issue #11, item 12) -----------


def test_tenants_see_platform_providers_without_url_key_hint_or_sync_error(
    world, client_for, fake_openai, platform_admin,
):
    staff = client_for(user=platform_admin)
    body = {"name": "shared", "base_url": fake_openai.base_url, "api_key": SECRET,
            "extra_headers": {"X-Platform-Org": "org"}}
    pid = staff.post("/api/providers", body, format="json").json()["id"]
    staff.post(f"/api/providers/{pid}/sync")
    Provider.objects.filter(pk=pid).update(sync_status="error",
                                           last_sync_error="upstream 10.1.2.3 said no")
    own = add_provider(client_for(key=world.admin_key), fake_openai)["id"]
    # Given a tenant admin key and a member's session
    for caller in (client_for(key=world.admin_key), client_for(user=world.viewer)):
        # When they list providers and read the platform one
        listed = caller.get("/api/providers").json()["results"]
        detail = caller.get(f"/api/providers/{pid}").json()
        platform = next(p for p in listed if p["id"] == pid)
        # Then it shows name, type and models; not its URL, key hint, headers or sync error
        for body in (platform, detail):
            text = json.dumps(body, ensure_ascii=False)
            assert fake_openai.base_url not in text and "sk-…" not in text
            assert "10.1.2.3" not in text and "X-Platform-Org" not in text
            assert (body["name"], body["provider_type"]) == ("shared", "openai_compatible")
            assert body["base_url"] is None and body["api_key_hint"] is None
            assert body["last_sync_error"] is None and body["extra_header_names"] == []
        assert [m["model_id"] for m in detail["models"]] == [
            "gpt-4o-mini", "meta-llama/llama-3.1-8b:free", "text-embedding-3-small"]
        mine = next(p for p in listed if p["id"] == own)  # their own provider: all but the key
        assert mine["base_url"] == fake_openai.base_url and mine["api_key_hint"] == "sk-…0042"
    # Staff see everything but secrets: in the platform scope, and support in a tenant's view
    for body in (staff.get(f"/api/providers/{pid}").json(),
                 client_for(user=world.support).get(f"/api/providers/{pid}?tenant=acme").json()):
        assert body["base_url"] == fake_openai.base_url and body["api_key_hint"] == "sk-…0042"
        assert body["last_sync_error"] == "upstream 10.1.2.3 said no"
        assert body["extra_header_names"] == ["X-Platform-Org"]
