"""Presets for OpenAI-compatible services (providers/presets.py): which base URLs they match (and
which look-alikes they must not), genai-prices for their models, their catalog quirks against a
FakeOpenAI configured like each service, creation by preset over REST, discover_providers from
their environment variables, and one /v1 chat through a preset provider, priced in the ledger."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from genai_prices import Usage, calc_price, data_snapshot

from providers.base_urls import detect_provider_type, normalize_base_url
from providers.discovery import discover
from providers.models import Provider, ProviderModel
from providers.presets import PRESETS, preset_for_url, provider_preset
from providers.pricing import catalog_prices
from providers.services import provider_create
from providers.sync import provider_sync
from tests.fakes import FakeOpenAI
from tests.utils.live import sdk, wait_usage

SECRET = "sk-preset-secret-0042"


# --- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_is_detected_from_its_own_base_url(name):
    url = PRESETS[name].base_url
    assert preset_for_url(url).name == name
    assert preset_for_url(url.upper() + "/").name == name
    assert detect_provider_type(url) == "openai_compatible"  # a preset is not a provider type
    assert normalize_base_url("", "openai_compatible", preset=PRESETS[name]) == url


@pytest.mark.parametrize(("base_url", "expected"), [
    ("api.groq.com/openai/v1", "groq"),
    ("https://api.mistral.ai./v1", "mistral"),
    ("http://gpu-box:8000/v1/", "vllm"),
    ("http://10.0.0.5:8000/V1", "vllm"),
    ("http://127.0.0.1:1234/v1", "lmstudio"),
    ("http://studio.lan:1234/v1", "lmstudio"),
    # look-alikes
    ("https://api.groq.com.evil.example/openai/v1", None),
    ("https://groq.com/openai/v1", None),
    ("https://notapi.x.ai/v1", None),
    ("https://x.ai/v1", None),
    ("https://api.deepseek.co/v1", None),
    ("https://mistral.ai.example.com/v1", None),
    ("https://llm.example.com:8000/v1", None),  # a public host on vLLM's port: not taken for free
    ("http://8.8.8.8:1234/v1", None),
    ("http://localhost:8000", None),
    ("http://localhost:8000/v2", None),
    ("http://localhost:8001/v1", None),
    ("http://localhost:1234/api/v0", None),
    ("https://api.openai.com/v1", None),
    ("", None),
    ("http://[::1", None),
])
def test_detection_and_look_alikes(base_url, expected):
    preset = preset_for_url(base_url)
    assert (preset.name if preset else None) == expected


def test_a_preset_applies_to_openai_compatible_providers_only():
    assert provider_preset(Provider(provider_type="openai_compatible", base_url="https://api.x.ai/v1")).name == "xai"
    assert provider_preset(Provider(provider_type="ollama", base_url="http://gpu:8000/v1")) is None
    named = Provider(provider_type="openai_compatible", base_url="http://proxy.lan/groq", options={"preset": "groq"})
    assert provider_preset(named).name == "groq"


# --- prices ------------------------------------------------------------------------------------


def test_every_genai_prices_id_is_in_the_installed_snapshot():
    known = {p.id for p in data_snapshot.get_snapshot().providers}
    ids = {p.genai_id for p in PRESETS.values() if p.genai_id}
    assert ids and ids <= known


PRICED = {
    "mistral": "mistral-small-latest",
    "groq": "llama-3.1-8b-instant",
    "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "deepseek": "deepseek-chat",
    "xai": "grok-3-mini",
    "fireworks": "accounts/fireworks/models/llama-v3p1-8b-instruct",
    "perplexity": "sonar",
    "cerebras": "llama3.1-8b",
}


def test_every_hosted_preset_is_priced():
    assert set(PRICED) == {p.name for p in PRESETS.values() if not p.local}


@pytest.mark.parametrize(("name", "model_id"), list(PRICED.items()))
def test_preset_models_are_priced_from_genai_prices(name, model_id):
    provider = Provider(provider_type="openai_compatible", base_url=PRESETS[name].base_url)
    prices = catalog_prices(provider=provider, model_id=model_id)
    # genai-prices' own calculation for a million tokens each way, from the provider id we map to
    million = calc_price(Usage(input_tokens=1_000_000, output_tokens=1_000_000), model_id,
                         provider_id=PRESETS[name].genai_id)
    assert prices.input == million.input_price and prices.output == million.output_price
    assert prices.input > 0 and prices.output > 0
    # the same model behind an unknown host has no catalog price
    stranger = Provider(provider_type="openai_compatible", base_url="https://llm.example.com/v1")
    assert catalog_prices(provider=stranger, model_id=model_id) is None


# --- catalog sync ------------------------------------------------------------------------------

def create(client, **body):
    response = client.post("/api/providers", {"api_key": SECRET, **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def synced(client, provider_id) -> dict[str, dict]:
    response = client.post(f"/api/providers/{provider_id}/sync")
    assert response.status_code == 200, response.json()
    listed = client.get(f"/api/providers/{provider_id}/models?page_size=100").json()["results"]
    return {m["model_id"]: m for m in listed}


@pytest.mark.django_db
def test_groq_and_mistral_report_their_context_windows(world, client_for):
    client = client_for(key=world.admin_key)
    groq_models = [{"id": "llama-3.1-8b-instant", "owned_by": "Meta", "active": True, "context_window": 131072}]
    mistral_models = [{"id": "mistral-small-latest", "max_context_length": 32768, "capabilities": {}}]
    with FakeOpenAI(models=groq_models, api_key=SECRET) as groq, \
            FakeOpenAI(models=mistral_models, api_key=SECRET) as mistral:
        g = create(client, preset="groq", base_url=groq.base_url)
        m = create(client, preset="mistral", base_url=mistral.base_url)
        assert (g["preset"], m["preset"]) == ("groq", "mistral")
        llama = synced(client, g["id"])["llama-3.1-8b-instant"]
        small = synced(client, m["id"])["mistral-small-latest"]
    assert llama["context_length"] == 131072 and small["context_length"] == 32768
    assert llama["prices"]["source"] == small["prices"]["source"] == "catalog"
    assert Decimal(llama["prices"]["input"]) == Decimal("0.05")  # Groq's price in genai-prices


@pytest.mark.django_db
def test_vllm_and_lm_studio_are_local(world, client_for):
    client = client_for(key=world.admin_key)
    with FakeOpenAI(models=[{"id": "meta-llama/Llama-3.1-8B-Instruct", "owned_by": "vllm", "max_model_len": 16384}],
                    api_key=SECRET) as vllm, FakeOpenAI(models=["qwen2.5-7b-instruct"], api_key=SECRET) as studio:
        v = create(client, preset="vllm", base_url=vllm.base_url)
        s = create(client, preset="lmstudio", base_url=studio.base_url)
        served = synced(client, v["id"])["meta-llama/Llama-3.1-8B-Instruct"]
        studied = synced(client, s["id"])["qwen2.5-7b-instruct"]
    assert served["context_length"] == 16384
    for model in (served, studied):
        assert model["prices"]["source"] == "local"
        assert Decimal(model["prices"]["input"]) == Decimal(model["prices"]["output"]) == 0


@pytest.mark.django_db
def test_together_bare_array_with_listed_prices(world, client_for):
    def record(model_id, kind, pricing, context=131072):
        return {"id": model_id, "type": kind, "display_name": model_id.split("/")[-1], "context_length": context,
                "organization": "Example", "pricing": {"hourly": 0, "base": 0, "finetune": 0, **pricing}}

    catalog = [
        record("meta-llama/Llama-3.3-70B-Instruct-Turbo", "chat", {"input": 0.7, "output": 0.9}),
        record("deepseek-ai/DeepSeek-V3", "chat", {"input": 0, "output": 0, "hourly": 4.5}),  # dedicated only
        record("BAAI/bge-large-en-v1.5", "embedding", {"input": 0.02, "output": 0}, context=512),
        record("black-forest-labs/FLUX.1-schnell", "image", {"input": 0, "output": 0}),
    ]
    with FakeOpenAI(models=catalog, api_key=SECRET) as together:
        together.bare_model_list = True
        t = create(client_for(key=world.admin_key), preset="together", base_url=together.base_url)
        models = synced(client_for(key=world.admin_key), t["id"])
    assert set(models) == {"meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3",
                           "BAAI/bge-large-en-v1.5"}  # the image model is left out
    llama = models["meta-llama/Llama-3.3-70B-Instruct-Turbo"]
    assert llama["prices"]["source"] == "synced" and llama["display_name"] == "Llama-3.3-70B-Instruct-Turbo"
    assert (Decimal(llama["prices"]["input"]), Decimal(llama["prices"]["output"])) == (Decimal("0.7"), Decimal("0.9"))
    assert llama["context_length"] == 131072
    embed = models["BAAI/bge-large-en-v1.5"]
    assert embed["mode"] == "embedding" and embed["prices"]["source"] == "synced"
    assert Decimal(embed["prices"]["input"]) == Decimal("0.02")
    # listed 0/0 (dedicated endpoints only): the price is not "free", it comes from elsewhere or is unknown
    assert models["deepseek-ai/DeepSeek-V3"]["prices"]["source"] != "synced"


@pytest.mark.django_db
def test_perplexity_uses_its_built_in_model_list(world, client_for):
    with FakeOpenAI(models=["anything"], api_key=SECRET) as perplexity:
        perplexity.set_fault("status", path="/models", status=404)
        p = create(client_for(key=world.admin_key), preset="perplexity", base_url=perplexity.base_url)
        models = synced(client_for(key=world.admin_key), p["id"])
        assert perplexity.requests_to("/v1/models") == []
    assert set(models) == set(PRESETS["perplexity"].models)
    assert models["sonar"]["prices"]["source"] == "catalog" and Decimal(models["sonar"]["prices"]["input"]) > 0


# --- REST --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_by_preset_fills_name_display_name_and_base_url(world, client_for):
    client = client_for(key=world.admin_key)
    body = create(client, preset="groq")
    assert (body["name"], body["display_name"], body["base_url"], body["provider_type"], body["preset"]) == (
        "groq", "Groq", "https://api.groq.com/openai/v1", "openai_compatible", "groq")
    assert SECRET not in str(body)
    # given values win; the preset is kept behind another URL
    own = create(client, preset="deepseek", name="ds-proxy", display_name="DS", base_url="http://127.0.0.1:9/v1")
    assert (own["name"], own["display_name"], own["base_url"], own["preset"]) == (
        "ds-proxy", "DS", "http://127.0.0.1:9/v1", "deepseek")
    # no preset named: the URL says which it is, or none
    assert create(client, name="m", base_url="https://api.mistral.ai/v1")["preset"] == "mistral"
    assert create(client, name="plain", base_url="http://127.0.0.1:9/v1")["preset"] is None
    # the outsider sees none of them
    assert client_for(key=world.other_admin_key).get("/api/providers").json()["results"] == []


@pytest.mark.django_db
def test_unknown_preset_is_a_400_listing_the_known_ones(world, client_for):
    client = client_for(key=world.admin_key)
    response = client.post("/api/providers", {"preset": "grok-cloud", "api_key": SECRET}, format="json")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "Unknown preset 'grok-cloud'" in message and all(name in message for name in PRESETS)
    clash = client.post("/api/providers", {"preset": "groq", "provider_type": "anthropic"}, format="json")
    assert clash.status_code == 400 and "openai_compatible" in clash.json()["error"]["message"]
    nameless = client.post("/api/providers", {"base_url": "http://127.0.0.1:9/v1"}, format="json")
    assert nameless.status_code == 400 and "name" in nameless.json()["error"]["message"]
    assert not Provider.objects.exists()


@pytest.mark.django_db
def test_a_new_base_url_drops_the_named_preset(world, client_for):
    client = client_for(key=world.admin_key)
    body = create(client, preset="together", base_url="http://127.0.0.1:9/v1")
    changed = client.put(f"/api/providers/{body['id']}", {"base_url": "https://api.x.ai/v1", "api_key": SECRET},
                         format="json")
    assert changed.status_code == 200 and changed.json()["preset"] == "xai"


@pytest.mark.django_db
def test_console_add_provider_form_offers_the_presets(world, client):
    client.force_login(world.owner)
    page = client.get(f"/app/{world.tenant.slug}/providers/new/").content.decode()
    assert all(f'value="{name}"' in page for name in PRESETS)
    response = client.post(f"/app/{world.tenant.slug}/providers/new/", {
        "preset": "mistral", "name": "", "display_name": "", "provider_type": "", "base_url": "", "api_key": SECRET,
        "enabled": "on", "priority": 0, "timeout_seconds": 60, "max_retries": 2, "sync_interval_minutes": 1440,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(owner=world.tenant)
    assert (provider.name, provider.display_name, provider.base_url) == ("mistral", "Mistral",
                                                                         "https://api.mistral.ai/v1")
    assert provider_preset(provider).name == "mistral"


# --- discover_providers ------------------------------------------------------------------------


def test_discovery_reads_the_presets_variables():
    env = {"MISTRAL_API_KEY": "m", "GROQ_API_KEY": "g", "TOGETHER_API_KEY": "t", "DEEPSEEK_API_KEY": "d",
           "XAI_API_KEY": "x", "FIREWORKS_API_KEY": "f", "PERPLEXITY_API_KEY": "p",
           "GROQ_BASE_URL": "https://groq-proxy.example/openai/v1",
           "VLLM_BASE_URL": "http://gpu-box:9000/v1", "LMSTUDIO_BASE_URL": "http://127.0.0.1:1234/v1",
           "CEREBRAS_BASE_URL": "https://ignored.example/v1"}  # a hosted preset needs its key
    found = {d.name: d for d in discover(env)}
    assert set(found) == {"mistral", "groq", "together", "deepseek", "xai", "fireworks", "perplexity", "vllm",
                          "lmstudio"}
    assert all(d.preset == name and d.provider_type == "openai_compatible" for name, d in found.items())
    assert found["mistral"].base_url == "https://api.mistral.ai/v1" and found["mistral"].api_key == "m"
    assert found["groq"].base_url == "https://groq-proxy.example/openai/v1"
    assert (found["vllm"].base_url, found["vllm"].api_key) == ("http://gpu-box:9000/v1", "")


@pytest.mark.django_db
def test_discover_providers_keeps_the_preset_of_a_self_hosted_server(monkeypatch):
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:9000/v1")  # not vLLM's default port
    monkeypatch.setenv("PERPLEXITY_API_KEY", "pplx-key-0001")
    out = StringIO()
    call_command("discover_providers", stdout=out)
    assert "created   vllm (openai_compatible) http://127.0.0.1:9000/v1" in out.getvalue()
    assert provider_preset(Provider.objects.get(name="vllm")).name == "vllm"
    assert Provider.objects.get(name="perplexity").base_url == "https://api.perplexity.ai"
    out = StringIO()
    call_command("discover_providers", stdout=out)
    assert out.getvalue().count("unchanged") == 2


# --- /v1 through a preset provider ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_chat_through_a_groq_preset_provider_costs_groqs_price(world, live):
    usage = {"prompt_tokens": 1000, "completion_tokens": 500}
    with FakeOpenAI(models=[{"id": "llama-3.1-8b-instant", "context_window": 131072}], usage=usage,
                    api_key=SECRET) as groq:
        provider = provider_create(owner=world.tenant, data={"preset": "groq", "base_url": groq.base_url,
                                                             "api_key": SECRET})
        provider_sync(provider=provider)
        raw = sdk(live, world.chat_key).chat.completions.with_raw_response.create(
            model="groq:llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}])
        assert raw.parse().usage.prompt_tokens == 1000
        request_id = raw.headers["x-request-id"]
    row = wait_usage(request_id)
    model = ProviderModel.objects.get(pk=row.provider_model_id)
    assert (model.input_price, model.output_price, model.price_source) == (Decimal("0.05"), Decimal("0.08"), "catalog")
    # 1000 × $0.05 + 500 × $0.08 per million tokens
    assert row.status == "ok" and row.cost == Decimal("0.000090000000")
