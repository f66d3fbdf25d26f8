"""Import from LiteLLM: every config.yaml example of the seed document 003 (copied verbatim into
litellm_seed/) is imported with `manage.py import_litellm_config`, and the aliases it makes are
called through /v1 against loopback fakes.

The examples name the public endpoints (no api_base), so after the import each provider's base
URL is pointed at a fake with provider_update, sending the imported key and headers again (a
saved secret never follows a new URL unasked). That is the only change made to what was
imported; the key and headers the fakes check are the ones read from the environment."""

from decimal import Decimal
from io import StringIO
from pathlib import Path

import httpx
import pytest
import yaml
from django.core.management import CommandError, call_command

from billing.models import Budget
from providers.models import ModelAlias, Provider, ProviderModel
from providers.services import provider_update
from tenantconfig.litellm import litellm_translate
from tenantconfig.schema import ConfigInvalid
from tenantconfig.services import config_apply
from tenants.access import SYSTEM
from tenants.services import tenant_create
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.azure import FakeAzure

SEED = Path(__file__).parent / "litellm_seed"
ENV = {"OPENAI_API_KEY": "sk-openai-from-env", "ANTHROPIC_API_KEY": "sk-ant-from-env",
       "OPENROUTER_API_KEY": "sk-or-from-env", "OPENROUTER_SITE_URL": "https://rin.example.com",
       "OPENROUTER_APP_NAME": "RIN - Rhyzomic Intelligence Node"}
HELLO = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def import_seed(name: str, slug: str, *args: str) -> str:
    out = StringIO()
    call_command("import_litellm_config", str(SEED / name), "--tenant", slug, *args, stdout=out)
    return out.getvalue()


def point_at_fakes(tenant, fakes: dict[str, object]) -> None:
    """Each imported provider's base URL to the fake of its type, its key and headers sent again."""
    for provider in Provider.objects.filter(owner=tenant):
        provider_update(provider=provider, actor=SYSTEM, data={
            "base_url": fakes[provider.provider_type].base_url, "api_key": provider.api_key,
            "extra_headers": provider.extra_headers})


def call(live, key: str, model: str) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/chat/completions", json={"model": model, "messages": HELLO},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_every_seed_example_is_a_file_of_the_seed_verbatim():
    seed = Path("/work/shared/seeds/003_39819339665ac9c0.txt")
    names = sorted(p.name for p in SEED.glob("*.yaml"))
    assert len(names) == 10
    if seed.exists():  # outside this machine the copies stand alone
        text = seed.read_text()
        assert text.count("```yaml\n") == 10
        for name in names:
            assert (SEED / name).read_text() in text, name


