"""What the console pages do: validation with the REST API's rules, errors next to their
fields, secrets never shown, keys shown once, htmx partials, filters and exports."""

import html as html_lib
import re
from decimal import Decimal

import pytest

from billing.models import Budget, UsageLog
from providers.models import ModelAlias, Provider, ProviderModel, TenantModel
from tenants.models import ApiKey, Project, Tenant
from tests.config.console.conftest import LAB_URL, OWN_KEY, PLATFORM_KEY, write_usage
from tests.config.console.test_permissions import alias_form, budget_form
from tests.fakes import FakeOpenAI

HTMX = {"HTTP_HX_REQUEST": "true"}


def settings_data(**changes) -> dict:
    data = {"name": "Acme", "timezone": "UTC", "default_model": "", "cache_ttl_seconds": "3600"}
    data.update(changes)
    return data


def error_next_to(html: str, field: str) -> str:
    """The error list Django renders for ``field`` (id_<field>_error), and that the input is
    marked invalid and points at it."""
    match = re.search(rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', html, re.S)
    assert match, f"no error rendered for {field}"
    control = re.search(rf'<(input|select|textarea)[^>]*\bid="id_{field}"[^>]*>', html)
    assert control, f"no control for {field}"
    assert 'aria-invalid="true"' in control.group(0), control.group(0)
    assert f"id_{field}_error" in control.group(0), control.group(0)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", match.group(1)).strip())


# --- LLM settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("temperature", "2.5", "less than or equal to 2"),
    ("temperature", "-0.1", "greater than or equal to 0"),
    ("top_p", "1.01", "less than or equal to 1"),
    ("max_tokens", "0", "greater than or equal to 1"),
    ("requests_per_minute", "0", "greater than or equal to 1"),
    ("tokens_per_day", "0", "greater than or equal to 1"),
    ("cache_ttl_seconds", "0", "greater than or equal to 1"),
    ("max_tokens", "1.5", "whole number"),
    ("usage_retention_days", "0", "greater than or equal to 1"),
    ("usage_retention_days", "3651", "less than or equal to 3650"),
])
def test_settings_refuse_what_the_api_refuses_next_to_the_field(console, login, field, value, message):
    response = login(console.world.admin).post("/app/acme/settings/", settings_data(**{field: value}))
    assert response.status_code == 400
    assert message in error_next_to(response.content.decode(), field)
    assert Tenant.objects.get(pk=console.tenant.pk).temperature is None


def test_settings_accept_the_edges_and_clear_with_empty_values(console, login):
    client = login(console.world.admin)
    response = client.post("/app/acme/settings/", settings_data(
        temperature="2", top_p="1", max_tokens="1", requests_per_minute="1", tokens_per_day="1",
        default_model="smart-cheap", cache_enabled="on", cache_ttl_seconds="60", timezone="Europe/Berlin",
        usage_retention_days="90"))
    assert response.status_code == 302
    tenant = Tenant.objects.get(pk=console.tenant.pk)
    assert (tenant.temperature, tenant.top_p, tenant.max_tokens, tenant.requests_per_minute,
            tenant.tokens_per_day, tenant.default_model, tenant.cache_enabled, tenant.timezone,
            tenant.usage_retention_days) == (2.0, 1.0, 1, 1, 1, "smart-cheap", True, "Europe/Berlin", 90)
    client.post("/app/acme/settings/", settings_data())
    tenant.refresh_from_db()
    assert tenant.temperature is None and tenant.max_tokens is None and tenant.default_model == ""
    assert tenant.cache_enabled is False and tenant.usage_retention_days is None


