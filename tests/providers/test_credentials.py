"""Credentials that mint their own access tokens, outside the data plane: the options and keys
they take (saved through the services, the REST API and the console form), the token request and
its answer, and the catalog sync and connection test, which mint through the guarded httpx client
against loopback token endpoints (tests/fakes: FakeEntra, FakeGoogleOAuth)."""

import json
import logging
import threading

import jwt
import pytest

from core.errors import InvalidInput
from providers.adapters.credentials import (
    ENTRA_SCOPE,
    TOKENS,
    TokenError,
    fresh_for,
    token_answer,
    token_source,
)
from providers.fetchers.base import UpstreamError
from providers.options import options_clean
from providers.services import provider_create, provider_update
from providers.sync import provider_sync
from providers.tokens import provider_access_token
from tenants.access import SYSTEM
from tests.fakes import FakeAzure, FakeEntra, FakeGemini, FakeGoogleOAuth

DEPLOYMENTS = {"my-gpt4o": "gpt-4o"}
SECRET = "entra-client-secret-0123"


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    TOKENS.clear()
    yield
    TOKENS.clear()


def entra_options(entra: FakeEntra, **more) -> dict:
    return {"auth": "entra-client", "tenant_id": entra.tenant_id, "client_id": entra.client_id,
            "authority": entra.url, "deployments": DEPLOYMENTS, **more}


def add_entra_azure(tenant, fake, entra, *, api_key=SECRET, name="az"):
    return provider_create(owner=tenant, actor=SYSTEM, data={
        "name": name, "provider_type": "azure", "base_url": fake.url, "api_key": api_key,
        "options": entra_options(entra)})


# --- options and keys ------------------------------------------------------------------------------------


def test_entra_client_options_are_checked_and_cleaned():
    cleaned = options_clean("azure", {"auth": "entra-client", "tenant_id": " contoso.onmicrosoft.com ",
                                      "client_id": "00000000-aaaa-4bbb-8ccc-000000000001",
                                      "authority": "https://login.microsoftonline.us/"})
    assert cleaned == {"api_version": "2024-10-21", "auth": "entra-client", "tenant_id": "contoso.onmicrosoft.com",
                       "client_id": "00000000-aaaa-4bbb-8ccc-000000000001",
                       "authority": "https://login.microsoftonline.us", "deployments": {}}


@pytest.mark.parametrize("options, words", [
    ({"auth": "entra-client", "client_id": "app"}, "options.tenant_id is required"),
    ({"auth": "entra-client", "tenant_id": "t/../x", "client_id": "app"}, "options.tenant_id is required"),
    ({"auth": "entra-client", "tenant_id": "t"}, "options.client_id is required"),
    ({"auth": "entra-client", "tenant_id": "t", "client_id": "app", "authority": "ftp://login.example"},
     "options.authority must be an https URL"),
    ({"auth": "entra-client", "tenant_id": "t", "client_id": "app", "authority": "https://h/?x=1"},
     "options.authority must be an https URL"),
    ({"auth": "entra", "tenant_id": "t"}, "set options.auth to 'entra-client' with them"),
    ({"auth": "certificate"}, "'entra-client' (the key is a client secret"),
])
def test_bad_entra_options_say_what_to_fix(options, words):
    with pytest.raises(InvalidInput) as caught:
        options_clean("azure", options)
    assert caught.value.field == "options" and words in caught.value.message


@pytest.mark.django_db
def test_an_authority_at_a_metadata_address_is_refused(world):
    with pytest.raises(InvalidInput) as caught:
        provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "az", "provider_type": "azure", "base_url": "https://contoso.openai.azure.com", "api_key": SECRET,
            "options": {"auth": "entra-client", "tenant_id": "t", "client_id": "app",
                        "authority": "http://169.254.169.254"}})
    assert caught.value.field == "options" and "169.254.169.254" in caught.value.message


@pytest.mark.django_db
def test_a_new_authority_or_tenant_needs_the_secret_again(world):
    with FakeAzure() as fake, FakeEntra() as entra:
        provider = add_entra_azure(world.tenant, fake, entra)
        for change in ({"authority": "https://login.microsoftonline.us"}, {"tenant_id": "another-tenant"}):
            with pytest.raises(InvalidInput) as caught:
                provider_update(provider=provider, actor=SYSTEM, data={"options": change})
            assert caught.value.field == "api_key" and "send api_key again" in caught.value.message
        provider_update(provider=provider, actor=SYSTEM, data={"options": {"tenant_id": "another-tenant"},
                                                               "api_key": "the-other-secret"})
        provider.refresh_from_db()
        assert provider.options["tenant_id"] == "another-tenant" and provider.api_key == "the-other-secret"
        provider_update(provider=provider, actor=SYSTEM, data={"options": {"deployments": {"x": "gpt-4o"}}})


