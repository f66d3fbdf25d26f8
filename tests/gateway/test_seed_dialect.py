"""The seed's tenant-settings dialect end to end: its examples, verbatim, PUT to /api/tenants/{id}, then
/v1 against loopback fakes; the default embeddings model; POST /api/test/llm by provider.

The dialect names no base URL. Here the upstreams are where the examples' providers already are: a
provider of the tenant's own (the seed's "update" case: the key changes, the URL stays) or a platform
one (as discover_providers makes from OLLAMA_BASE_URL); where a test creates a provider through the
dialect it sends Tollgate's optional ``baseUrl``."""

import httpx
import pytest

from billing.models import UsageLog
from providers.crypto import mask
from providers.models import Provider, TenantModel
from providers.services import provider_create
from providers.sync import provider_sync
from tenants.services import tenant_create
from tests.fakes import FakeAnthropic, FakeOllama, FakeOpenAI
from tests.tenants.seed_examples import (
    HYBRID_TENANTS,
    SWITCH_TO_ANTHROPIC,
    TEST_ANTHROPIC,
    TEST_OLLAMA,
    TEST_OPENAI,
    seed_json,
)
from tests.utils.live import add_provider, sdk

pytestmark = pytest.mark.django_db(transaction=True)

PROD_CLIENT, TEST_CLIENT = seed_json(HYBRID_TENANTS)


def put(client_for, created, body):
    return client_for(key=created.admin_key).put(f"/api/tenants/{created.tenant.pk}", body, format="json")


def test_prod_client_openai_key_then_chat(client_for, live):
    # given: tenant prod-client-1 already has its own openai provider at the upstream, with an old key
    created = tenant_create(slug="prod-client-1", name="Prod client 1")
    with FakeOpenAI(models=["gpt-4o", "gpt-4o-mini"], reply="4") as fake:
        provider = provider_create(owner=created.tenant, data={"name": "openai", "provider_type": "openai",
                                                                "base_url": fake.base_url, "api_key": "sk-old-key"})
        provider_sync(provider=provider)
        fake.api_key = "sk-proj-..."  # the upstream takes only the new key from now on
        # when: the seed's document for it is sent as it is
        response = put(client_for, created, PROD_CLIENT)
        assert response.status_code == 200, response.json()
        # then: the key is replaced (encrypted, shown masked), gpt-4o of that provider is the default …
        llm = response.json()["settings"]["llm"]
        assert llm["provider"] == "openai" and llm["model"] == "openai:gpt-4o"
        assert llm["apiKey"] == mask("sk-proj-...") != "sk-proj-..."
        assert Provider.objects.filter(owner=created.tenant).count() == 1
        # … and a /v1 request without a model reaches it with the new key
        reply = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {created.chat_key}"},
                           json={"messages": [{"role": "user", "content": "What is 2+2?"}]}, timeout=10)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "4"
        sent = fake.requests_to("/v1/chat/completions")[-1]
        assert sent.headers["authorization"] == "Bearer sk-proj-..." and sent.body["model"] == "gpt-4o"


def test_test_client_ollama_without_key_uses_the_platform_ollama(client_for, live):
    # given: a platform ollama provider (what discover_providers makes of OLLAMA_BASE_URL)
    created = tenant_create(slug="test-client", name="Test client")
    with FakeOllama(models=["llama3.1:8b", "mistral:latest"], reply="four") as fake:
        platform = provider_create(owner=None, data={"name": "ollama", "provider_type": "ollama",
                                                      "base_url": fake.base_url})
        provider_sync(provider=platform)
        response = put(client_for, created, TEST_CLIENT)
        assert response.status_code == 200, response.json()
        llm = response.json()["settings"]["llm"]
        # the platform's key is not the tenant's: none shown; no provider of the tenant's own was made
        assert (llm["provider"], llm["model"], llm["apiKey"]) == ("ollama", "ollama:llama3.1:8b", None)
        assert not Provider.objects.filter(owner=created.tenant).exists()
        assert TenantModel.objects.get(tenant=created.tenant).provider_model.model_id == "llama3.1:8b"
        answer = sdk(live, created.chat_key).chat.completions.create(
            model="ollama:llama3.1:8b", messages=[{"role": "user", "content": "What is 2+2?"}])
        assert answer.choices[0].message.content == "four"
        assert fake.requests_to("/api/chat")[-1].body["model"] == "llama3.1:8b"