@pytest.mark.django_db(transaction=True)
def test_seed_model_lists_are_called_through_v1_with_their_parameters_keys_and_headers(live, env):
    with FakeOpenAI(api_key=ENV["OPENAI_API_KEY"]) as openai_fake, \
            FakeAnthropic(api_key=ENV["ANTHROPIC_API_KEY"]) as anthropic_fake, \
            FakeOpenAI(api_key=ENV["OPENROUTER_API_KEY"]) as openrouter_fake:
        fakes = {"openai": openai_fake, "anthropic": anthropic_fake, "openrouter": openrouter_fake}
        expected = {  # example -> alias -> (fake, upstream model, parameters sent)
            "01_advanced_parameters.yaml": {
                "gpt-4o-creative": ("openai", "gpt-4o", {"temperature": 1.2, "max_tokens": 8192, "top_p": 0.95}),
                "claude-precise": ("anthropic", "claude-3-5-sonnet-20241022",
                                   {"temperature": 0.3, "max_tokens": 4096, "top_p": 0.9})},
            "06_example1_cost_optimized.yaml": {
                "smart-cheap": ("openai", "gpt-4o-mini", {"temperature": 0.7, "max_tokens": 4096})},
            "08_example3_specialized_models.yaml": {
                "code-expert": ("anthropic", "claude-3-5-sonnet-20241022", {"temperature": 0.3, "max_tokens": 8192}),
                "creative-writer": ("openai", "gpt-4o", {"temperature": 1.2, "max_tokens": 4096}),
                "researcher": ("openrouter", "perplexity/llama-3.1-sonar-large-128k-online",
                               {"temperature": 0.7, "max_tokens": 4096})},
            "09_example4_openrouter_webhook.yaml": {
                "openrouter-my-model": ("openrouter", "provider/model-name", {"temperature": 0.7, "max_tokens": 4096})},
            "10_manual_configuration.yaml": {
                "my-new-model": ("openrouter", "provider/model-name", {"temperature": 0.7, "max_tokens": 4096})},
        }
        for index, (example, aliases) in enumerate(expected.items()):
            created = tenant_create(slug=f"seed-{index}", name=example)
            out = import_seed(example, created.tenant.slug)
            assert out.startswith(f"Applied to tenant 'seed-{index}'"), out
            assert import_seed(example, created.tenant.slug).startswith("No changes")  # a second import
            point_at_fakes(created.tenant, fakes)
            for alias, (fake_name, upstream_model, params) in aliases.items():
                fake = fakes[fake_name]
                fake.clear_requests()
                response = call(live, created.chat_key, alias)
                assert response.status_code == 200, (example, alias, response.text)
                path = "/v1/messages" if fake_name == "anthropic" else "/v1/chat/completions"
                (sent,) = fake.requests_to(path)
                assert sent.json["model"] == upstream_model
                assert {k: sent.json.get(k) for k in params} == params, (example, alias)
                if fake_name == "openrouter":  # the attribution headers, from the environment
                    assert sent.headers["http-referer"] == ENV["OPENROUTER_SITE_URL"]
                    assert sent.headers["x-title"] == ENV["OPENROUTER_APP_NAME"]
        # importing the file again now would point the providers back at the public endpoints: the plan says so
        out = import_seed("01_advanced_parameters.yaml", "seed-0", "--dry-run")
        assert f"~ change provider openai: base_url '{openai_fake.base_url}' → 'https://api.openai.com/v1'" in out


@pytest.mark.django_db
def test_seed_settings_only_examples_become_budgets_or_notes(world, env):
    out = import_seed("02_cost_tracking.yaml", "acme")
    budget = Budget.objects.get(tenant=world.tenant, name="LiteLLM max_budget")
    assert (budget.amount, budget.period, budget.thresholds, budget.action) == (
        Decimal(100), "rolling_30d", [80, 100], "alert")
    assert "general_settings.database_url: Tollgate keeps usage and cost in its own ledger" in out
    assert "general_settings.model_cost.gpt-4o: no model or model_name of this config is called 'gpt-4o'" in out
    out = import_seed("03_enforce_budget.yaml", "acme")
    assert "~ change budget LiteLLM max_budget: action 'alert' → 'block'" in out
    assert Budget.objects.get(tenant=world.tenant, name="LiteLLM max_budget").action == "block"
    for example, source in (("04_fallback_chain.yaml", "gpt-4o"), ("05_custom_fallback_chains.yaml", "my-smart-model"),
                            ("07_example2_maximum_reliability.yaml", "reliable-model")):
        out = import_seed(example, "acme")
        assert out.startswith("No changes"), out
        assert f"router_settings.fallbacks: '{source}' → " in out
    assert "router_settings (routing_strategy, num_retries, timeout, allowed_fails, cooldown_time): set on the " \
           "aliases a config's model_list makes, and this one has none" in import_seed("04_fallback_chain.yaml", "acme")


@pytest.mark.django_db
def test_dry_run_of_a_seed_example_changes_nothing(world, env):
    out = import_seed("08_example3_specialized_models.yaml", "acme", "--dry-run")
    assert "+ create provider openrouter: type 'openrouter', base_url 'https://openrouter.ai/api/v1', api_key " \
           "(from env OPENROUTER_API_KEY), extra_headers [\"HTTP-Referer\", \"X-Title\"]" in out
    assert "Dry run: nothing was changed." in out
    assert not Provider.objects.filter(owner=world.tenant).exists()