def test_settings_choose_what_happens_while_redis_is_down(console, login):
    client = login(console.world.admin)
    assert 'name="redis_outage"' in client.get("/app/acme/settings/").content.decode()
    assert client.post("/app/acme/settings/", settings_data(redis_outage="open")).status_code == 302
    assert Tenant.objects.get(pk=console.tenant.pk).redis_outage == "open"
    refused = client.post("/app/acme/settings/", settings_data(redis_outage="maybe"))
    assert refused.status_code == 400 and "valid choice" in error_next_to(refused.content.decode(), "redis_outage")
    client.post("/app/acme/settings/", settings_data())  # left empty: the platform's choice
    assert Tenant.objects.get(pk=console.tenant.pk).redis_outage == "inherit"


def test_default_model_is_picked_from_usable_models_with_their_capabilities(console, login):
    client = login(console.world.admin)
    page = client.get("/app/acme/settings/").content.decode()
    # enabled models and aliases are offered, with badges and prices; others are not
    assert 'value="openai:gpt-4o"' in page and 'value="smart-cheap"' in page
    assert 'value="lab:meta-llama/llama-3.1-8b:free"' in page
    assert 'value="openai:gpt-4o-mini"' not in page
    row = page[page.index('value="openai:gpt-4o"'):][:1500]
    assert "tools" in row and "vision" in row and "128k ctx" in row and "$2.50 / $10.00" in row
    response = client.post("/app/acme/settings/", settings_data(default_model="openai:gpt-4o-mini"))
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    # a current default that is no longer available stays selectable (saving other fields works)
    Tenant.objects.filter(pk=console.tenant.pk).update(default_model="gone:model")
    assert "not available now" in client.get("/app/acme/settings/").content.decode()
    kept = client.post("/app/acme/settings/", settings_data(default_model="gone:model", temperature="1"))
    assert kept.status_code == 302


def test_the_default_embedding_model_is_picked_from_the_embedding_models(console, login):
    platform = Provider.objects.get(owner__isnull=True, name="openai")
    small = ProviderModel.objects.create(provider=platform, model_id="text-embedding-3-small", mode="embedding")
    TenantModel.objects.create(tenant=console.tenant, provider_model=small, enabled=True)
    client = login(console.world.admin)
    page = client.get("/app/acme/settings/").content.decode()
    select = page[page.index('name="default_embedding_model"'):].split("</select>")[0]
    assert 'value="openai:text-embedding-3-small"' in select and 'value="openai:gpt-4o"' not in select
    saved = client.post("/app/acme/settings/", settings_data(default_embedding_model="openai:text-embedding-3-small"))
    assert saved.status_code == 302
    assert Tenant.objects.get(pk=console.tenant.pk).default_embedding_model == "openai:text-embedding-3-small"
    refused = client.post("/app/acme/settings/", settings_data(default_embedding_model="openai:gpt-4o"))
    assert refused.status_code == 400
    assert "valid choice" in error_next_to(refused.content.decode(), "default_embedding_model")


def test_settings_unknown_time_zone_is_refused(console, login):
    response = login(console.world.admin).post("/app/acme/settings/", settings_data(timezone="Mars/Olympus"))
    assert response.status_code == 400
    assert "valid choice" in error_next_to(response.content.decode(), "timezone")


# --- API keys ---------------------------------------------------------------------------------------


def test_a_new_key_is_shown_once(console, login):
    client = login(console.world.admin)
    response = client.post("/app/acme/keys/", {"name": "ci", "scope": "admin"})
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    raw = re.search(r'id="new-key"[^>]*value="(tg_[A-Za-z0-9]{40})"', response.content.decode()).group(1)
    key = ApiKey.objects.get(tenant=console.tenant, name="ci")
    assert key.scope == "admin" and raw.startswith(key.prefix) and 'data-copy="new-key"' in response.content.decode()
    listing = client.get("/app/acme/keys/").content.decode()
    assert raw not in listing and key.prefix in listing