def test_migration_guide_switch_to_anthropic(world, client_for, live):
    with FakeAnthropic(models=["claude-3-5-sonnet-20241022"], reply="Four.") as anthropic, \
            FakeOpenAI(models=["gpt-4o"]) as openai_fake:
        # given: acme runs on its own openai provider and has its own anthropic one (an old key)
        add_provider(world.tenant, openai_fake, name="openai", provider_type="openai")
        add_provider(world.tenant, anthropic, name="claude", provider_type="anthropic", api_key="sk-ant-old")
        world.tenant.default_model = "openai:gpt-4o"
        world.tenant.save()
        anthropic.api_key = "sk-ant-..."  # the upstream takes only the new key from now on
        # when: the migration guide's PUT
        response = client_for(key=world.admin_key).put(f"/api/tenants/{world.tenant.pk}",
                                                       seed_json(SWITCH_TO_ANTHROPIC)[0], format="json")
        assert response.status_code == 200, response.json()
        # then: its anthropic provider (found by type) has the new key and the next message goes there
        assert response.json()["settings"]["llm"]["model"] == "claude:claude-3-5-sonnet-20241022"
        assert Provider.objects.get(owner=world.tenant, name="claude").api_key == "sk-ant-..."
        answer = sdk(live, world.chat_key).chat.completions.create(
            model="claude:claude-3-5-sonnet-20241022", messages=[{"role": "user", "content": "What is 2+2?"}])
        assert answer.choices[0].message.content == "Four."
        reply = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                           json={"messages": [{"role": "user", "content": "again"}]}, timeout=10)
        assert reply.status_code == 200 and reply.headers["x-tollgate-model"] == "claude:claude-3-5-sonnet-20241022"
        assert anthropic.requests_to("/v1/messages")[-1].headers["x-api-key"] == "sk-ant-..."
        assert openai_fake.requests_to("/v1/chat/completions") == []


def test_new_provider_with_base_url_then_chat_and_defaults(world, client_for, live):
    with FakeOpenAI(models=["gpt-4o-mini"], api_key="sk-mine-1234567890") as fake:
        body = {"settings": {"llm": {"provider": "openai", "model": "gpt-4o-mini", "apiKey": "sk-mine-1234567890",
                                     "baseUrl": fake.base_url, "temperature": 0.2, "maxTokens": 300, "topP": 0.9}}}
        response = client_for(key=world.admin_key).put(f"/api/tenants/{world.tenant.pk}", body, format="json")
        assert response.status_code == 200, response.json()
        provider = Provider.objects.get(owner=world.tenant)
        assert (provider.name, provider.provider_type, provider.base_url) == ("openai", "openai", fake.base_url)
        # the model is usable before any sync (the catalog is read later, as for any new provider)
        reply = httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.chat_key}"},
                           json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert reply.status_code == 200, reply.text
        sent = fake.requests_to("/v1/chat/completions")[-1].body
        assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["top_p"]) == ("gpt-4o-mini", 0.2, 300, 0.9)


