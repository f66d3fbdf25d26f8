"""The Azure OpenAI provider type: its resource URL, its options (api_version, auth,
deployments) as the services, the REST API and the console check them, its catalog (the
deployments, priced as OpenAI prices the deployed model) and its adapter's requests."""

import json
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth import get_user_model

from core.errors import InvalidInput
from providers.adapters import azure
from providers.adapters.types import Deployment
from providers.base_urls import detect_provider_type, normalize_base_url
from providers.fetchers.base import UpstreamError
from providers.models import ModelMode, PriceSource, Provider, ProviderModel
from providers.options import AZURE_API_VERSION, options_clean
from providers.pricing import catalog_prices
from providers.services import provider_create, provider_update
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tests.fakes import FakeAzure

SECRET = "azure-key-secret-0042"
DEPLOYMENTS = {"my-gpt4o": "gpt-4o", "my-embed": "text-embedding-3-small"}


# --- the resource URL ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://contoso.openai.azure.com", "https://Contoso.OpenAI.Azure.com/", "contoso.openai.azure.com/openai/v1",
    "https://contoso-eu.cognitiveservices.azure.com/openai/deployments/my-gpt4o/chat/completions",
])
def test_azure_hosts_are_detected(url):
    assert detect_provider_type(url) == "azure"


@pytest.mark.parametrize("url", ["https://openai.azure.com.evil.example", "https://azure.com", "https://api.openai.com/v1"])
def test_lookalike_hosts_are_not_azure(url):
    assert detect_provider_type(url) != "azure"


@pytest.mark.parametrize("url, expected", [
    ("https://contoso.openai.azure.com/", "https://contoso.openai.azure.com"),
    ("https://Contoso.openai.azure.com/openai", "https://contoso.openai.azure.com"),
    ("https://contoso.openai.azure.com/openai/v1/", "https://contoso.openai.azure.com"),
    ("https://contoso.openai.azure.com/openai/deployments/my-gpt4o/chat/completions",
     "https://contoso.openai.azure.com"),
    ("https://gateway.example.com/azure", "https://gateway.example.com/azure"),  # an APIM front: kept
])
def test_normalisation_keeps_the_resource_root(url, expected):
    assert normalize_base_url(url, "azure") == expected


def test_an_azure_provider_needs_its_resource_url():
    with pytest.raises(InvalidInput) as caught:
        normalize_base_url("", "azure")
    assert caught.value.field == "base_url" and "openai.azure.com" in caught.value.message


# --- options ------------------------------------------------------------------------------------------


def test_options_get_the_defaults():
    assert options_clean("azure", {}) == {"api_version": AZURE_API_VERSION, "auth": "api-key", "deployments": {}}
    assert AZURE_API_VERSION == "2024-10-21"
    cleaned = options_clean("azure", {"api_version": "2025-04-01-preview", "auth": "entra",
                                      "deployments": DEPLOYMENTS})
    assert cleaned == {"api_version": "2025-04-01-preview", "auth": "entra", "deployments": DEPLOYMENTS}


@pytest.mark.parametrize("options, words", [
    ({"region": "eu"}, "Unknown option 'region' for provider type 'azure'; allowed: api_version, auth, authority, "
                       "client_id, deployments, tenant_id"),
    ({"api_version": "latest"}, "options.api_version must be an Azure OpenAI api-version"),
    ({"api_version": 20241021}, "options.api_version must be"),
    ({"auth": "oauth"}, "options.auth must be 'api-key'"),
    ({"deployments": ["my-gpt4o"]}, "options.deployments must be an object of deployment name to model"),
    ({"deployments": {"my gpt": "gpt-4o"}}, "'my gpt' is not an Azure deployment name"),
    ({"deployments": {"my-gpt4o": 4}}, "options.deployments['my-gpt4o'] must be the deployed model's name"),
    ("api_version=2024-10-21", "options must be a JSON object"),
])
def test_bad_options_are_refused_with_what_to_fix(options, words):
    with pytest.raises(InvalidInput) as caught:
        options_clean("azure", options)
    assert caught.value.field == "options" and words in caught.value.message


def test_other_types_take_no_options():
    assert options_clean("openai", None) == {}
    with pytest.raises(InvalidInput, match="Unknown option 'api_version' for provider type 'openai'; allowed: none"):
        options_clean("openai", {"api_version": "2024-10-21"})


@pytest.mark.django_db
def test_rest_api_refuses_bad_options_with_400(world, client_for):
    client = client_for(user=world.admin)
    body = {"name": "az", "base_url": "https://contoso.openai.azure.com", "api_key": SECRET}
    for options, words in [({"deployment": {}}, "Unknown option 'deployment'"),
                           ({"api_version": "v2"}, "options.api_version must be"),
                           ({"deployments": "my-gpt4o=gpt-4o"}, "options.deployments must be an object")]:
        response = client.post("/api/providers", {**body, "options": options}, format="json")
        assert response.status_code == 400, response.json()
        assert words in json.dumps(response.json())
    assert not Provider.objects.filter(name="az").exists()


