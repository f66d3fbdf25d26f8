"""/v1 through providers whose key mints access tokens: Azure Entra ID client credentials against
a loopback Entra authority (FakeEntra) and Vertex AI with a service account's JSON key against a
loopback Google token endpoint (FakeGoogleOAuth, which checks the JWT's signature). The live
gateway runs in this process, so it shares the token cache with the catalog syncs here: tests that
count the data plane's mints empty it first."""

import json
import logging
import time

import openai
import pytest

from providers.adapters.credentials import TOKENS
from providers.models import ProviderModel
from providers.services import provider_create, provider_update
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tests.fakes import FakeAzure, FakeEntra, FakeGemini, FakeGoogleOAuth
from tests.utils.live import burst, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "entra-client-secret-0123"
CHAT_PATH = "/openai/deployments/my-gpt4o/chat/completions"
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    TOKENS.clear()
    yield
    TOKENS.clear()


def add_entra_azure(tenant, fake, entra, *, api_key=SECRET, **data):
    provider = provider_create(owner=tenant, actor=SYSTEM, data={
        "name": "az", "provider_type": "azure", "base_url": fake.url, "api_key": api_key,
        "options": {"auth": "entra-client", "tenant_id": entra.tenant_id, "client_id": entra.client_id,
                    "authority": entra.url,
                    "deployments": {"my-gpt4o": "gpt-4o", "my-embed": "text-embedding-3-small"}},
        **data})
    provider_sync(provider=provider)
    return provider


def bearers(fake, path=CHAT_PATH) -> list[str]:
    return [r.headers.get("authorization", "") for r in fake.requests_to(path)]


def test_chat_stream_and_embeddings_go_through_with_a_minted_token(world, live, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeEntra() as entra, FakeAzure(entra=entra, reply="Hello via Entra") as fake:
        add_entra_azure(world.tenant, fake, entra)
        TOKENS.clear()  # the data plane mints its own
        client = sdk(live, world.chat_key)
        raw = client.chat.completions.with_raw_response.create(model="az:my-gpt4o", messages=HELLO)
        assert raw.parse().choices[0].message.content == "Hello via Entra"
        stream = client.chat.completions.create(model="az:my-gpt4o", messages=HELLO, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello via Entra"
        client.embeddings.create(model="az:my-embed", input=["a"])
        minted = entra.issued[-1]
        assert len(entra.issued) == 2  # the sync's, then the data plane's one for all three
        assert bearers(fake) == [f"Bearer {minted}"] * 2
        assert bearers(fake, "/openai/deployments/my-embed/embeddings") == [f"Bearer {minted}"]
        assert all("api-key" not in r.headers for r in fake.requests_to(CHAT_PATH))
    assert wait_usage(raw.headers["x-request-id"]).status == "ok"
    assert SECRET not in caplog.text and minted not in caplog.text


def test_fifty_concurrent_requests_mint_one_token(world, live):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        add_entra_azure(world.tenant, fake, entra)
        TOKENS.clear()
        entra.clear_requests()
        entra.set_fault("slow", delay=0.3)  # all fifty arrive while the token is being minted
        statuses = burst(live, world.chat_key, {"model": "az:my-gpt4o", "messages": HELLO}, 50)
        assert statuses == [200] * 50
        assert len(entra.token_requests()) == 1
        assert set(bearers(fake)) == {f"Bearer {entra.issued[-1]}"}


def test_an_expiring_token_is_replaced_before_it_expires(world, live):
    with FakeEntra(expires_in=2) as entra, FakeAzure(entra=entra) as fake:
        add_entra_azure(world.tenant, fake, entra)
        client = sdk(live, world.chat_key)
        client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        assert len(entra.issued) == 1  # the sync's token, still fresh
        time.sleep(1.2)  # a 2 s token is used for half its life
        client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        assert len(entra.issued) == 2
        assert bearers(fake)[-1] == f"Bearer {entra.issued[-1]}"


def test_a_changed_secret_mints_a_new_token(world, live):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        provider = add_entra_azure(world.tenant, fake, entra)
        client = sdk(live, world.chat_key)
        client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        first = entra.issued[-1]
        entra.client_secret = "rotated-secret-4567"
        provider_update(provider=provider, actor=SYSTEM, data={"api_key": "rotated-secret-4567"})
        client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        assert len(entra.issued) == 2 and bearers(fake)[-1] == f"Bearer {entra.issued[-1]}" != f"Bearer {first}"
        form = entra.token_requests()[-1].raw.decode()
        assert "client_secret=rotated-secret-4567" in form


def test_an_upstream_401_mints_a_new_token_and_the_request_goes_through(world, live):
    with FakeEntra() as entra, FakeAzure(entra=entra, reply="after a new token") as fake:
        add_entra_azure(world.tenant, fake, entra, max_retries=1)
        client = sdk(live, world.chat_key)
        client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        entra.revoke()  # Azure stops taking the cached token
        raw = client.chat.completions.with_raw_response.create(model="az:my-gpt4o", messages=HELLO)
        assert raw.parse().choices[0].message.content == "after a new token"
        assert len(entra.issued) == 2
        assert bearers(fake)[-2:] == [f"Bearer {entra.issued[0]}", f"Bearer {entra.issued[1]}"]
    assert wait_usage(raw.headers["x-request-id"]).attempts == 2


def test_without_retries_the_next_request_mints_after_a_401(world, live):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        add_entra_azure(world.tenant, fake, entra, max_retries=0)
        client = sdk(live, world.chat_key)
        entra.revoke()
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        client.chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        assert len(entra.issued) == 2 and bearers(fake)[-1] == f"Bearer {entra.issued[1]}"


def test_a_wrong_secret_is_a_502_naming_the_provider_and_entras_words(world, live):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "az", "provider_type": "azure", "base_url": fake.url, "api_key": "wrong-secret-999",
            "max_retries": 2, "options": {"auth": "entra-client", "tenant_id": entra.tenant_id,
                                          "client_id": entra.client_id, "authority": entra.url,
                                          "deployments": {"my-gpt4o": "gpt-4o"}}})
        ProviderModel.objects.create(provider=provider, model_id="my-gpt4o")
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        assert caught.value.status_code == 502
        message = caught.value.body["message"]
        assert f"Provider 'az' could not get an access token from {entra.url}/{entra.tenant_id}/oauth2/v2.0/token" \
            in message
        assert "invalid_client: AADSTS7000215: Invalid client secret provided." in message
        assert "wrong-secret-999" not in json.dumps(caught.value.body)
        assert len(entra.token_requests()) == 1  # a refused credential is not retried
        assert not fake.requests_to(CHAT_PATH)


