"""PUT / GET /api/tenants/{id} in the seed's dialect (settings.llm / settings.embeddings with provider,
apiKey, maxTokens, topP): what it creates, what GET shows back (the key masked, never in clear, not even
in the audit trail), camelCase beside snake_case, errors that name the field, and the platform's defaults
from the environment for new tenants. The /v1 side is tests/gateway/test_seed_dialect.py."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from providers.catalog import CatalogEntry
from providers.crypto import mask
from providers.models import Provider, ProviderModel, TenantModel
from providers.services import provider_create, provider_models_upsert
from tenants.models import AuditEvent, Tenant
from tenants.services import tenant_create
from tests.tenants.seed_examples import ENV_REFERENCE, HYBRID_TENANTS, SWITCH_TO_ANTHROPIC, seed_env, seed_json
from tests.utils.procs import REPO

pytestmark = pytest.mark.django_db

KEY = "sk-proj-abcdefghijklmnop1234"


def url(tenant) -> str:
    return f"/api/tenants/{tenant.pk}"


def platform(name: str, provider_type: str, models: list[tuple[str, str]]) -> Provider:
    """A platform provider with a synced catalog of (model id, mode)."""
    provider = provider_create(owner=None, data={"name": name, "provider_type": provider_type})
    provider_models_upsert(provider=provider, catalog=[CatalogEntry(model_id=m, mode=mode) for m, mode in models])
    Provider.objects.filter(pk=provider.pk).update(sync_status="ok")
    return provider


def test_create_own_provider_then_get_shows_the_shape_with_the_key_masked(world, client_for):
    client = client_for(key=world.admin_key)
    body = {"settings": {"llm": {"provider": "openai", "model": "gpt-4o", "apiKey": KEY, "temperature": 0.7,
                                 "maxTokens": 1000, "topP": 0.9},
                         "embeddings": {"provider": "openai", "model": "text-embedding-3-small"}}}
    response = client.put(url(world.tenant), body, format="json")
    assert response.status_code == 200, response.json()
    got = client.get(url(world.tenant)).json()
    assert got["settings"]["llm"] == {"provider": "openai", "model": "openai:gpt-4o", "apiKey": mask(KEY),
                                      "temperature": 0.7, "max_tokens": 1000, "top_p": 0.9}
    # the embeddings section found the provider the llm section made (one request, in order)
    assert got["settings"]["embeddings"] == {"provider": "openai", "model": "openai:text-embedding-3-small",
                                             "apiKey": mask(KEY)}
    provider = Provider.objects.get(owner=world.tenant)
    assert (provider.name, provider.provider_type, provider.base_url) == ("openai", "openai", "https://api.openai.com/v1")
    assert provider.api_key == KEY
    with connection.cursor() as cursor:  # encrypted at rest
        cursor.execute("SELECT api_key FROM providers_provider WHERE id = %s", [provider.pk])
        assert KEY not in cursor.fetchone()[0]
    models = dict(ProviderModel.objects.filter(provider=provider).values_list("model_id", "mode"))
    assert models == {"gpt-4o": "chat", "text-embedding-3-small": "embedding"}
    # priced from the catalog as a sync would
    assert ProviderModel.objects.get(provider=provider, model_id="gpt-4o").input_price is not None
    # the key is in no answer and no audit event, only its mask
    assert KEY not in json.dumps(response.json()) and KEY not in json.dumps(got)
    events = AuditEvent.objects.filter(tenant=world.tenant)
    assert {"provider.create", "model.add", "tenant.update"} <= {e.action for e in events}
    assert KEY not in json.dumps([[e.before, e.after] for e in events])
    update = events.get(action="tenant.update")
    assert update.after["default_model"] == "openai:gpt-4o"
    assert update.after["default_embedding_model"] == "openai:text-embedding-3-small"


def test_a_second_put_updates_the_same_provider_and_round_trips(world, client_for):
    client = client_for(key=world.admin_key)
    first = {"settings": {"llm": {"provider": "anthropic", "model": "claude-3-5-sonnet-20241022", "apiKey": KEY}}}
    assert client.put(url(world.tenant), first, format="json").status_code == 200
    second = seed_json(SWITCH_TO_ANTHROPIC)[0]
    response = client.put(url(world.tenant), second, format="json")
    assert response.status_code == 200, response.json()
    provider = Provider.objects.get(owner=world.tenant)
    assert provider.api_key == "sk-ant-..."
    # what GET shows, sent back, changes nothing (model already carries its provider)
    shown = client.get(url(world.tenant)).json()["settings"]["llm"]
    before = AuditEvent.objects.count()
    again = {k: v for k, v in shown.items() if k != "apiKey"}
    assert client.put(url(world.tenant), {"settings": {"llm": again}}, format="json").status_code == 200
    assert AuditEvent.objects.count() == before
    assert Tenant.objects.get(pk=world.tenant.pk).default_model == "anthropic:claude-3-5-sonnet-20241022"


def test_platform_provider_without_key(world, client_for):
    ollama = platform("ollama", "ollama", [("llama3.1:8b", "chat")])
    tenant = tenant_create(slug="test-client", name="Test client")
    response = client_for(key=tenant.admin_key).put(url(tenant.tenant), seed_json(HYBRID_TENANTS)[1], format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["settings"]["llm"] == {"provider": "ollama", "model": "ollama:llama3.1:8b", "apiKey": None,
                                                  "temperature": None, "max_tokens": None, "top_p": None}
    assert TenantModel.objects.filter(tenant=tenant.tenant, provider_model__provider=ollama, enabled=True).count() == 1
    assert not Provider.objects.filter(owner=tenant.tenant).exists()
    # acme, which chose nothing, is untouched
    assert not TenantModel.objects.filter(tenant=world.tenant).exists()


def test_keyless_type_without_any_provider_is_created(world, client_for):
    body = {"settings": {"llm": {"provider": "ollama", "model": "llama3.1:8b", "baseUrl": "http://127.0.0.1:11434"}}}
    response = client_for(key=world.admin_key).put(url(world.tenant), body, format="json")
    assert response.status_code == 200, response.json()
    provider = Provider.objects.get(owner=world.tenant)
    assert (provider.name, provider.provider_type, provider.api_key) == ("ollama", "ollama", "")


def test_camel_and_snake_case(world, client_for):
    client = client_for(key=world.admin_key)
    assert client.put(url(world.tenant), {"settings": {"llm": {"maxTokens": 800, "topP": 0.5}}},
                      format="json").status_code == 200
    tenant = Tenant.objects.get(pk=world.tenant.pk)
    assert (tenant.max_tokens, tenant.top_p) == (800, 0.5)
    same = client.put(url(world.tenant), {"settings": {"llm": {"maxTokens": 900, "max_tokens": 900}}}, format="json")
    assert same.status_code == 200 and same.json()["settings"]["llm"]["max_tokens"] == 900
    differ = client.put(url(world.tenant), {"settings": {"llm": {"maxTokens": 100, "max_tokens": 200, "topP": 0.1}}},
                        format="json")
    assert differ.status_code == 400
    error = differ.json()["error"]
    assert list(error["fields"]) == ["settings.llm.maxTokens"]
    assert "settings.llm.maxTokens" in error["message"] and "settings.llm.max_tokens" in error["message"]
    assert Tenant.objects.get(pk=world.tenant.pk).top_p == 0.5  # nothing of a refused body is applied
    bad = client.put(url(world.tenant), {"settings": {"llm": {"topP": 2}}}, format="json")
    assert list(bad.json()["error"]["fields"]) == ["settings.llm.topP"]


@pytest.mark.parametrize("llm, field, words", [
    ({"provider": "watsonx", "model": "m", "apiKey": KEY}, "settings.llm.provider", "neither a provider type"),
    ({"provider": "watsonx", "model": "m"}, "settings.llm.provider", "unknown provider 'watsonx'"),
    ({"provider": "anthropic", "model": "claude-3-5-sonnet-20241022"}, "settings.llm.apiKey",
     "neither this tenant nor the platform has a provider of type 'anthropic'"),
    ({"model": "gpt-4o", "apiKey": KEY}, "settings.llm.provider", "settings.llm.apiKey needs settings.llm.provider"),
    ({"provider": "openai", "model": "gpt-4o", "apiKey": "sk-bad\nkey"}, "settings.llm.apiKey", "line breaks"),
    ({"provider": "bedrock", "model": "m", "apiKey": KEY}, "settings.llm.provider", "region"),
    ({"provider": "openai", "model": "gpt-4o", "apikey": KEY}, "settings.llm.apikey", "Unknown field"),
    ({"provider": "openai", "model": "gpt-4o", "apiKey": 5}, "settings.llm.apiKey", "Expected a string"),
])
def test_errors_name_the_field(world, client_for, llm, field, words):
    response = client_for(key=world.admin_key).put(url(world.tenant), {"settings": {"llm": llm}}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"] and words in error["message"], error
    assert not Provider.objects.filter(owner=world.tenant).exists()


def test_models_the_provider_does_not_offer(world, client_for):
    platform("openai", "openai", [("gpt-4o", "chat"), ("text-embedding-3-small", "embedding")])
    client = client_for(key=world.admin_key)
    unknown = client.put(url(world.tenant), {"settings": {"llm": {"provider": "openai", "model": "gpt-9"}}},
                         format="json")
    assert unknown.status_code == 400
    assert list(unknown.json()["error"]["fields"]) == ["settings.llm.model"]
    assert "gpt-4o" in unknown.json()["error"]["message"]  # what it does offer
    wrong_mode = client.put(url(world.tenant), {"settings": {"embeddings": {"provider": "openai", "model": "gpt-4o"}}},
                            format="json")
    assert list(wrong_mode.json()["error"]["fields"]) == ["settings.embeddings.model"]
    assert "text-embedding-3-small" in wrong_mode.json()["error"]["message"]


def test_one_body_changes_everything_or_nothing(world, client_for):
    body = {"settings": {"llm": {"provider": "openai", "model": "gpt-4o", "apiKey": KEY},
                         "embeddings": {"provider": "cohere", "model": "embed-v3"}}}
    response = client_for(key=world.admin_key).put(url(world.tenant), body, format="json")
    assert response.status_code == 400 and "settings.embeddings.provider" in response.json()["error"]["fields"]
    assert not Provider.objects.filter(owner=world.tenant).exists()
    assert Tenant.objects.get(pk=world.tenant.pk).default_model == ""


def test_tenant_id_in_the_document(world, client_for):
    client = client_for(key=world.admin_key)
    wrong = client.put(url(world.tenant), seed_json(HYBRID_TENANTS)[0], format="json")  # tenantId prod-client-1
    assert wrong.status_code == 400 and list(wrong.json()["error"]["fields"]) == ["tenantId"]
    right = client.put(url(world.tenant), {"tenantId": "acme", "settings": {"llm": {"temperature": 0.1}}},
                       format="json")
    assert right.status_code == 200


def test_viewer_outsider_and_support_change_nothing(world, client_for):
    body = {"settings": {"llm": {"provider": "openai", "model": "gpt-4o", "apiKey": KEY}}}
    assert client_for(user=world.viewer).put(url(world.tenant), body, format="json").status_code == 403
    assert client_for(key=world.other_admin_key).put(url(world.tenant), body, format="json").status_code == 404
    assert client_for(user=world.support).put(url(world.tenant), body, format="json").status_code == 403
    assert not Provider.objects.exists()
    # the other tenant's own provider is invisible: acme's openai is a new one of acme's own
    client_for(key=world.other_admin_key).put(url(world.other), body, format="json")
    client_for(key=world.admin_key).put(url(world.tenant), {
        "settings": {"llm": {"provider": "openai", "model": "gpt-4o", "apiKey": "sk-acme-0000000000000"}}},
        format="json")
    assert Provider.objects.get(owner=world.other).api_key == KEY
    assert Provider.objects.get(owner=world.tenant).api_key == "sk-acme-0000000000000"
    shown = client_for(key=world.admin_key).get(url(world.tenant)).json()["settings"]["llm"]
    assert shown["apiKey"] == mask("sk-acme-0000000000000")


# --- the platform's defaults for new tenants ------------------------------------------------------


def test_new_tenant_takes_the_environment_defaults(world, settings):
    openai = platform("openai", "openai", [("gpt-4o", "chat"), ("text-embedding-3-small", "embedding")])
    env = seed_env(ENV_REFERENCE)
    settings.LLM_PROVIDER, settings.LLM_MODEL = env["LLM_PROVIDER"], env["OPENAI_MODEL"]
    settings.LLM_TEMPERATURE, settings.LLM_MAX_TOKENS = float(env["LLM_TEMPERATURE"]), int(env["LLM_MAX_TOKENS"])
    settings.EMBEDDINGS_PROVIDER, settings.EMBEDDINGS_MODEL = env["EMBEDDINGS_PROVIDER"], env["EMBEDDINGS_MODEL"]
    tenant = tenant_create(slug="fresh", name="Fresh").tenant
    tenant.refresh_from_db()
    assert (tenant.default_model, tenant.default_embedding_model) == ("openai:gpt-4o", "openai:text-embedding-3-small")
    assert (tenant.temperature, tenant.max_tokens) == (0.7, 1000)
    chosen = TenantModel.objects.filter(tenant=tenant, enabled=True)
    assert sorted(chosen.values_list("provider_model__model_id", flat=True)) == ["gpt-4o", "text-embedding-3-small"]
    assert all(c.provider_model.provider_id == openai.pk for c in chosen)
    # existing tenants keep what they had
    world.tenant.refresh_from_db()
    assert (world.tenant.default_model, world.tenant.temperature) == ("", None)


def test_new_tenant_when_the_platform_lacks_the_provider(db, settings, caplog):
    settings.LLM_PROVIDER, settings.LLM_MODEL = "anthropic", "claude-3-5-sonnet-20241022"
    settings.LLM_TEMPERATURE = 0.5
    tenant = tenant_create(slug="fresh", name="Fresh").tenant
    tenant.refresh_from_db()
    assert (tenant.default_model, tenant.temperature) == ("", 0.5)
    assert "no platform provider 'anthropic'" in caplog.text


def test_provider_timeout_and_retries_from_the_environment(world, settings):
    settings.LLM_TIMEOUT_SECONDS, settings.LLM_MAX_RETRIES = 30.0, 3
    made = provider_create(owner=world.tenant, data={"name": "x", "provider_type": "openai"})
    own = provider_create(owner=world.tenant, data={"name": "y", "provider_type": "openai", "timeout_seconds": 5})
    assert (made.timeout_seconds, made.max_retries, own.timeout_seconds) == (30.0, 3, 5)


def _settings_of(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    code = ("import django, json, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
            "from django.conf import settings;"
            f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_", "ANTHROPIC_", "OLLAMA_",
                                                                        "EMBEDDINGS_"))}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**clean, "ENV_FILE": "/dev/null", "DEBUG": "true", **env})


def test_the_seed_environment_is_read_as_documented():
    done = _settings_of(seed_env(ENV_REFERENCE), "LLM_PROVIDER", "LLM_MODEL", "LLM_TEMPERATURE", "LLM_MAX_TOKENS",
                        "LLM_TIMEOUT_SECONDS", "LLM_MAX_RETRIES", "EMBEDDINGS_PROVIDER", "EMBEDDINGS_MODEL")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "LLM_PROVIDER": "openai", "LLM_MODEL": "gpt-4o", "LLM_TEMPERATURE": 0.7, "LLM_MAX_TOKENS": 1000,
        "LLM_TIMEOUT_SECONDS": 30.0, "LLM_MAX_RETRIES": 3, "EMBEDDINGS_PROVIDER": "openai",
        "EMBEDDINGS_MODEL": "text-embedding-3-small"}
    # the seed's OPENAI_EMBEDDING_MODEL alone means openai's embeddings; ANTHROPIC_MODEL follows LLM_PROVIDER
    done = _settings_of({"LLM_PROVIDER": "anthropic", "ANTHROPIC_MODEL": "claude-3-haiku-20240307",
                         "OPENAI_EMBEDDING_MODEL": "text-embedding-3-small"},
                        "LLM_MODEL", "EMBEDDINGS_PROVIDER", "EMBEDDINGS_MODEL")
    assert json.loads(done.stdout) == {"LLM_MODEL": "claude-3-haiku-20240307", "EMBEDDINGS_PROVIDER": "openai",
                                       "EMBEDDINGS_MODEL": "text-embedding-3-small"}


@pytest.mark.parametrize("env, words", [
    ({"LLM_PROVIDER": "anthropic"}, "set ANTHROPIC_MODEL"),
    ({"LLM_TEMPERATURE": "3"}, "LLM_TEMPERATURE must be between 0 and 2"),
    ({"LLM_TIMEOUT": "30"}, "LLM_TIMEOUT must be between 500 and 600000"),
])
def test_bad_environment_refuses_to_start(env, words):
    done = _settings_of(env, "LLM_PROVIDER")
    assert done.returncode != 0 and words in done.stderr


def test_a_preset_by_name(world, client_for):
    body = {"settings": {"llm": {"provider": "groq", "model": "llama-3.1-8b-instant", "apiKey": "gsk_1234567890abcd"}}}
    response = client_for(key=world.admin_key).put(url(world.tenant), body, format="json")
    assert response.status_code == 200, response.json()
    provider = Provider.objects.get(owner=world.tenant)
    assert (provider.name, provider.provider_type, provider.options["preset"]) == ("groq", "openai_compatible", "groq")
    assert response.json()["settings"]["llm"]["model"] == "groq:llama-3.1-8b-instant"