@pytest.mark.django_db
def test_rest_api_creates_an_azure_provider_and_never_returns_the_key(world, client_for):
    client = client_for(user=world.admin)
    response = client.post("/api/providers", {
        "name": "az", "base_url": "https://contoso.openai.azure.com/openai/v1", "api_key": SECRET,
        "options": {"deployments": DEPLOYMENTS},
    }, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["provider_type"] == "azure" and body["base_url"] == "https://contoso.openai.azure.com"
    assert body["options"] == {"api_version": "2024-10-21", "auth": "api-key", "deployments": DEPLOYMENTS}
    listed = client.get("/api/providers").content.decode() + client.get(f"/api/providers/{body['id']}").content.decode()
    assert SECRET not in json.dumps(body) and SECRET not in listed
    # A change of the options alone keeps the rest; bad ones are refused.
    changed = client.patch(f"/api/providers/{body['id']}", {"options": {"auth": "entra"}}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["options"] == {"api_version": "2024-10-21", "auth": "entra", "deployments": DEPLOYMENTS}
    refused = client.patch(f"/api/providers/{body['id']}", {"options": {"auth": "x"}}, format="json")
    assert refused.status_code == 400 and "options.auth" in json.dumps(refused.json())


@pytest.mark.django_db
def test_console_form_shows_an_options_error(world, client_for):
    client = client_for(user=world.owner)
    url = f"/app/{world.tenant.slug}/providers/new/"
    response = client.post(url, {
        "name": "az", "provider_type": "azure", "base_url": "https://contoso.openai.azure.com",
        "options": '{"deployments": ["my-gpt4o"]}', "priority": 0, "timeout_seconds": 60, "max_retries": 2,
        "sync_interval_minutes": 1440,
    })
    assert response.status_code == 400
    assert "options.deployments must be an object" in response.content.decode()
    response = client.post(url, {
        "name": "az", "provider_type": "azure", "base_url": "https://contoso.openai.azure.com",
        "options": "{not json", "priority": 0, "timeout_seconds": 60, "max_retries": 2, "sync_interval_minutes": 1440,
    })
    assert response.status_code == 400 and "Options must be JSON" in response.content.decode()
    response = client.post(url, {
        "name": "az", "provider_type": "azure", "base_url": "https://contoso.openai.azure.com", "api_key": SECRET,
        "options": json.dumps({"deployments": DEPLOYMENTS}), "priority": 0, "timeout_seconds": 60, "max_retries": 2,
        "sync_interval_minutes": 1440,
    })
    assert response.status_code == 302
    assert Provider.objects.get(name="az").options["deployments"] == DEPLOYMENTS


# --- catalog and prices -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_lists_the_deployments_priced_as_the_deployed_model(world):
    with FakeAzure(api_key=SECRET) as fake:
        provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "az", "provider_type": "azure", "base_url": fake.url, "api_key": SECRET,
            "options": {"deployments": DEPLOYMENTS},
        })
        result = provider_sync(provider=provider)
        checked = fake.requests_to("/openai/v1/models")
        assert len(checked) == 1 and checked[0].headers["api-key"] == SECRET  # the credential is tried
        assert (result.added, result.stale) == (2, 0)
        chat = ProviderModel.objects.get(provider=provider, model_id="my-gpt4o")
        embed = ProviderModel.objects.get(provider=provider, model_id="my-embed")
        openai = Provider(provider_type="openai", base_url="https://api.openai.com/v1")
        gpt4o = catalog_prices(provider=openai, model_id="gpt-4o")
        assert gpt4o is not None and gpt4o.input == Decimal("2.5")
        assert (chat.input_price, chat.output_price, chat.cached_input_price) == (gpt4o.input, gpt4o.output,
                                                                                  gpt4o.cached_input)
        assert chat.price_source == PriceSource.CATALOG and chat.mode == ModelMode.CHAT and chat.supports_tools
        assert chat.display_name == "my-gpt4o (gpt-4o)"
        assert embed.mode == ModelMode.EMBEDDING
        assert embed.input_price == catalog_prices(provider=openai, model_id="text-embedding-3-small").input
        # A deployment removed from the options goes stale at the next sync.
        provider = provider_update(provider=provider, actor=SYSTEM,
                                   data={"options": {"deployments": {"my-gpt4o": "gpt-4o"}}})
        assert provider_sync(provider=provider).stale == 1
        assert ProviderModel.objects.get(provider=provider, model_id="my-embed").stale


@pytest.mark.django_db
def test_sync_with_a_wrong_key_fails_and_a_resource_without_v1_does_not(world):
    with FakeAzure(api_key="another-key") as fake:
        provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "az", "provider_type": "azure", "base_url": fake.url, "api_key": SECRET,
            "options": {"deployments": DEPLOYMENTS},
        })
        with pytest.raises(UpstreamError, match="rejected the API key"):
            provider_sync(provider=provider)
        provider.refresh_from_db()
        assert provider.sync_status == "error" and not ProviderModel.objects.filter(provider=provider).exists()
        fake.api_key = SECRET
        fake.set_fault("status", status=404, path="/openai/v1/models")
        assert provider_sync(provider=provider).added == 2


# --- the adapter's requests --------------------------------------------------------------------------------


