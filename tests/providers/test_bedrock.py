"""The Amazon Bedrock provider type: its region (required, the default base URL's and the
signature's), its auth option and key format as the services, the REST API and the console
check them, the secret never coming back, its host detection and its prices."""

import json
from decimal import Decimal

import pytest

from core.errors import InvalidInput
from providers.base_urls import bedrock_control_url, detect_provider_type, normalize_base_url
from providers.models import Provider
from providers.options import options_clean
from providers.pricing import catalog_prices
from providers.services import provider_create, provider_update
from tenants.access import SYSTEM
from tests.fakes import FakeBedrock

KEY = "AKIAFAKEACCESSKEY123:fakeSecretAccessKey/with+slash0123456789"
SECRET = "fakeSecretAccessKey/with+slash0123456789"


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://bedrock-runtime.us-east-1.amazonaws.com",
                                 "bedrock-runtime-fips.us-gov-west-1.amazonaws.com/"])
def test_bedrock_runtime_hosts_are_detected(url):
    assert detect_provider_type(url) == "bedrock"


@pytest.mark.parametrize("url", ["https://bedrock-runtime.us-east-1.amazonaws.com.evil.example",
                                 "https://bedrock.us-east-1.amazonaws.com", "https://amazonaws.com"])
def test_lookalike_hosts_are_not_bedrock(url):
    assert detect_provider_type(url) != "bedrock"


def test_the_base_url_defaults_to_the_regions_runtime_and_must_agree_with_the_region():
    assert normalize_base_url("", "bedrock", region="eu-central-1") == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    with pytest.raises(InvalidInput) as caught:
        normalize_base_url("", "bedrock")
    assert caught.value.field == "options" and "options.region is required" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        normalize_base_url("https://bedrock-runtime.us-west-2.amazonaws.com", "bedrock", region="us-east-1")
    assert caught.value.field == "base_url" and "us-west-2" in caught.value.message
    assert normalize_base_url("https://bedrock-proxy.internal.example/", "bedrock", region="us-east-1") == (
        "https://bedrock-proxy.internal.example")


def test_the_catalog_is_asked_of_the_control_plane_beside_the_runtime():
    assert bedrock_control_url("https://bedrock-runtime.eu-west-1.amazonaws.com") == (
        "https://bedrock.eu-west-1.amazonaws.com")
    assert bedrock_control_url("https://bedrock-runtime-fips.us-east-1.amazonaws.com") == (
        "https://bedrock-fips.us-east-1.amazonaws.com")
    assert bedrock_control_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


# --- options ------------------------------------------------------------------------------------


def test_options_take_the_region_and_default_to_sigv4():
    assert options_clean("bedrock", {"region": "us-east-1"}) == {"region": "us-east-1", "auth": "sigv4"}
    assert options_clean("bedrock", {"region": "ap-southeast-2", "auth": "bearer"}) == {
        "region": "ap-southeast-2", "auth": "bearer"}


@pytest.mark.parametrize("options, words", [
    ({}, "options.region is required for an Amazon Bedrock provider"),
    ({"region": "US East"}, "options.region must be an AWS region such as 'us-east-1'"),
    ({"region": "evil.example/x#"}, "options.region must be an AWS region"),
    ({"region": "us-east-1", "auth": "iam"}, "options.auth must be 'sigv4'"),
    ({"region": "us-east-1", "deployments": {}}, "Unknown option 'deployments' for provider type 'bedrock'"),
])
def test_bad_options_are_refused_with_what_to_fix(options, words):
    with pytest.raises(InvalidInput) as caught:
        options_clean("bedrock", options)
    assert words in caught.value.message and caught.value.field == "options"


GUARDRAIL = {"guardrail_identifier": "abcd1234efgh", "guardrail_version": "2"}


def test_a_guardrail_is_an_id_or_arn_with_a_version_and_an_optional_trace():
    assert options_clean("bedrock", {"region": "us-east-1", **GUARDRAIL}) == {
        "region": "us-east-1", "auth": "sigv4", **GUARDRAIL}
    arn = "arn:aws:bedrock:us-east-1:123456789012:guardrail/abcd1234efgh"
    assert options_clean("bedrock", {"region": "us-east-1", "guardrail_identifier": arn, "guardrail_version": "DRAFT",
                                     "guardrail_trace": "enabled_full"})["guardrail_identifier"] == arn
    assert options_clean("bedrock", {"region": "us-east-1", "guardrail_identifier": "abc",
                                     "guardrail_version": 3})["guardrail_version"] == "3"