@pytest.mark.django_db
def test_missing_environment_variable_is_named(world, env):
    env.delenv("OPENROUTER_SITE_URL")
    with pytest.raises(CommandError, match=r"providers\[2\]\.extra_headers\.HTTP-Referer: environment variable "
                                           "OPENROUTER_SITE_URL is not set"):
        import_seed("08_example3_specialized_models.yaml", "acme")
    assert not Provider.objects.filter(owner=world.tenant).exists()


ROUTED = """\
model_list:
  - model_name: chat
    litellm_params: {model: openai/gpt-4o, api_base: "%(a)s", api_key: os.environ/KEY_A, weight: 3, rpm: 60}
  - model_name: chat
    litellm_params: {model: openai/gpt-4o, api_base: "%(b)s", api_key: os.environ/KEY_B, weight: 1}
  - model_name: backup
    litellm_params: {model: openai/gpt-4o-mini, api_base: "%(c)s", api_key: os.environ/KEY_C}
  - model_name: long
    litellm_params: {model: openai/gpt-4o-mini, api_base: "%(c)s", api_key: os.environ/KEY_C, timeout: 5}
router_settings:
  routing_strategy: least-busy
  num_retries: 0
  allowed_fails: 2
  cooldown_time: 30
  fallbacks: [{chat: [backup, nowhere]}]
  context_window_fallbacks: [{chat: [long]}]
  redis_host: localhost
general_settings:
  model_cost:
    gpt-4o: {input_cost_per_token: 0.0000025, output_cost_per_token: 0.00001}
litellm_settings:
  drop_params: true
"""


@pytest.mark.django_db(transaction=True)
def test_repeated_model_names_are_deployments_and_fallbacks_lower_priority_groups(live, monkeypatch):
    for name in ("KEY_A", "KEY_B", "KEY_C"):
        monkeypatch.setenv(name, f"sk-{name.lower()}")
    created = tenant_create(slug="routed", name="Routed")
    with FakeOpenAI(api_key="sk-key_a") as a, FakeOpenAI(api_key="sk-key_b") as b, \
            FakeOpenAI(api_key="sk-key_c") as c:
        config = yaml.safe_load(ROUTED % {"a": a.base_url, "b": b.base_url, "c": c.base_url})
        document, notes = litellm_translate(config)
        plan = config_apply(tenant=created.tenant, document=document, actor=SYSTEM, notes=notes)
        assert plan.applied
        chat = ModelAlias.objects.get(tenant=created.tenant, name="chat")
        assert (chat.strategy, chat.retries, chat.allowed_fails, chat.cooldown_seconds) == ("least-busy", 0, 2, 30)
        assert chat.context_window_fallbacks == ["long"]
        targets = [(t.provider_model.provider.name, t.priority, t.weight, t.rpm_limit)
                   for t in chat.targets.select_related("provider_model__provider").order_by("position")]
        assert targets == [("openai-compatible", 0, 3, 60), ("openai-compatible-2", 0, 1, None),
                           ("openai-compatible-3", 1, 1, None)]
        assert ModelAlias.objects.get(tenant=created.tenant, name="backup").strategy == "weighted"  # one deployment
        price = ProviderModel.objects.get(provider__owner=created.tenant, provider__name="openai-compatible",
                                          model_id="gpt-4o")
        assert (price.input_price, price.output_price, price.price_source) == (Decimal("2.5"), Decimal(10), "manual")
        text = "\n".join(notes)
        assert "router_settings.fallbacks: 'chat' → nowhere: not model_names" in text
        assert "router_settings.redis_host: no Tollgate counterpart" in text
        assert "litellm_settings (drop_params): no Tollgate counterpart" in text
        assert "model_list[3] (long): litellm_params timeout: no Tollgate counterpart" in text
        # both deployments of the first group down: the fallback group answers
        a.set_fault("status", status=500)
        b.set_fault("status", status=500)
        response = call(live, created.chat_key, "chat")
        assert response.status_code == 200, response.text
        assert len(c.requests_to("/v1/chat/completions")) == 1
        assert c.requests_to("/v1/chat/completions")[0].json["model"] == "gpt-4o-mini"