def deployment(**kw) -> Deployment:
    values = dict(provider_id=1, provider_name="az", provider_type="azure", base_url="http://127.0.0.1:1",
                  api_key=SECRET, extra_headers=(), provider_model_id=1, model_id="my-gpt4o", timeout=5.0,
                  max_retries=0, input_price=Decimal(1), output_price=Decimal(2), cached_input_price=None,
                  options=(("api_version", "2024-10-21"), ("auth", "api-key")))
    return Deployment(**{**values, **kw})


def test_requests_use_the_deployment_url_api_version_and_api_key():
    up = azure.build_chat(deployment(), {"model": "x", "messages": []}, stream=True)
    assert up.url == "http://127.0.0.1:1/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    assert up.headers["api-key"] == SECRET and "Authorization" not in up.headers
    assert json.loads(up.body)["stream_options"] == {"include_usage": True}
    emb = azure.build_embeddings(deployment(model_id="my-embed"), {"input": "hi"})
    assert emb.url == "http://127.0.0.1:1/openai/deployments/my-embed/embeddings?api-version=2024-10-21"


def test_entra_auth_sends_a_bearer_token():
    up = azure.build_chat(deployment(options=(("auth", "entra"),)), {"messages": []}, stream=False)
    assert up.headers["Authorization"] == f"Bearer {SECRET}" and "api-key" not in up.headers
    assert up.url.endswith("?api-version=2024-10-21")  # the default when none is set


def test_content_filter_refusal_is_a_content_policy_failure_not_retried():
    with FakeAzure(api_key=SECRET) as fake:
        fake.set_fault("status", status=400, variant="content_filter")
        d = deployment(base_url=fake.url)
        up = azure.build_chat(d, {"messages": [{"role": "user", "content": "x"}]}, stream=False)
        resp = httpx.post(up.url, headers=up.headers, content=up.body)
        failure = azure.parse_error(d, resp.status_code, dict(resp.headers), resp.content)
    assert (failure.kind, failure.retryable, failure.status) == ("content_policy", False, 400)
    assert "content policy" in failure.message and "content management policy" in failure.message


def test_fake_refuses_a_missing_api_version_and_a_wrong_key():
    with FakeAzure(api_key=SECRET) as fake:
        url = f"{fake.url}/openai/deployments/my-gpt4o/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        missing = httpx.post(url, headers={"api-key": SECRET}, json=body)
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "MissingApiVersionParameter"
        wrong = httpx.post(url + "?api-version=2024-10-21", headers={"api-key": "nope"}, json=body)
        assert wrong.status_code == 401
        ok = httpx.post(url + "?api-version=2024-10-21", headers={"api-key": SECRET}, json=body).json()
        assert ok["model"] == "gpt-4o" and ok["prompt_filter_results"][0]["prompt_index"] == 0
        unknown = httpx.post(f"{fake.url}/openai/deployments/nope/chat/completions?api-version=2024-10-21",
                             headers={"api-key": SECRET}, json=body)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "DeploymentNotFound"


@pytest.mark.django_db
def test_staff_set_azure_options_in_the_admin(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@t.test", "pw"))
    form = {
        "name": "az", "display_name": "Azure", "provider_type": "azure",
        "base_url": "https://contoso.openai.azure.com/openai/v1", "api_key": SECRET, "priority": 0,
        "timeout_seconds": 30, "max_retries": 1, "sync_interval_minutes": 60, "enabled": "on",
        "options": json.dumps({"deployments": {"my gpt": "gpt-4o"}}),
    }
    refused = client.post("/admin/providers/provider/add/", form)
    assert refused.status_code == 200 and "is not an Azure deployment name" in refused.content.decode()
    form["options"] = json.dumps({"auth": "entra", "deployments": DEPLOYMENTS})
    response = client.post("/admin/providers/provider/add/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    provider = Provider.objects.get(name="az", owner=None)
    assert provider.base_url == "https://contoso.openai.azure.com" and provider.api_key == SECRET
    assert provider.options == {"api_version": "2024-10-21", "auth": "entra", "deployments": DEPLOYMENTS}


@pytest.mark.django_db
def test_connection_test_tries_the_key_and_lists_the_deployments(world, client_for):
    client = client_for(user=world.admin)
    with FakeAzure(api_key=SECRET) as fake:
        body = {"base_url": fake.url, "provider_type": "azure", "api_key": SECRET,
                "options": {"deployments": DEPLOYMENTS}}
        report = client.post("/api/providers/test", body, format="json").json()
        assert report["reachable"] and report["model_count"] == 2
        assert sorted(report["sample_models"]) == ["my-embed", "my-gpt4o"]
        assert fake.requests_to("/openai/v1/models")[-1].headers["api-key"] == SECRET
        wrong = client.post("/api/providers/test", {**body, "api_key": "nope"}, format="json").json()
        assert not wrong["reachable"] and "rejected the API key" in wrong["error"]
        bad = client.post("/api/providers/test", {**body, "options": {"auth": "cert"}}, format="json")
        assert bad.status_code == 400 and "options.auth" in json.dumps(bad.json())