def test_key_form_errors_are_shown_next_to_the_field(console, login):
    client = login(console.world.admin)
    response = client.post("/app/acme/keys/", {"name": "", "scope": "chat"})
    assert response.status_code == 400 and "required" in error_next_to(response.content.decode(), "name")
    response = client.post("/app/acme/keys/", {"name": "old", "scope": "chat", "expires_at": "2001-01-01T10:00"})
    assert response.status_code == 400
    assert "in the future" in error_next_to(response.content.decode(), "expires_at")
    assert not ApiKey.objects.filter(name="old").exists()


def test_a_new_key_goes_to_the_chosen_project_or_the_default_one(console, login):
    bot = Project.objects.create(tenant=console.tenant, slug="bot", name="Support bot")
    client = login(console.world.admin)
    form = client.get("/app/acme/keys/").content.decode()
    assert f'<option value="{bot.pk}">Support bot (bot)</option>' in form
    assert client.post("/app/acme/keys/", {"name": "in bot", "scope": "chat", "project": bot.pk}).status_code == 201
    assert client.post("/app/acme/keys/", {"name": "plain", "scope": "chat"}).status_code == 201
    assert ApiKey.objects.get(name="in bot").project == bot
    assert ApiKey.objects.get(name="plain").project.slug == "default"
    theirs = Project.objects.get(tenant=console.world.other, slug="default")
    response = client.post("/app/acme/keys/", {"name": "x", "scope": "chat", "project": theirs.pk})
    assert response.status_code == 400 and "valid choice" in error_next_to(response.content.decode(), "project")
    assert not ApiKey.objects.filter(name="x").exists()
    assert ">bot<" in client.get("/app/acme/keys/").content.decode()