def test_translation_of_azure_gemini_bedrock_ollama_and_presets(monkeypatch):
    monkeypatch.setenv("AZ_KEY", "az-secret")
    monkeypatch.setenv("AWS_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET", "wJalrEXAMPLE")
    config = {"model_list": [
        {"model_name": "az", "litellm_params": {"model": "azure/my-gpt4o", "api_base": "https://r.openai.azure.com",
                                                "api_version": "2024-10-21", "api_key": "os.environ/AZ_KEY",
                                                "base_model": "azure/gpt-4o"}},
        {"model_name": "az", "litellm_params": {"model": "azure/my-mini", "api_base": "https://r.openai.azure.com",
                                                "api_version": "2024-10-21", "api_key": "os.environ/AZ_KEY"}},
        {"model_name": "gem", "litellm_params": {"model": "gemini/gemini-1.5-pro", "api_key": "literal-gem"}},
        {"model_name": "br", "litellm_params": {"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                                                "aws_region_name": "eu-west-1",
                                                "aws_access_key_id": "os.environ/AWS_ID",
                                                "aws_secret_access_key": "os.environ/AWS_SECRET"}},
        {"model_name": "local", "litellm_params": {"model": "ollama/llama3", "api_base": "http://127.0.0.1:11434"}},
        {"model_name": "fast", "litellm_params": {"model": "groq/llama-3.1-8b-instant", "api_key": "gsk"}},
        {"model_name": "odd", "litellm_params": {"model": "sagemaker/xyz"}},
    ]}
    document, notes = litellm_translate(config)
    providers = {p["name"]: p for p in document["providers"]}
    assert providers["azure"] == {"name": "azure", "type": "azure", "base_url": "https://r.openai.azure.com",
                                  "api_key": "env:AZ_KEY", "options": {
                                      "deployments": {"my-gpt4o": "gpt-4o", "my-mini": "my-mini"},
                                      "api_version": "2024-10-21"}}
    assert providers["gemini"]["api_key"] == "literal-gem" and "base_url" not in providers["gemini"]
    assert providers["bedrock"]["api_key"] == "AKIAEXAMPLE:wJalrEXAMPLE"
    assert providers["bedrock"]["options"] == {"region": "eu-west-1"}
    assert providers["ollama"]["base_url"] == "http://127.0.0.1:11434"
    assert providers["groq"] == {"name": "groq", "type": "openai_compatible", "base_url":
                                 "https://api.groq.com/openai/v1", "api_key": "gsk", "options": {"preset": "groq"}}
    aliases = {a["name"]: a for a in document["aliases"]}
    assert [d["model"] for d in aliases["az"]["deployments"]] == ["azure:my-gpt4o", "azure:my-mini"]
    assert "odd" not in aliases
    assert "model_list[6] (odd): provider 'sagemaker/' has no Tollgate provider type; not imported" in notes
    monkeypatch.delenv("AWS_SECRET")
    with pytest.raises(ConfigInvalid, match="aws_secret_access_key: environment variable AWS_SECRET is not set"):
        litellm_translate(config)


@pytest.mark.django_db
def test_rest_plan_and_apply_take_a_litellm_config(world, client_for):
    client = client_for(user=world.admin)
    body = "model_list:\n  - model_name: quick\n    litellm_params:\n      model: openai/gpt-4o-mini\n" \
           "      api_key: sk-typed\n      temperature: 0.2\n"
    response = client.post("/api/config/plan", data=body, content_type="application/yaml")
    assert response.status_code == 200, response.content
    assert response.json()["summary"]["create"] == 3
    assert client.post("/api/config/apply", data=body, content_type="application/yaml").status_code == 200
    target = ModelAlias.objects.get(tenant=world.tenant, name="quick").targets.get()
    assert target.overrides == {"temperature": 0.2}
    # os.environ/ keys are the server's environment: refused over REST
    refused = client.post("/api/config/plan", data=(SEED / "01_advanced_parameters.yaml").read_text(),
                          content_type="application/yaml")
    assert refused.status_code == 400
    assert "'env:OPENAI_API_KEY' refers to an environment variable, which only `manage.py tenant_config apply` " \
           "reads" in refused.json()["error"]["message"]