@pytest.mark.django_db
def test_switching_an_api_key_provider_to_entra_client_needs_the_secret(world):
    provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
        "name": "az", "provider_type": "azure", "base_url": "https://contoso.openai.azure.com",
        "api_key": "azure-resource-key", "options": {"deployments": DEPLOYMENTS}})
    with pytest.raises(InvalidInput, match="send api_key again"):
        provider_update(provider=provider, actor=SYSTEM, data={"options": {
            "auth": "entra-client", "tenant_id": "t", "client_id": "app"}})


def service_account_json(oauth: FakeGoogleOAuth, **changes) -> str:
    account = {**oauth.service_account(), **changes}
    return json.dumps({k: v for k, v in account.items() if v is not None}, indent=2)


@pytest.mark.django_db
@pytest.mark.parametrize("changes, words", [
    ({"private_key": None}, "has no private_key"),
    ({"client_email": None, "token_uri": ""}, "has no client_email, token_uri"),
    ({"type": "authorized_user"}, "type must be 'service_account'"),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n"},
     "private_key is not a PEM private key"),
    ({"token_uri": "oauth2.googleapis.com/token"}, "token_uri must be an https URL"),
])
def test_a_bad_service_account_key_is_a_400_naming_the_field(world, client_for, changes, words):
    with FakeGoogleOAuth() as oauth:
        key = service_account_json(oauth, **changes)
        response = client_for(user=world.admin).post("/api/providers", {
            "name": "vertex", "provider_type": "gemini", "api_key": key, "options": {
                "auth": "vertex", "project": "fake-project", "location": "us-central1"}}, format="json")
    assert response.status_code == 400, response.json()
    text = json.dumps(response.json())
    assert words in text and "api_key" in text
    assert "not-a-key" not in text and "MII" not in text  # the key itself is never quoted


@pytest.mark.django_db
def test_a_service_account_key_is_only_for_vertex(world, client_for):
    with FakeGoogleOAuth() as oauth:
        response = client_for(user=world.admin).post("/api/providers", {
            "name": "gem", "provider_type": "gemini", "api_key": service_account_json(oauth)}, format="json")
    assert response.status_code == 400 and "is for a Vertex AI provider" in json.dumps(response.json())


@pytest.mark.django_db
def test_the_api_shows_the_service_account_never_its_key(world, client_for):
    client = client_for(user=world.admin)
    with FakeGoogleOAuth() as oauth:
        key = service_account_json(oauth)
        created = client.post("/api/providers", {
            "name": "vertex", "provider_type": "gemini", "api_key": key, "options": {
                "auth": "vertex", "project": "fake-project", "location": "us-central1"}}, format="json")
        assert created.status_code == 201, created.json()
        pid = created.json()["id"]
        shown = client.get(f"/api/providers/{pid}").json()
        listed = client.get("/api/providers").content.decode()
        assert shown["api_key_hint"] == "service account tollgate@fake-project.iam.gserviceaccount.com"
        private = json.loads(key)["private_key"]
        for text in (json.dumps(created.json()), json.dumps(shown), listed):
            assert "PRIVATE KEY" not in text and private[40:80] not in text
        # the outsider sees nothing of it
        assert client_for(key=world.other_admin_key).get(f"/api/providers/{pid}").status_code == 404


# --- the token request and its answer --------------------------------------------------------------------


def test_entra_token_request_and_cache_key():
    options = {"auth": "entra-client", "tenant_id": "t1", "client_id": "app", "authority": "https://login.example"}
    source = token_source("azure", SECRET, options, "https://x.openai.azure.com")
    assert source.token_url == "https://login.example/t1/oauth2/v2.0/token"
    form = dict(pair.split("=", 1) for pair in source.request_body().decode().split("&"))
    assert form["grant_type"] == "client_credentials" and form["client_id"] == "app"
    assert form["client_secret"] == SECRET and "cognitiveservices.azure.com" in form["scope"]
    other = token_source("azure", "another-secret", options, "https://x.openai.azure.com")
    assert other.fingerprint != source.fingerprint and SECRET not in repr(source)
    assert token_source("azure", SECRET, {**options, "auth": "entra"}, "https://x") is None
    assert token_source("gemini", "ya29.static", {"auth": "vertex"}, "https://x/v1/projects/p") is None