def test_an_unknown_tenant_says_so(world, live):
    with FakeEntra() as entra, FakeAzure(entra=entra) as fake:
        provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "az", "provider_type": "azure", "base_url": fake.url, "api_key": SECRET,
            "options": {"auth": "entra-client", "tenant_id": "typo-tenant", "client_id": entra.client_id,
                        "authority": entra.url, "deployments": {"my-gpt4o": "gpt-4o"}}})
        ProviderModel.objects.create(provider=provider, model_id="my-gpt4o")
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model="az:my-gpt4o", messages=HELLO)
        assert "AADSTS90002: Tenant 'typo-tenant' not found" in caught.value.body["message"]


# --- Vertex AI with a service account's JSON key ---------------------------------------------------------


def add_vertex(tenant, fake, oauth, **data):
    key = json.dumps(oauth.service_account(), indent=2)
    provider = provider_create(owner=tenant, actor=SYSTEM, data={
        "name": "vertex", "provider_type": "gemini", "base_url": fake.vertex_base_url, "api_key": key,
        "options": {"auth": "vertex"}, **data})
    ProviderModel.objects.create(provider=provider, model_id="gemini-2.5-flash")
    return provider, key


def test_vertex_mints_with_a_signed_jwt_and_sends_the_token(world, live, client_for, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeGoogleOAuth() as oauth, FakeGemini(models=["gemini-2.5-flash"], reply="from vertex") as fake:
        fake.google_oauth = oauth
        provider, key = add_vertex(world.tenant, fake, oauth)
        client = sdk(live, world.chat_key)
        for _ in range(2):
            answer = client.chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO)
            assert answer.choices[0].message.content == "from vertex"
        [token] = oauth.issued
        [claims] = oauth.assertions  # its signature checked with the account's public key
        assert claims["iss"] == "tollgate@fake-project.iam.gserviceaccount.com"
        assert claims["aud"] == oauth.token_url and claims["exp"] - claims["iat"] == 3600
        assert [r.headers["authorization"] for r in fake.requests] == [f"Bearer {token}"] * 2
        shown = client_for(user=world.admin).get(f"/api/providers/{provider.pk}").content.decode()
    private = json.loads(key)["private_key"]
    for text in (shown, caplog.text):
        assert private[40:80] not in text and token not in text


def test_vertex_expired_and_refused_tokens_are_replaced(world, live):
    with FakeGoogleOAuth(expires_in=2) as oauth, FakeGemini(models=["gemini-2.5-flash"]) as fake:
        fake.google_oauth = oauth
        add_vertex(world.tenant, fake, oauth, max_retries=1)
        client = sdk(live, world.chat_key)
        client.chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO)
        time.sleep(1.2)
        client.chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO)
        assert len(oauth.issued) == 2
        oauth.revoke()
        client.chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO)
        assert len(oauth.issued) == 3
        assert fake.requests[-1].headers["authorization"] == f"Bearer {oauth.issued[-1]}"


def test_vertex_with_an_unknown_account_says_what_google_said(world, live):
    with FakeGoogleOAuth() as oauth, FakeGemini(models=["gemini-2.5-flash"]) as fake:
        fake.google_oauth = oauth
        add_vertex(world.tenant, fake, oauth)
        oauth.accounts.clear()  # Google no longer knows the account (deleted, or its key was)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(live, world.chat_key).chat.completions.create(model="vertex:gemini-2.5-flash", messages=HELLO)
        assert caught.value.status_code == 502
        message = caught.value.body["message"]
        assert f"Provider 'vertex' could not get an access token from {oauth.token_url}" in message
        assert "invalid_grant: Invalid grant: account not found" in message
        assert "check its service-account JSON key" in message and not fake.requests