@pytest.mark.django_db
def test_seed_sections_in_one_config_file_work_together(world, env, tmp_path):
    """The seed keeps model_list, general_settings and router_settings in one config.yaml: its first
    three snippets (the models, cost tracking, the fallback chain) concatenated, each verbatim."""
    path = tmp_path / "config.yaml"
    path.write_text("".join((SEED / name).read_text() for name in (
        "01_advanced_parameters.yaml", "02_cost_tracking.yaml", "04_fallback_chain.yaml")))
    out = import_seed(str(path), "acme")
    gpt = ProviderModel.objects.get(provider__owner=world.tenant, provider__name="openai", model_id="gpt-4o")
    assert (gpt.input_price, gpt.output_price, gpt.price_source) == (Decimal("2.5"), Decimal(10), "manual")
    creative = ModelAlias.objects.get(tenant=world.tenant, name="gpt-4o-creative")
    assert (creative.retries, creative.timeout_seconds, creative.allowed_fails, creative.cooldown_seconds,
            creative.strategy) == (2, 300.0, 3, 60, "weighted")
    assert Budget.objects.filter(tenant=world.tenant, name="LiteLLM max_budget", period="rolling_30d").exists()
    assert "general_settings.model_cost.claude-3-5-sonnet: no model or model_name of this config is called" in out
    assert "router_settings.routing_strategy 'usage-based-routing-v2' is set on the aliases whose deployments " \
           "share a priority group; gpt-4o-creative, claude-precise keep weighted" in out


AZURE = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/my-gpt4o
      api_base: %s
      api_version: "2024-10-21"
      api_key: os.environ/AZURE_API_KEY
      base_model: azure/gpt-4o
      max_tokens: 300
"""


@pytest.mark.django_db(transaction=True)
def test_an_azure_deployment_is_called_by_its_name_with_the_api_version(live, monkeypatch, tmp_path):
    monkeypatch.setenv("AZURE_API_KEY", "az-key-from-env")
    created = tenant_create(slug="azure-import", name="Azure")
    with FakeAzure(api_key="az-key-from-env") as fake:
        path = tmp_path / "config.yaml"
        path.write_text(AZURE % fake.base_url)
        out = import_seed(str(path), "azure-import")
        assert "+ create provider azure: type 'azure'" in out
        provider = Provider.objects.get(owner=created.tenant, name="azure")
        assert provider.options["deployments"] == {"my-gpt4o": "gpt-4o"}
        response = call(live, created.chat_key, "gpt-4o")
        assert response.status_code == 200, response.text
        (sent,) = fake.requests_to("/openai/deployments/my-gpt4o/chat/completions")
        assert sent.query["api-version"] == "2024-10-21" and sent.headers["api-key"] == "az-key-from-env"
        assert sent.json["max_tokens"] == 300


def test_azure_ad_client_credentials_become_entra_client(monkeypatch):
    monkeypatch.setenv("AZ_SECRET", "entra-secret")
    monkeypatch.setenv("AZ_TENANT", "contoso.onmicrosoft.com")
    config = {"model_list": [
        {"model_name": "az", "litellm_params": {
            "model": "azure/my-gpt4o", "api_base": "https://r.openai.azure.com", "tenant_id": "os.environ/AZ_TENANT",
            "client_id": "00000000-aaaa-4bbb-8ccc-000000000001", "client_secret": "os.environ/AZ_SECRET"}},
        {"model_name": "oa", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk", "client_id": "x"}},
    ]}
    document, notes = litellm_translate(config)
    providers = {p["name"]: p for p in document["providers"]}
    assert providers["azure"]["api_key"] == "env:AZ_SECRET"
    assert providers["azure"]["options"] == {
        "deployments": {"my-gpt4o": "my-gpt4o"}, "auth": "entra-client", "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "00000000-aaaa-4bbb-8ccc-000000000001"}
    assert any("client_id are imported only as Azure AD client credentials" in n for n in notes)