def test_the_jwt_is_rs256_signed_by_the_service_account():
    with FakeGoogleOAuth() as oauth:
        account = oauth.service_account()
        source = token_source("gemini", json.dumps(account), {}, "https://x/v1/projects/p/locations/l")
        body = dict(pair.split("=", 1) for pair in source.request_body(now=1_800_000_000).decode().split("&"))
    assertion = body["assertion"]
    claims = jwt.decode(assertion, oauth.accounts[account["client_email"]], algorithms=["RS256"],
                        audience=account["token_uri"], options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iss": account["client_email"], "scope": "https://www.googleapis.com/auth/cloud-platform",
                      "aud": account["token_uri"], "iat": 1_800_000_000, "exp": 1_800_003_600}
    assert jwt.get_unverified_header(assertion)["kid"] == "0123abcd"


@pytest.mark.parametrize("status, body, kind, words", [
    (401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace"},
     "auth", "(401 invalid_client: AADSTS7000215: Invalid client secret provided.); check its client secret"),
    (200, {"token_type": "Bearer", "expires_in": 3599}, "bad_response", "its answer has no access_token"),
    (200, {"access_token": "t", "token_type": "mac"}, "bad_response", "not a Bearer one"),
    (200, {"access_token": "t", "expires_in": "soon"}, "bad_response", "expires_in is not a number"),
    (503, None, "server_error", "it answered 503 (upstream down)"),
    (429, {"error": "slow_down"}, "rate_limit", "it is rate limiting (slow_down)"),
])
def test_token_answers_that_give_no_token_say_why(status, body, kind, words):
    source = token_source("azure", SECRET, {"auth": "entra-client", "tenant_id": "t", "client_id": "c"}, "")
    with pytest.raises(TokenError) as caught:
        token_answer(source, provider="az", status=status, body=body, snippet="upstream down")
    assert caught.value.kind == kind and words in caught.value.message
    assert "Provider 'az'" in caught.value.message and "login.microsoftonline.com/t/oauth2/v2.0/token" in str(
        caught.value) and SECRET not in str(caught.value)


def test_tokens_are_replaced_early():
    assert fresh_for(3599) == 3299  # five minutes early
    assert fresh_for(120) == 60  # half the life of a short one
    source = token_source("azure", SECRET, {"auth": "entra-client", "tenant_id": "t", "client_id": "c"}, "")
    assert token_answer(source, provider="az", status=200, body={"access_token": "tok", "expires_in": "3599"},
                        snippet="") == ("tok", 3599.0)


# --- catalog sync and connection test --------------------------------------------------------------------