@pytest.mark.parametrize("guardrail, words", [
    ({"guardrail_identifier": "abcd1234efgh"}, "options.guardrail_version must be the guardrail's version number"),
    ({"guardrail_version": "1"}, "options.guardrail_identifier must be a Bedrock guardrail's id"),
    ({"guardrail_identifier": "Not An Id", "guardrail_version": "1"}, "got 'Not An Id'"),
    ({**GUARDRAIL, "guardrail_version": "0"}, "or 'DRAFT'"),
    ({**GUARDRAIL, "guardrail_trace": "verbose"}, "options.guardrail_trace must be one of enabled, disabled, "
                                                  "enabled_full"),
    ({"guardrail_trace": "enabled"}, "to remove a guardrail, send all three as null"),
])
def test_bad_guardrails_are_refused_with_what_to_fix(guardrail, words):
    with pytest.raises(InvalidInput) as caught:
        options_clean("bedrock", {"region": "us-east-1", **guardrail})
    assert words in caught.value.message and caught.value.field == "options"


@pytest.mark.django_db
def test_rest_api_sets_and_removes_a_guardrail_for_admins_of_the_tenant_only(world, client_for):
    provider = provider_create(owner=world.tenant, data={
        "name": "aws", "provider_type": "bedrock", "api_key": KEY, "options": {"region": "us-east-1"}})
    url = f"/api/providers/{provider.pk}"
    admin = client_for(user=world.admin)
    bad = admin.patch(url, {"options": {"guardrail_identifier": "abcd1234efgh"}}, format="json")
    assert bad.status_code == 400 and "options.guardrail_version" in json.dumps(bad.json())
    assert client_for(key=world.other_admin_key).patch(url, {"options": GUARDRAIL}, format="json").status_code == 404
    assert client_for(user=world.viewer).patch(url, {"options": GUARDRAIL}, format="json").status_code == 403
    provider.refresh_from_db()
    assert "guardrail_identifier" not in provider.options
    response = admin.patch(url, {"options": {**GUARDRAIL, "guardrail_trace": "enabled"}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["options"] == {"region": "us-east-1", "auth": "sigv4", **GUARDRAIL,
                                          "guardrail_trace": "enabled"}
    removed = admin.patch(url, {"options": dict.fromkeys((*GUARDRAIL, "guardrail_trace"))}, format="json")
    assert removed.status_code == 200 and removed.json()["options"] == {"region": "us-east-1", "auth": "sigv4"}


# --- services -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_fills_the_url_and_a_region_change_moves_it(world):
    provider = provider_create(owner=world.tenant, data={
        "name": "aws", "provider_type": "bedrock", "api_key": KEY, "options": {"region": "us-east-1"}})
    assert provider.base_url == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert provider.options == {"region": "us-east-1", "auth": "sigv4"}
    with pytest.raises(InvalidInput) as caught:  # the saved key would go to another endpoint: send it again
        provider_update(provider=provider, data={"options": {"region": "eu-west-1"}}, actor=SYSTEM)
    assert caught.value.field == "api_key" and "bedrock-runtime.eu-west-1" in caught.value.message
    provider = provider_update(provider=provider, data={"options": {"region": "eu-west-1"}, "api_key": KEY},
                               actor=SYSTEM)
    assert provider.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert provider.options == {"region": "eu-west-1", "auth": "sigv4"}


@pytest.mark.django_db
def test_a_sigv4_key_must_be_an_access_key_pair_and_a_bearer_key_need_not(world):
    data = {"name": "aws", "provider_type": "bedrock", "options": {"region": "us-east-1"}}
    with pytest.raises(InvalidInput) as caught:
        provider_create(owner=world.tenant, data={**data, "api_key": "ABSKQmVkcm9ja0FQSUtleS1mYWtl"})
    assert caught.value.field == "api_key" and 'options.auth to "bearer"' in caught.value.message
    provider = provider_create(owner=world.tenant, data={
        **data, "api_key": "ABSKQmVkcm9ja0FQSUtleS1mYWtl", "options": {"region": "us-east-1", "auth": "bearer"}})
    assert provider.options["auth"] == "bearer"


# --- the REST API and the console ---------------------------------------------------------------


@pytest.mark.django_db
def test_rest_api_without_a_region_is_a_400_that_says_what_to_send(world, client_for):
    client = client_for(user=world.admin)
    response = client.post("/api/providers", {"name": "aws", "provider_type": "bedrock", "api_key": KEY},
                           format="json")
    assert response.status_code == 400, response.json()
    assert 'options.region is required' in json.dumps(response.json()) and "us-east-1" in json.dumps(response.json())
    response = client.post("/api/providers", {"name": "aws", "provider_type": "bedrock", "api_key": KEY,
                                              "options": {"region": "mars-1"}}, format="json")
    assert response.status_code == 400 and "options.region must be an AWS region" in json.dumps(response.json())
    assert not Provider.objects.filter(name="aws").exists()


@pytest.mark.django_db
def test_rest_api_creates_a_bedrock_provider_and_never_returns_the_secret(world, client_for):
    client = client_for(user=world.admin)
    response = client.post("/api/providers", {"name": "aws", "provider_type": "bedrock", "api_key": KEY,
                                              "options": {"region": "us-west-2"}}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["base_url"] == "https://bedrock-runtime.us-west-2.amazonaws.com"
    assert body["options"] == {"region": "us-west-2", "auth": "sigv4"}
    assert body["api_key_hint"] == "AKI…6789"
    listed = client.get("/api/providers").content.decode() + client.get(f"/api/providers/{body['id']}").content.decode()
    everything = json.dumps(body) + listed
    assert SECRET not in everything and KEY not in everything and "fakeSecret" not in everything
    assert Provider.objects.get(pk=body["id"]).api_key == KEY  # kept, encrypted at rest


@pytest.mark.django_db
def test_console_form_shows_the_missing_region(world, client_for):
    client = client_for(user=world.owner)
    url = f"/app/{world.tenant.slug}/providers/new/"
    form = {"name": "aws", "provider_type": "bedrock", "base_url": "", "api_key": KEY, "priority": 0,
            "timeout_seconds": 60, "max_retries": 2, "sync_interval_minutes": 1440}
    response = client.post(url, {**form, "options": ""})
    assert response.status_code == 400 and "options.region is required" in response.content.decode()
    response = client.post(url, {**form, "options": '{"region": "us-east-1"}'})
    assert response.status_code == 302
    assert Provider.objects.get(name="aws").base_url == "https://bedrock-runtime.us-east-1.amazonaws.com"


# --- prices -------------------------------------------------------------------------------------


def test_genai_prices_knows_bedrock_ids_and_inference_profiles():
    provider = Provider(name="aws", provider_type="bedrock")
    haiku = catalog_prices(provider=provider, model_id="anthropic.claude-3-5-haiku-20241022-v1:0")
    assert (haiku.input, haiku.output, haiku.cached_input, haiku.cache_write) == (
        Decimal("0.8"), Decimal("4"), Decimal("0.08"), Decimal("1"))
    assert catalog_prices(provider=provider, model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0") == haiku
    assert catalog_prices(provider=provider, model_id="amazon.nova-pro-v1:0").input == Decimal("0.8")


@pytest.mark.django_db
def test_a_connection_test_signs_its_catalog_request(world, client_for, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    client = client_for(user=world.admin)
    with FakeBedrock(api_key=KEY, region="eu-west-1") as fake:
        body = {"base_url": fake.base_url, "provider_type": "bedrock", "api_key": KEY,
                "options": {"region": "eu-west-1"}}
        response = client.post("/api/providers/test", body, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["reachable"] and response.json()["model_count"] == 2 and fake.verified == 2
        wrong = client.post("/api/providers/test", {**body, "options": {"region": "us-east-1"}}, format="json")
    assert not wrong.json()["reachable"] and "eu-west-1/bedrock" in wrong.json()["error"]
    assert SECRET not in json.dumps(wrong.json())