def test_revoking_a_key_over_htmx_answers_its_row(console, login):
    response = login(console.world.admin).post(f"/app/acme/keys/{console.chat_key.pk}/revoke/", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith(f'<tr id="key-{console.chat_key.pk}"')
    assert "revoked" in html and "<html" not in html


# --- providers -------------------------------------------------------------------------------------


def provider_data(**changes) -> dict:
    data = {"name": "lab", "provider_type": "openai_compatible", "base_url": LAB_URL, "priority": "0",
            "timeout_seconds": "30", "max_retries": "1", "sync_interval_minutes": "60", "enabled": "on"}
    data.update(changes)
    return data


def test_provider_keys_are_masked_and_platform_keys_never_shown(console, login):
    client = login(console.world.owner)
    for url in ("/app/acme/providers/", f"/app/acme/providers/{console.own.pk}/",
                f"/app/acme/providers/{console.platform.pk}/", "/app/acme/models/"):
        page = client.get(url).content.decode()
        assert OWN_KEY not in page and PLATFORM_KEY not in page, url
    listing = client.get("/app/acme/providers/").content.decode()
    assert "sk-…1234" in listing and "sk-…9876" not in listing
    edit = client.get(f"/app/acme/providers/{console.own.pk}/").content.decode()
    assert 'type="password"' in edit and "sk-…1234" in edit


def test_provider_key_is_write_only_blank_keeps_it(console, login):
    client = login(console.world.admin)
    assert client.post(f"/app/acme/providers/{console.own.pk}/", provider_data(priority="3")).status_code == 302
    provider = Provider.objects.get(pk=console.own.pk)
    assert provider.api_key == OWN_KEY and provider.priority == 3
    client.post(f"/app/acme/providers/{console.own.pk}/", provider_data(api_key="sk-new-key-5678",
                                                                        extra_headers="X-Org: acme"))
    provider.refresh_from_db()
    assert provider.api_key == "sk-new-key-5678" and provider.extra_headers == {"X-Org": "acme"}
    page = client.get(f"/app/acme/providers/{console.own.pk}/").content.decode()
    assert "sk-new-key-5678" not in page and ">acme<" not in page and "X-Org" in page
    client.post(f"/app/acme/providers/{console.own.pk}/", provider_data(clear_api_key="on", clear_extra_headers="on"))
    provider.refresh_from_db()
    assert provider.api_key == "" and provider.extra_headers == {}


@pytest.mark.parametrize("field, changes, message", [
    ("name", {"name": "Bad Name"}, "lowercase letters"),
    ("name", {"name": "a:b"}, "no ':'"),
    ("timeout_seconds", {"timeout_seconds": "0.1"}, "greater than or equal to 0.5"),
    ("max_retries", {"max_retries": "11"}, "less than or equal to 10"),
    ("sync_interval_minutes", {"sync_interval_minutes": "1"}, "greater than or equal to 5"),
    ("extra_headers", {"extra_headers": "Host: evil"}, "cannot be sent"),
    ("extra_headers", {"extra_headers": "no colon here"}, "Name: value"),
])
def test_provider_form_errors_are_shown_next_to_the_field(console, login, field, changes, message):
    data = provider_data(**{"name": "second", **changes})
    response = login(console.world.admin).post("/app/acme/providers/new/", data)
    assert response.status_code == 400
    assert message in error_next_to(response.content.decode(), field)


def test_provider_service_errors_land_on_their_field(console, login, settings):
    client = login(console.world.admin)
    response = client.post("/app/acme/providers/new/", provider_data())  # "lab" exists
    assert response.status_code == 400
    assert "already has a provider named 'lab'" in error_next_to(response.content.decode(), "name")
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    response = client.post("/app/acme/providers/new/", provider_data(name="private"))
    assert response.status_code == 400
    assert "ALLOW_PRIVATE_PROVIDER_URLS" in error_next_to(response.content.decode(), "base_url")


def test_connection_test_and_sync_now_against_a_loopback_fake(console, login):
    client = login(console.world.admin)
    with FakeOpenAI(models=["gpt-4o-mini", "gpt-4o", "o1"], api_key="sk-fake-key-0001") as fake:
        # an unsaved provider: the test uses what the form holds and saves nothing
        answer = client.post("/app/acme/providers/test/", {"base_url": fake.base_url, "api_key": "sk-fake-key-0001"},
                             **HTMX).content.decode()
        assert "Reachable" in answer and "<strong>3</strong> models" in answer and "<html" not in answer
        wrong = client.post("/app/acme/providers/test/", {"base_url": fake.base_url, "api_key": "sk-nope"},
                            **HTMX).content.decode()
        assert "Connection failed" in wrong and "sk-nope" not in wrong
        assert Provider.objects.filter(owner=console.tenant).count() == 1

        # a saved provider: an empty key field tests with the saved key
        client.post("/app/acme/providers/new/", provider_data(name="fake", base_url=fake.base_url,
                                                               api_key="sk-fake-key-0001"))
        provider = Provider.objects.get(owner=console.tenant, name="fake")
        saved = client.post(f"/app/acme/providers/{provider.pk}/test/", {"base_url": fake.base_url}, **HTMX)
        assert "Reachable" in saved.content.decode()

        result = client.post(f"/app/acme/providers/{provider.pk}/sync/", **HTMX).content.decode()
        text = re.sub(r"<[^>]+>", "", result)
        assert "3 added, 0 updated, 0 stale" in text and 'hx-swap-oob="innerHTML"' in result
        fake.models = ["gpt-4o", "o3"]
        again = client.post(f"/app/acme/providers/{provider.pk}/sync/", **HTMX).content.decode()
        text = re.sub(r"<[^>]+>", "", again)
        assert "1 added, 0 updated, 2 stale" in text

        fake.set_fault("status", status=401, path="/v1/models")
        failed = client.post(f"/app/acme/providers/{provider.pk}/sync/", **HTMX).content.decode()
        assert "Sync failed" in failed and "sk-fake-key-0001" not in failed
        provider.refresh_from_db()
        assert provider.sync_status == "error" and provider.last_sync_error


def test_a_new_base_url_in_the_console_needs_the_key_again(console, login):
    client = login(console.world.admin)
    url = f"/app/acme/providers/{console.own.pk}/"
    elsewhere = "http://127.0.0.2:9/v1"
    response = client.post(url, provider_data(base_url=elsewhere))
    assert response.status_code == 400
    assert "send api_key again" in error_next_to(response.content.decode(), "api_key")
    assert Provider.objects.get(pk=console.own.pk).base_url == LAB_URL
    response = client.post(url, provider_data(base_url=elsewhere, api_key="sk-again-0002"))
    assert response.status_code == 302
    provider = Provider.objects.get(pk=console.own.pk)
    assert (provider.base_url, provider.api_key) == (elsewhere, "sk-again-0002")


def test_connection_test_sends_the_saved_key_only_to_the_saved_url(console, login):
    client = login(console.world.admin)
    with FakeOpenAI(models=["m"], api_key="sk-fake-key-0001") as fake, \
            FakeOpenAI(models=["x"]) as elsewhere:
        client.post("/app/acme/providers/new/", provider_data(name="fake", base_url=fake.base_url,
                                                               api_key="sk-fake-key-0001"))
        provider = Provider.objects.get(owner=console.tenant, name="fake")
        test_url = f"/app/acme/providers/{provider.pk}/test/"
        # A typed URL other than the saved one, with no key typed: refused, nothing is sent
        refused = client.post(test_url, {"base_url": elsewhere.base_url}, **HTMX).content.decode()
        assert "type the key again" in html_lib.unescape(refused) and "Reachable" not in refused
        assert elsewhere.requests == []
        # The saved URL uses the saved key
        saved = client.post(test_url, {"base_url": fake.base_url}, **HTMX).content.decode()
        assert "Reachable" in saved
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-fake-key-0001"
        # Another URL with a typed key is tested with that key
        typed = client.post(test_url, {"base_url": elsewhere.base_url, "api_key": "sk-typed-0003"},
                            **HTMX).content.decode()
        assert "Reachable" in typed
        sent = [r.headers.get("authorization") for r in elsewhere.requests]
        assert sent == ["Bearer sk-typed-0003"]


def test_platform_providers_show_tenants_name_type_and_models_only(console, login):
    Provider.objects.filter(pk=console.platform.pk).update(
        sync_status="error", last_sync_error="upstream 10.9.8.7 refused")
    client = login(console.world.owner)
    for url in ("/app/acme/providers/", f"/app/acme/providers/{console.platform.pk}/"):
        page = client.get(url).content.decode()
        assert "api.openai.com" not in page and "10.9.8.7" not in page, url
        assert "openai" in page and "OpenAI" in page
    listing = client.get("/app/acme/providers/").content.decode()
    assert LAB_URL in listing  # their own provider's URL is theirs to see


# --- models -------------------------------------------------------------------------------------------


def test_models_table_search_filters_prices_and_toggles(console, login):
    client = login(console.world.admin)
    page = client.get("/app/acme/models/").content.decode()
    assert "gpt-4o-mini" in page and "meta-llama/llama-3.1-8b:free" in page
    mini_row = page[page.index('id="model-' + str(console.mini.pk) + '"'):][:2500]
    assert "unknown" in mini_row and "Enable" in mini_row
    assert "$2.50" in page and "$10.00" in page
    gpt_row = page[page.index(f'id="model-{console.gpt.pk}"'):][:2500]
    assert "write" not in gpt_row  # no cache-write price: writes cost the input price
    ProviderModel.objects.filter(pk=console.gpt.pk).update(cache_write_price=Decimal("3.125"))
    page = client.get("/app/acme/models/").content.decode()
    assert "write $3.125" in page[page.index(f'id="model-{console.gpt.pk}"'):][:2500]
    assert "gpt-4o-mini" not in client.get("/app/acme/models/?q=llama").content.decode()
    tools = client.get("/app/acme/models/?tools=on").content.decode()
    assert "gpt-4o</span>" in tools and "llama" not in tools and "gpt-4o-mini" not in tools
    assert "llama" in client.get("/app/acme/models/?provider=lab").content.decode()
    assert "gpt-4o-mini" not in client.get("/app/acme/models/?enabled=on").content.decode()

    row = client.post(f"/app/acme/models/{console.platform.pk}/toggle/gpt-4o-mini", {"enabled": "1"}, **HTMX)
    assert row.status_code == 200 and "Disable" in row.content.decode() and "<html" not in row.content.decode()
    assert TenantModel.objects.get(tenant=console.tenant, provider_model=console.mini).enabled
    # a model id with "/" and ":" of the tenant's own provider switches the model itself
    client.post(f"/app/acme/models/{console.own.pk}/toggle/meta-llama/llama-3.1-8b:free", {"enabled": "0"})
    console.llama.refresh_from_db()
    assert console.llama.enabled is False
    # a platform model's switch is the tenant's own choice: other tenants are not affected
    console.gpt.refresh_from_db()
    assert console.gpt.enabled


# --- aliases ------------------------------------------------------------------------------------------


def test_alias_targets_follow_the_chosen_order_with_overrides(console, login):
    client = login(console.world.admin)
    data = alias_form("ordered", "openai:gpt-4o")
    data.update({"targets-TOTAL_FORMS": "2", "targets-0-ORDER": "2",
                 "targets-1-model": "lab:meta-llama/llama-3.1-8b:free",
                 "targets-1-ORDER": "1", "targets-1-temperature": "0.4", "targets-1-max_tokens": "200"})
    assert client.post("/app/acme/aliases/new/", data).status_code == 302
    alias = ModelAlias.objects.get(tenant=console.tenant, name="ordered")
    targets = list(alias.targets.order_by("position").select_related("provider_model"))
    assert [t.provider_model.model_id for t in targets] == ["meta-llama/llama-3.1-8b:free", "gpt-4o"]
    assert targets[0].overrides == {"temperature": 0.4, "max_tokens": 200} and targets[1].overrides == {}
    # the edit page lists them in that order; removing one keeps the other
    edit = client.get(f"/app/acme/aliases/{alias.pk}/").content.decode()
    assert edit.index("lab:meta-llama/llama-3.1-8b:free\" selected") < edit.index("openai:gpt-4o\" selected")
    data = alias_form("ordered", "openai:gpt-4o")
    data.update({"targets-TOTAL_FORMS": "2", "targets-INITIAL_FORMS": "2",
                 "targets-1-model": "lab:meta-llama/llama-3.1-8b:free",
                 "targets-1-ORDER": "2", "targets-1-DELETE": "on", "cooldown_seconds": "30"})
    assert client.post(f"/app/acme/aliases/{alias.pk}/", data).status_code == 302
    alias.refresh_from_db()
    assert alias.cooldown_seconds == 30 and alias.targets.count() == 1


def test_alias_form_errors(console, login):
    client = login(console.world.admin)
    response = client.post("/app/acme/aliases/new/", alias_form("bad:name", "openai:gpt-4o"))
    assert response.status_code == 400 and "no ':'" in error_next_to(response.content.decode(), "name")
    empty = alias_form("empty", "")  # an untouched row (its order is pre-filled)
    response = client.post("/app/acme/aliases/new/", empty)
    assert response.status_code == 400 and "at least one deployment" in response.content.decode()
    hot = alias_form("hot", "openai:gpt-4o")
    hot["targets-0-temperature"] = "5"
    response = client.post("/app/acme/aliases/new/", hot)
    assert response.status_code == 400 and "less than or equal to 2" in response.content.decode()
    response = client.post("/app/acme/aliases/new/", alias_form("smart-cheap", "openai:gpt-4o"))
    assert response.status_code == 400
    assert "already has an alias named" in error_next_to(response.content.decode(), "name")
    response = client.post("/app/acme/aliases/new/", alias_form("nope", "openai:gpt-4o-mini"))  # not enabled
    assert response.status_code == 400 and "valid choice" in response.content.decode()
    assert set(ModelAlias.objects.filter(tenant=console.tenant).values_list("name", flat=True)) == {"smart-cheap"}


# --- budgets -------------------------------------------------------------------------------------------


def test_budget_errors_from_the_form_and_the_service_are_shown_next_to_the_field(console, login):
    client = login(console.world.admin)
    response = client.post("/app/acme/budgets/new/", {**budget_form("B", "5"), "thresholds": "50, lots"})
    assert response.status_code == 400
    assert "not a whole percent" in error_next_to(response.content.decode(), "thresholds")
    response = client.post("/app/acme/budgets/new/", {**budget_form("B", "5"), "thresholds": "50, 50"})
    assert response.status_code == 400 and "repeats 50" in error_next_to(response.content.decode(), "thresholds")
    response = client.post("/app/acme/budgets/new/", {**budget_form("B", "5"), "action": "downgrade"})
    assert response.status_code == 400
    assert "downgrade_alias is required" in error_next_to(response.content.decode(), "downgrade_alias")
    response = client.post("/app/acme/budgets/new/", {**budget_form("B", "5"), "scope": "key"})
    assert response.status_code == 400
    assert "api_key is required" in error_next_to(response.content.decode(), "api_key")
    response = client.post("/app/acme/budgets/new/", budget_form("B", "0"))
    assert response.status_code == 400 and error_next_to(response.content.decode(), "amount")
    assert Budget.objects.filter(tenant=console.tenant).count() == 1


def test_budget_for_a_key_with_a_write_only_webhook(console, login, settings):
    client = login(console.world.admin)
    data = {**budget_form("Bot", "2.5"), "scope": "key", "api_key": str(console.chat_key.pk), "period": "day",
            "action": "downgrade", "downgrade_alias": "smart-cheap",
            "webhook_url": "https://hooks.example.com/services/T000/B000/secretpart"}
    assert client.post("/app/acme/budgets/new/", data).status_code == 302
    budget = Budget.objects.get(tenant=console.tenant, name="Bot")
    assert (budget.api_key_id, budget.amount, budget.action) == (console.chat_key.pk, Decimal("2.5"), "downgrade")
    page = client.get(f"/app/acme/budgets/{budget.pk}/").content.decode()
    assert "secretpart" not in page and "https://hooks.example.com/…part" in page
    # saving without a URL keeps it; "remove" clears it
    data.pop("webhook_url")
    client.post(f"/app/acme/budgets/{budget.pk}/", {**data, "amount": "3"})
    budget.refresh_from_db()
    assert budget.amount == Decimal("3") and budget.webhook_url.endswith("secretpart")
    client.post(f"/app/acme/budgets/{budget.pk}/", {**data, "clear_webhook": "on"})
    budget.refresh_from_db()
    assert budget.webhook_url == ""


def test_budget_pages_show_status_bars_and_alert_history(console, login):
    from billing.models import BudgetAlert

    write_usage(console, days=1)
    BudgetAlert.objects.create(tenant=console.tenant, budget=console.budget,
                               period_start=console.budget.created_at.date(), threshold=50, spent=Decimal("5.1"),
                               limit=Decimal("10"))
    client = login(console.world.viewer)
    page = client.get("/app/acme/budgets/").content.decode()
    assert 'role="progressbar"' in page and "50%" in page and "Monthly" in page
    assert "$5.1000" in page and "50 %" in page  # the alert row
    assert "$0.0375 of $10.00" in page  # 3 priced requests × $0.0125 today


# --- usage explorer ---------------------------------------------------------------------------------


def test_usage_explorer_totals_breakdowns_and_unknown_costs(console, login):
    write_usage(console, days=3, per_day=4)
    client = login(console.world.viewer)
    page = client.get("/app/acme/usage/").content.decode()
    assert "$0.1125" in page  # 9 priced requests × $0.0125
    assert "3 requests of unknown cost" in page
    assert "openai:gpt-4o" in page and "token-chart-data" in page
    assert '<span class="unknown">unknown</span>' in page  # a recent row whose price is unknown
    by_key = client.get("/app/acme/usage/?by=key").content.decode()
    assert "default chat key" in by_key and console.chat_key.prefix in by_key
    by_conversation = client.get("/app/acme/usage/?by=conversation&view=month").content.decode()
    assert "conv-0" in by_conversation and "conv-1" in by_conversation
    only_errors = client.get("/app/acme/usage/?status=error").content.decode()
    assert "3 failed (100.0 %)" in only_errors


def test_usage_explorer_filters_and_breaks_down_by_api(console, login):
    write_usage(console, days=1, per_day=4)
    UsageLog.objects.filter(request_id__endswith=f"_0_{console.tenant.pk}").update(api="messages")
    client = login(console.world.viewer)
    page = client.get("/app/acme/usage/").content.decode()
    assert 'name="api" value="messages"' in page  # the filter is offered
    by_api = client.get("/app/acme/usage/?by=api").content.decode()
    assert ">messages<" in by_api and ">chat<" in by_api
    only = client.get("/app/acme/usage/?api=messages").content.decode()
    assert "$0.0125" in only and "0 failed (0.0 %)" in only  # one priced, ok request of the four
    response = client.get("/app/acme/usage/?api=completions")
    errors = re.search(r'<ul class="errorlist" id="id_api_error">(.*?)</ul>', response.content.decode(), re.S)
    assert response.status_code == 400 and errors and "valid choice" in errors.group(1)


def test_usage_explorer_filters_and_breaks_down_by_project(console, login):
    write_usage(console, days=1, per_day=4)
    bot = Project.objects.create(tenant=console.tenant, slug="bot", name="Support bot")
    UsageLog.objects.filter(tenant=console.tenant).update(project_id=console.chat_key.project_id)
    UsageLog.objects.filter(request_id__endswith=f"_1_{console.tenant.pk}").update(project_id=bot.pk)
    client = login(console.world.viewer)
    page = client.get("/app/acme/usage/").content.decode()
    assert f'<option value="{bot.pk}">Support bot (bot)</option>' in page  # the filter is offered
    by_project = client.get("/app/acme/usage/?by=project").content.decode()
    assert ">bot<" in by_project and ">default<" in by_project
    only = client.get(f"/app/acme/usage/?project={bot.pk}").content.decode()
    assert "$0.0125" in only and "0 failed (0.0 %)" in only  # the one priced, ok request of bot
    theirs = Project.objects.get(tenant=console.world.other, slug="default")
    response = client.get(f"/app/acme/usage/?project={theirs.pk}")
    assert response.status_code == 400 and "valid choice" in error_next_to(response.content.decode(), "project")


def test_usage_filter_errors_are_shown_next_to_the_field(console, login):
    client = login(console.world.viewer)
    response = client.get("/app/acme/usage/?since=2025-02-10&until=2025-02-01")
    assert response.status_code == 400
    assert "must come before until" in error_next_to(response.content.decode(), "since")
    response = client.get("/app/acme/usage/?since=yesterday")
    assert response.status_code == 400 and "valid date" in error_next_to(response.content.decode(), "since")
    response = client.get(f"/app/acme/usage/?key={console.other_key.pk}")
    assert response.status_code == 400 and "valid choice" in error_next_to(response.content.decode(), "key")


def test_usage_csv_export_follows_the_filters(console, login):
    write_usage(console, days=2, per_day=4)
    response = login(console.world.viewer).get("/app/acme/usage/export.csv?status=error")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="usage-acme-')
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0].startswith("request_id,created_at") and len(lines) == 1 + 2