@pytest.mark.django_db
def test_catalog_sync_sends_a_minted_token_and_mints_once(world, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        provider = add_entra_azure(world.tenant, fake, entra)
        assert provider_sync(provider=provider).added == 1
        provider_sync(provider=provider)
        [minted] = entra.issued
        sent = fake.requests_to("/openai/v1/models")
        assert [r.headers["authorization"] for r in sent] == [f"Bearer {minted}"] * 2
        assert "api-key" not in sent[0].headers
        [request] = entra.token_requests()
        assert request.path == f"/{entra.tenant_id}/oauth2/v2.0/token"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = dict(pair.split("=", 1) for pair in request.raw.decode().split("&"))
        assert form["client_secret"] == SECRET and form["client_id"] == entra.client_id
        assert form["scope"] == ENTRA_SCOPE.replace(":", "%3A").replace("/", "%2F")
    assert SECRET not in caplog.text and minted not in caplog.text


@pytest.mark.django_db
def test_concurrent_syncs_mint_one_token(world):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        provider = add_entra_azure(world.tenant, fake, entra)
        entra.set_fault("slow", delay=0.3)
        tokens = []
        threads = [threading.Thread(target=lambda: tokens.append(provider_access_token(provider))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(entra.token_requests()) == 1 and set(tokens) == set(entra.issued)


@pytest.mark.django_db
def test_a_wrong_secret_fails_the_sync_with_entra_words(world):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        provider = add_entra_azure(world.tenant, fake, entra, api_key="not-the-secret")
        with pytest.raises(UpstreamError) as caught:
            provider_sync(provider=provider)
        message = caught.value.message
        assert f"Provider '{provider.display_name}' could not get an access token from {entra.url}" in message
        assert "invalid_client: AADSTS7000215: Invalid client secret provided." in message
        assert "not-the-secret" not in message and "Trace ID" not in message
        provider.refresh_from_db()
        assert provider.sync_status == "error" and "AADSTS7000215" in provider.last_sync_error
        assert not fake.requests_to("/openai/v1/models")  # no token, no call


@pytest.mark.django_db
def test_an_unreachable_token_endpoint_is_named(world):
    with FakeEntra() as entra:
        url = entra.url
    with FakeAzure() as fake:
        provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "az", "provider_type": "azure", "base_url": fake.url, "api_key": SECRET,
            "options": {"auth": "entra-client", "tenant_id": "t", "client_id": "c", "authority": url}})
        with pytest.raises(UpstreamError, match=f"could not get an access token from {url}/t/oauth2/v2.0/token: "
                                                "connection refused"):
            provider_sync(provider=provider)


@pytest.mark.django_db
def test_an_upstream_401_drops_the_synced_token(world):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        provider = add_entra_azure(world.tenant, fake, entra)
        provider_sync(provider=provider)
        entra.revoke()
        with pytest.raises(UpstreamError, match="rejected"):
            provider_sync(provider=provider)
        provider_sync(provider=provider)  # minted anew
        assert len(entra.issued) == 2


@pytest.mark.django_db
def test_connection_test_mints_with_the_typed_secret(world, client_for):
    client = client_for(user=world.admin)
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        body = {"base_url": fake.url, "provider_type": "azure", "api_key": SECRET, "options": entra_options(entra)}
        report = client.post("/api/providers/test", body, format="json").json()
        assert report["reachable"] and report["model_count"] == 1
        wrong = client.post("/api/providers/test", {**body, "api_key": "wrong-secret"}, format="json").json()
        assert not wrong["reachable"] and "AADSTS7000215" in wrong["error"] and "wrong-secret" not in wrong["error"]
        assert len(entra.issued) == 1  # an unsaved provider's token is not kept


@pytest.mark.django_db
def test_vertex_sync_and_connection_test_need_no_token(world):
    """Vertex has no models.list: its sync lists what Tollgate knows and asks nothing, so it mints nothing."""
    with FakeGoogleOAuth() as oauth, FakeGemini() as fake:
        provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "vertex", "provider_type": "gemini", "api_key": service_account_json(oauth),
            "base_url": fake.vertex_base_url})
        provider_sync(provider=provider)
        assert provider.models.filter(model_id="text-embedding-005").exists() and not fake.requests
        assert not oauth.requests and provider_access_token(provider).startswith("ya29.fake-")


@pytest.mark.django_db
def test_console_saves_a_service_account_key_pasted_into_the_key_field(world, client_for):
    client = client_for(user=world.owner)
    with FakeGoogleOAuth() as oauth:
        # a password field drops the file's line breaks; the JSON stays valid
        pasted = service_account_json(oauth).replace("\n", "")
        response = client.post(f"/app/{world.tenant.slug}/providers/new/", {
            "name": "vertex", "provider_type": "gemini", "api_key": pasted,
            "options": json.dumps({"auth": "vertex", "project": "fake-project", "location": "us-central1"}),
            "priority": 0, "timeout_seconds": 60, "max_retries": 2, "sync_interval_minutes": 1440})
        assert response.status_code == 302, response.content.decode()[:2000]
        listing = client.get(f"/app/{world.tenant.slug}/providers/").content.decode()
    assert "service account tollgate@fake-project.iam.gserviceaccount.com" in listing
    assert "PRIVATE KEY" not in listing
    bad = client.post(f"/app/{world.tenant.slug}/providers/new/", {
        "name": "vertex2", "provider_type": "gemini", "api_key": '{"type": "service_account"}',
        "options": json.dumps({"auth": "vertex", "project": "fake-project", "location": "us-central1"}),
        "priority": 0, "timeout_seconds": 60, "max_retries": 2, "sync_interval_minutes": 1440})
    assert bad.status_code == 400
    assert "The service-account JSON key has no client_email, private_key, token_uri." in bad.content.decode()