def test_embeddings_default_model(world, client_for, live):
    headers = {"Authorization": f"Bearer {world.chat_key}"}
    with FakeOpenAI(models=["gpt-4o-mini", "text-embedding-3-small"], api_key="sk-emb-1234567890") as fake:
        # given no default embeddings model: the refusal says how to set one
        refused = httpx.post(f"{live.url}/v1/embeddings", headers=headers, json={"input": "hello"}, timeout=10)
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert "no default embeddings model" in message and f"PUT /api/tenants/{world.tenant.pk}" in message
        # when: settings.embeddings in the seed's shape
        body = {"settings": {"embeddings": {"provider": "openai", "model": "text-embedding-3-small",
                                            "apiKey": "sk-emb-1234567890", "baseUrl": fake.base_url}}}
        response = client_for(key=world.admin_key).put(f"/api/tenants/{world.tenant.pk}", body, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["settings"]["embeddings"] == {
            "provider": "openai", "model": "openai:text-embedding-3-small", "apiKey": mask("sk-emb-1234567890")}
        # then: a request naming no model uses it
        answer = httpx.post(f"{live.url}/v1/embeddings", headers=headers, json={"input": ["a", "b"]}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["data"]) == 2
        assert fake.requests_to("/v1/embeddings")[-1].body["model"] == "text-embedding-3-small"
        # and chat still has no default of its own
        chat = httpx.post(f"{live.url}/v1/chat/completions", headers=headers,
                          json={"messages": [{"role": "user", "content": "x"}]}, timeout=10)
        assert chat.status_code == 400 and "no default model" in chat.json()["error"]["message"]


def test_api_test_llm_by_provider(world, client_for, live):
    client = client_for(key=world.admin_key)
    with FakeOpenAI(models=["gpt-4o", "gpt-4o-mini"], reply="4") as fake, FakeOllama(models=["llama3.1:8b"]) as ollama:
        add_provider(world.tenant, fake, name="up", provider_type="openai")
        # the seed's test script: by type, the provider's first chat model the tenant may use
        body = client.post("/api/test/llm", seed_json(TEST_OPENAI)[0], format="json").json()
        assert (body["provider"], body["model"], body["answer"]) == ("up", "gpt-4o", "4"), body
        # the tenant's default, when it is that provider's
        world.tenant.default_model = "up:gpt-4o-mini"
        world.tenant.save()
        body = client.post("/api/test/llm", {"provider": "up", "prompt": "x"}, format="json").json()
        assert body["model"] == "gpt-4o-mini"
        assert fake.requests_to("/v1/chat/completions")[-1].body["model"] == "gpt-4o-mini"
        # with a model too
        body = client.post("/api/test/llm", {"provider": "openai", "model": "gpt-4o", "prompt": "x"},
                           format="json").json()
        assert body["model"] == "gpt-4o"
        # the seed's anthropic line, against the tenant's own anthropic provider (named otherwise)
        with FakeAnthropic(models=["claude-3-haiku-20240307"], reply="Four.") as anthropic:
            add_provider(world.tenant, anthropic, name="claude", provider_type="anthropic", api_key="sk-ant-x")
            body = client.post("/api/test/llm", seed_json(TEST_ANTHROPIC)[0], format="json").json()
            assert (body["provider"], body["model"], body["answer"]) == ("claude", "claude-3-haiku-20240307", "Four.")
        # a provider the tenant does not have: 400 listing the ones it has
        unknown = client.post("/api/test/llm", seed_json(TEST_OLLAMA)[0], format="json")
        assert unknown.status_code == 400
        error = unknown.json()["error"]
        assert error["fields"].keys() == {"provider"} and "up (openai)" in error["message"]
        assert ollama.requests_to("/api/chat") == []
        # the outsider's own providers are theirs: acme's 'up' is unknown to them
        outsider = client_for(key=world.other_admin_key).post("/api/test/llm", {"provider": "up", "prompt": "x"},
                                                             format="json")
        assert outsider.status_code == 400 and "up (openai)" not in outsider.json()["error"]["message"]
    assert UsageLog.objects.filter(tenant=world.tenant).count() == 4


def test_a_new_provider_is_synced_after_commit(world, client_for, celery_eager):
    with FakeOpenAI(models=["gpt-4o", "gpt-4o-mini"], api_key="sk-sync-1234567890") as fake:
        body = {"settings": {"llm": {"provider": "openai", "model": "gpt-4o-typo", "apiKey": "sk-sync-1234567890",
                                     "baseUrl": fake.base_url}}}
        response = client_for(key=world.admin_key).put(f"/api/tenants/{world.tenant.pk}", body, format="json")
        assert response.status_code == 200, response.json()
        assert fake.requests_to("/v1/models")  # the sync ran once the change was committed
    provider = Provider.objects.get(owner=world.tenant)
    assert provider.sync_status == "ok"
    models = dict(provider.models.values_list("model_id", "stale"))
    # the catalog's models came in; the one the catalog does not list is kept, stale (disabled)
    assert models == {"gpt-4o": False, "gpt-4o-mini": False, "gpt-4o-typo": True}
    # and now that the catalog is known, a model it lacks is refused, naming what it has
    again = client_for(key=world.admin_key).put(f"/api/tenants/{world.tenant.pk}", {
        "settings": {"llm": {"provider": "openai", "model": "gpt-4o-typo"}}}, format="json")
    assert again.status_code == 400 and "gpt-4o-mini" in again.json()["error"]["message"]
    assert list(again.json()["error"]["fields"]) == ["settings.llm.model"]
