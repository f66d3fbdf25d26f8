"""A tenant's configuration as one file: export, apply (through the services, in one transaction),
idempotence, prune, dry runs, env references, schema errors that name their path, and the other
tenant's names, through manage.py."""

from decimal import Decimal
from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from billing.limit_services import limit_rule_create
from billing.models import Budget, LimitRule
from billing.services import budget_create
from providers.catalog import CatalogEntry
from providers.models import AliasTarget, ModelAlias, PriceSource, Provider, ProviderModel
from providers.services import (
    alias_create,
    provider_create,
    provider_model_set_enabled,
    provider_model_set_price,
    provider_models_upsert,
)
from tenantconfig.document import config_export
from tenantconfig.schema import ConfigInvalid, document_errors
from tenantconfig.services import config_apply
from tenants.access import SYSTEM
from tenants.models import ApiKey, AuditEvent, Project
from tenants.services import (
    api_key_create,
    api_key_revoke,
    project_create,
    project_update,
    tenant_create,
    tenant_update,
)

pytestmark = pytest.mark.django_db


def configured(tenant, *, key="sk-live-1234"):
    """A tenant with two providers (one with a manual price and a disabled model), an alias with two
    deployments and fallbacks, a downgrade budget, a key-scoped budget and key limits, a project
    with its own limits, budgets of the project, of its end users and of one model, and limit
    rules in every scope."""
    tenant_update(tenant=tenant, actor=SYSTEM, changes={"temperature": 0.4, "requests_per_minute": 120,
                                                         "tokens_per_minute": 90_000,
                                                         "cache_enabled": True, "cache_ttl_seconds": 600,
                                                         "timezone": "Europe/Berlin"})
    up = provider_create(owner=tenant, data={"name": "up", "provider_type": "openai_compatible",
                                             "base_url": "https://llm.example.com/v1", "api_key": key,
                                             "extra_headers": {"X-Team": "blue"}, "priority": 5})
    provider_models_upsert(provider=up, catalog=[CatalogEntry("m1"), CatalogEntry("m2"), CatalogEntry("m3")])
    provider_model_set_price(provider_model=ProviderModel.objects.get(provider=up, model_id="m1"), tenant=tenant,
                             prices={"input": Decimal("2.5"), "output": Decimal("10")}, actor=SYSTEM)
    provider_model_set_enabled(provider_model=ProviderModel.objects.get(provider=up, model_id="m3"), tenant=tenant,
                               enabled=False, actor=SYSTEM)
    anth = provider_create(owner=tenant, data={"name": "anth", "provider_type": "anthropic"})
    provider_models_upsert(provider=anth, catalog=[CatalogEntry("claude-x")])
    alias_create(tenant=tenant, actor=SYSTEM, data={"name": "cheap", "targets": [{"model": "up:m2"}]})
    alias_create(tenant=tenant, actor=SYSTEM, data={
        "name": "smart", "strategy": "usage", "retries": 2, "timeout_seconds": 30,
        "context_window_fallbacks": ["cheap"],
        "targets": [{"model": "up:m1", "priority": 0, "weight": 3, "rpm_limit": 100},
                    {"model": "anth:claude-x", "priority": 0, "overrides": {"temperature": 0.2}}]})
    budget_create(tenant=tenant, actor=SYSTEM, data={"name": "Monthly", "amount": Decimal("100"),
                                                     "action": "downgrade", "downgrade_alias": "cheap"})
    key = ApiKey.objects.get(tenant=tenant, name="default chat key")
    budget_create(tenant=tenant, actor=SYSTEM, data={"name": "Chat key", "amount": Decimal("5.5"), "api_key": key.pk,
                                                     "period": "day", "action": "block"})
    ApiKey.objects.filter(pk=key.pk).update(requests_per_minute=30, tokens_per_minute=4000, allowed_models=["smart"])
    project_create(tenant=tenant, slug="support", name="Support", tokens_per_minute=20_000, actor=SYSTEM)
    budget_create(tenant=tenant, actor=SYSTEM, data={"name": "Support", "project": "support", "amount": "50"})
    budget_create(tenant=tenant, actor=SYSTEM, data={"name": "Each support user", "scope": "end_user",
                                                     "project": "support", "amount": "2", "period": "day",
                                                     "action": "block"})
    budget_create(tenant=tenant, actor=SYSTEM, data={"name": "Smart", "model": "smart", "amount": "20"})
    limit_rule_create(tenant=tenant, actor=SYSTEM, data={"model": "up:m1", "tokens_per_minute": 100_000})
    limit_rule_create(tenant=tenant, actor=SYSTEM, data={"scope": "end_user", "project": "support",
                                                         "requests_per_minute": 30, "tokens_per_day": 50_000})
    limit_rule_create(tenant=tenant, actor=SYSTEM, data={"scope": "end_user", "requests_per_minute": 60,
                                                         "enabled": False})
    limit_rule_create(tenant=tenant, actor=SYSTEM, data={"api_key": key.pk, "model": "smart",
                                                         "tokens_per_day": 1_000_000})
    limit_rule_create(tenant=tenant, actor=SYSTEM, data={"project": "support", "model": "cheap",
                                                         "requests_per_minute": 10})


def export_yaml(slug: str) -> str:
    out = StringIO()
    call_command("tenant_config", "export", slug, stdout=out)
    return out.getvalue()


def apply(path, *args) -> str:
    out = StringIO()
    call_command("tenant_config", "apply", str(path), *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("UP_API_KEY", "sk-live-1234")
    monkeypatch.setenv("UP_HEADER_X_TEAM", "blue")
    return monkeypatch


def test_export_holds_everything_but_secrets(world):
    configured(world.tenant)
    text = export_yaml("acme")
    assert "sk-live-1234" not in text and "blue" not in text
    doc = yaml.safe_load(text)
    up = next(p for p in doc["providers"] if p["name"] == "up")
    assert up["api_key"] == "env:UP_API_KEY" and up["extra_headers"] == {"X-Team": "env:UP_HEADER_X_TEAM"}
    assert up["models"] == [{"id": "m1", "input_price": "2.5", "output_price": "10"}, {"id": "m3", "enabled": False}]
    smart = next(a for a in doc["aliases"] if a["name"] == "smart")
    assert smart["strategy"] == "usage" and smart["context_window_fallbacks"] == ["cheap"]
    assert smart["deployments"] == [{"model": "up:m1", "priority": 0, "weight": 3, "rpm_limit": 100},
                                    {"model": "anth:claude-x", "priority": 0, "weight": 1,
                                     "overrides": {"temperature": 0.2}}]
    assert {b["name"]: b.get("key") for b in doc["budgets"]} == {
        "Chat key": "default chat key", "Monthly": None, "Support": None, "Each support user": None, "Smart": None}
    budgets = {b["name"]: b for b in doc["budgets"]}
    assert budgets["Support"] == {"name": "Support", "scope": "project", "project": "support", "amount": "50.00",
                                  "period": "month", "thresholds": [50, 80, 100], "action": "alert", "enabled": True}
    assert (budgets["Each support user"]["scope"], budgets["Each support user"]["project"]) == ("end_user", "support")
    assert budgets["Smart"]["model"] == "smart" and "project" not in budgets["Smart"]
    assert doc["limits"] == [
        {"scope": "end_user", "requests_per_minute": 60, "enabled": False},
        {"scope": "end_user", "project": "support", "requests_per_minute": 30, "tokens_per_day": 50_000,
         "enabled": True},
        {"scope": "key", "key": "default chat key", "model": "smart", "tokens_per_day": 1_000_000, "enabled": True},
        {"scope": "project", "project": "support", "model": "cheap", "requests_per_minute": 10, "enabled": True},
        {"scope": "tenant", "model": "up:m1", "tokens_per_minute": 100_000, "enabled": True},
    ]
    assert doc["keys"] == [{"name": "default chat key", "allowed_models": ["smart"], "requests_per_minute": 30,
                            "tokens_per_minute": 4000}]
    assert doc["settings"]["cache"] == {"enabled": True, "ttl_seconds": 600}
    assert doc["settings"]["tokens_per_minute"] == 90_000
    assert doc["projects"] == [{"slug": "default", "name": "Default"},
                               {"slug": "support", "name": "Support", "tokens_per_minute": 20_000}]
    assert document_errors(doc) == []


def test_round_trip_onto_an_empty_tenant_and_a_second_apply_changes_nothing(world, env, tmp_path):
    configured(world.tenant)
    # a project with its own aliases: one shadowing the tenant-wide "cheap", one falling back to it,
    # and the project's default model naming its own alias
    bot = project_create(tenant=world.tenant, slug="bot", name="Bot", actor=SYSTEM)
    alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "cheap", "project": bot,
                                                          "targets": [{"model": "up:m1"}]})
    alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "bot-only", "project": bot,
                                                          "context_window_fallbacks": ["cheap", "smart"],
                                                          "targets": [{"model": "anth:claude-x"}]})
    project_update(project=bot, changes={"default_model": "bot-only"}, actor=SYSTEM)
    first = export_yaml("acme")
    exported = yaml.safe_load(first)
    assert [(a["name"], a.get("project")) for a in exported["aliases"]] == [
        ("cheap", None), ("smart", None), ("bot-only", "bot"), ("cheap", "bot")]
    assert {"slug": "bot", "name": "Bot", "default_model": "bot-only"} in exported["projects"]
    fresh = tenant_create(slug="fresh", name="Fresh").tenant
    ApiKey.objects.filter(tenant=fresh, name="default chat key")  # the key the budget names exists there too
    path = tmp_path / "acme.yaml"
    path.write_text(first)
    out = apply(path, "--tenant", "fresh")
    assert "Applied to tenant 'fresh'" in out
    assert "+ create alias smart" in out and "+ create provider up" in out
    assert "+ create alias bot/cheap" in out and "+ create project bot" in out
    fresh_bot = Project.objects.get(tenant=fresh, slug="bot")
    assert fresh_bot.default_model == "bot-only"
    assert ModelAlias.objects.get(tenant=fresh, project=fresh_bot, name="cheap").targets.get().provider_model.model_id \
        == "m1"
    again = yaml.safe_load(export_yaml("fresh"))
    before = yaml.safe_load(first)
    before["tenant"]["slug"] = "fresh"
    assert again == before
    # secrets came from the environment, encrypted like any key
    up = Provider.objects.get(owner=fresh, name="up")
    assert up.api_key == "sk-live-1234" and up.extra_headers == {"X-Team": "blue"}
    assert ProviderModel.objects.get(provider=up, model_id="m1").price_source == PriceSource.MANUAL
    # a second apply: no changes, no audit event
    events = AuditEvent.objects.filter(tenant=fresh).count()
    assert apply(path, "--tenant", "fresh").startswith("No changes: tenant 'fresh' already matches")
    assert AuditEvent.objects.filter(tenant=fresh).count() == events
    assert AuditEvent.objects.filter(tenant=fresh, action="config.apply").count() == 1


def test_apply_changes_fields_and_dry_run_prints_before_and_after_but_changes_nothing(world, env, tmp_path):
    configured(world.tenant)
    doc = yaml.safe_load(export_yaml("acme"))
    smart = next(a for a in doc["aliases"] if a["name"] == "smart")
    smart["retries"] = 4
    smart["deployments"][0]["weight"] = 7
    doc["settings"]["temperature"] = 0.9
    next(b for b in doc["budgets"] if b["name"] == "Monthly")["amount"] = "250.00"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = apply(path, "--dry-run")
    assert "~ change alias smart: retries 2 → 4; deployments" in out
    assert "~ change settings acme: temperature 0.4 → 0.9" in out
    assert "~ change budget Monthly: amount '100.00' → '250.00'" in out
    assert "Dry run: nothing was changed." in out
    assert ModelAlias.objects.get(tenant=world.tenant, name="smart").retries == 2
    assert not AuditEvent.objects.filter(action="config.apply").exists()
    apply(path)
    assert ModelAlias.objects.get(tenant=world.tenant, name="smart").retries == 4
    assert AliasTarget.objects.get(alias__name="smart", position=0).weight == 7
    assert Budget.objects.get(tenant=world.tenant, name="Monthly").amount == Decimal("250")
    event = AuditEvent.objects.get(action="config.apply")
    assert event.after["summary"] == {"create": 0, "change": 3, "delete": 0}
    assert AuditEvent.objects.filter(action="alias.update", target="alias:smart").exists()  # the services' own


def test_prune_deletes_what_the_file_does_not_name(world, env, tmp_path):
    configured(world.tenant)
    doc = yaml.safe_load(export_yaml("acme"))
    doc["aliases"] = [a for a in doc["aliases"] if a["name"] == "cheap"]
    doc["budgets"] = [b for b in doc["budgets"] if b["name"] == "Monthly"]
    doc["providers"] = [p for p in doc["providers"] if p["name"] == "up"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert "No changes" in apply(path)  # without --prune nothing is deleted
    out = apply(path, "--prune", "--dry-run")
    assert "- delete alias smart" in out and "- delete budget Chat key" in out and "- delete provider anth" in out
    assert Provider.objects.filter(owner=world.tenant, name="anth").exists()
    apply(path, "--prune")
    assert list(ModelAlias.objects.filter(tenant=world.tenant).values_list("name", flat=True)) == ["cheap"]
    assert not Provider.objects.filter(owner=world.tenant, name="anth").exists()
    assert list(Budget.objects.filter(tenant=world.tenant).values_list("name", flat=True)) == ["Monthly"]
    assert "No changes" in apply(path, "--prune")


def test_env_references_missing_variable_is_an_error_naming_it(world, tmp_path, monkeypatch):
    doc = {"version": 1, "providers": [{"name": "up", "type": "openai", "api_key": "env:TG_TEST_MISSING_KEY"}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.delenv("TG_TEST_MISSING_KEY", raising=False)
    with pytest.raises(CommandError, match=r"providers\[0\]\.api_key: environment variable TG_TEST_MISSING_KEY is "
                                           "not set"):
        apply(path, "--tenant", "acme")
    assert not Provider.objects.filter(owner=world.tenant).exists()
    monkeypatch.setenv("TG_TEST_MISSING_KEY", "sk-from-env")
    out = apply(path, "--tenant", "acme")
    assert "api_key (from env TG_TEST_MISSING_KEY)" in out and "sk-from-env" not in out
    assert Provider.objects.get(owner=world.tenant, name="up").api_key == "sk-from-env"
    # an omitted key keeps the saved one; a literal one replaces it
    doc["providers"][0].pop("api_key")
    path.write_text(yaml.safe_dump(doc))
    assert "No changes" in apply(path, "--tenant", "acme")
    doc["providers"][0]["api_key"] = "sk-literal"
    path.write_text(yaml.safe_dump(doc))
    assert "api_key (set) → (new value)" in apply(path, "--tenant", "acme")
    assert Provider.objects.get(owner=world.tenant, name="up").api_key == "sk-literal"


def test_schema_errors_name_their_path(world):
    doc = {"version": 1, "aliases": [
        {"name": "a", "deployments": [{"model": "x:y"}]},
        {"name": "b", "deployments": [{"model": "x:y"}]},
        {"name": "c", "deployments": [{"model": "x:y", "weight": -1}], "strategy": "fastest", "colour": "red"},
    ], "budgets": [{"name": "B", "amount": 12.5}], "providers": [{"name": "Bad:Name"}], "projects": [{"name": "p"}]}
    errors = document_errors(doc)
    assert "aliases[2].deployments[0].weight: must be ≥ 0" in errors
    assert any(e.startswith("aliases[2].strategy: must be one of: weighted, least-busy") for e in errors)
    assert any(e.startswith("aliases[2].colour: is not a known field here") for e in errors)
    assert any(e.startswith("budgets[0].amount: must be a decimal string of USD") for e in errors)
    assert any(e.startswith("providers[0].name: must be 1-64 lowercase letters") for e in errors)
    assert any(e.startswith("projects[0].slug: is required") for e in errors)
    assert document_errors({"aliases": []}) == ["version: is required"]
    with pytest.raises(ConfigInvalid) as caught:
        config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert "aliases[2].deployments[0].weight: must be ≥ 0" in caught.value.errors


def test_service_errors_name_their_path_and_nothing_is_written(world, env):
    doc = {"version": 1,
           "providers": [{"name": "up", "type": "openai", "api_key": "env:UP_API_KEY"}],
           "aliases": [{"name": "ok", "deployments": [{"model": "up:gpt-4o"}]},
                       {"name": "bad", "deployments": [{"model": "up:gpt-4o"}, {"model": "nowhere:m"}]}]}
    with pytest.raises(ConfigInvalid) as caught:
        config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert caught.value.errors[0].startswith("aliases[1].deployments[1].model: deployments[1].model 'nowhere:m' is "
                                             "not a model this tenant may use")
    assert not Provider.objects.filter(owner=world.tenant).exists()  # one transaction: the provider went too
    assert not AuditEvent.objects.filter(tenant=world.tenant, action__startswith="provider").exists()


def test_another_tenants_names_are_refused_and_never_exported(world, env, tmp_path):
    configured(world.other, key="sk-other-9999")
    doc = yaml.safe_load(export_yaml("acme"))
    assert doc["providers"] == [] and doc["aliases"] == [] and doc["budgets"] == []
    # an alias on the other tenant's provider, a budget on its key: refused like unknown names
    bad = {"version": 1, "aliases": [{"name": "steal", "deployments": [{"model": "up:m1"}]}]}
    with pytest.raises(ConfigInvalid, match=r"aliases\[0\]\.deployments\[0\]\.model: .*'up:m1' is not a model this "
                                            "tenant may use"):
        config_apply(tenant=world.tenant, document=bad, actor=SYSTEM)
    other_key = ApiKey.objects.filter(tenant=world.other, name="default chat key").first()
    ApiKey.objects.filter(pk=other_key.pk).update(name="their key")
    bad = {"version": 1, "budgets": [{"name": "B", "amount": "5", "key": "their key"}],
           "keys": [{"name": "their key", "requests_per_minute": 1}]}
    with pytest.raises(ConfigInvalid) as caught:
        config_apply(tenant=world.tenant, document=bad, actor=SYSTEM)
    assert caught.value.errors == [
        "budgets[0].key: tenant 'acme' has no active API key named 'their key' (a configuration file never creates "
        "keys: create it with POST /api/keys, then apply again).",
        "keys[0].name: tenant 'acme' has no active API key named 'their key' (a configuration file never creates "
        "keys: create it with POST /api/keys, then apply again).",
    ]
    # a file naming the other tenant is not applied to it by accident
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "tenant": {"slug": "other"}, "settings": {"temperature": 1.0}}))
    apply(path)  # its own slug: applied to 'other'
    world.other.refresh_from_db()
    assert world.other.temperature == 1.0


def test_platform_models_and_key_limits(world):
    platform = provider_create(owner=None, data={"name": "plat", "provider_type": "openai"})
    provider_models_upsert(provider=platform, catalog=[CatalogEntry("gpt-4o"), CatalogEntry("gpt-4o-mini")])
    doc = {"version": 1, "platform_models": [{"model": "plat:gpt-4o"}],
           "keys": [{"name": "default chat key", "allowed_models": ["plat:gpt-4o"], "tokens_per_day": 1000}]}
    plan = config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert [c.line() for c in plan.changes] == [
        "~ change platform_model plat:gpt-4o: enabled false → true",
        "~ change key default chat key: allowed_models [] → [\"plat:gpt-4o\"]; tokens_per_day null → 1000",
    ]
    exported = config_export(tenant=world.tenant)
    assert exported["platform_models"] == [{"model": "plat:gpt-4o", "enabled": True}]
    assert config_apply(tenant=world.tenant, document=doc, actor=SYSTEM).changes == []
    doc["platform_models"] = []
    assert [c.line() for c in config_apply(tenant=world.tenant, document=doc, actor=SYSTEM).changes] == [
        "~ change platform_model plat:gpt-4o: enabled true → false"]
    with pytest.raises(ConfigInvalid, match=r"platform_models\[0\]\.model: 'plat:nope' is not a model"):
        config_apply(tenant=world.tenant, document={"version": 1, "platform_models": [{"model": "plat:nope"}]},
                     actor=SYSTEM)


def test_names_given_twice_are_refused_by_path(world):
    doc = {"version": 1, "aliases": [{"name": "a", "deployments": [{"model": "x:y"}]},
                                     {"name": "a", "deployments": [{"model": "x:z"}]}],
           "providers": [{"name": "p", "type": "openai", "models": [{"id": "m"}, {"id": "m", "enabled": False}]}]}
    with pytest.raises(ConfigInvalid) as caught:
        config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert caught.value.errors == ["aliases[1].name: 'a' is already aliases[0]",
                                   "providers[0].models[1].id: 'm' is listed twice"]


def test_an_option_the_file_drops_is_dropped(world):
    provider_create(owner=world.tenant, data={"name": "g", "preset": "groq"})
    doc = {"version": 1, "providers": [{"name": "g", "type": "openai_compatible",
                                        "base_url": "https://api.groq.com/openai/v1", "display_name": "Groq"}]}
    plan = config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert [c.line() for c in plan.changes] == ["~ change provider g: options {\"preset\": \"groq\"} → {}"]
    assert Provider.objects.get(owner=world.tenant, name="g").options == {}
    assert config_apply(tenant=world.tenant, document=doc, actor=SYSTEM).changes == []


def test_projects_are_created_changed_and_pruned_by_slug(world, tmp_path):
    configured(world.tenant)  # the alias "smart" a project's default model names, and project support
    support = {"slug": "support", "name": "Support", "tokens_per_minute": 20_000}
    doc = {"version": 1, "tenant": {"slug": "acme"}, "projects": [
        {"slug": "default", "name": "Default"},
        {"slug": "support-bot", "name": "Support bot", "default_model": "smart", "requests_per_minute": 60},
        {"slug": "research", "name": "Research"},
        support,
    ]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = apply(path)
    assert "+ create project support-bot" in out and "+ create project research" in out
    bot = Project.objects.get(tenant=world.tenant, slug="support-bot")
    assert (bot.name, bot.default_model, bot.requests_per_minute, bot.tokens_per_day) == (
        "Support bot", "smart", 60, None)
    assert yaml.safe_load(export_yaml("acme"))["projects"] == sorted(
        [{"slug": "default", "name": "Default"}, {"slug": "research", "name": "Research"}, support,
         {"slug": "support-bot", "name": "Support bot", "default_model": "smart", "requests_per_minute": 60}],
        key=lambda p: p["slug"])
    assert "No changes" in apply(path)
    created = AuditEvent.objects.filter(action="project.create", tenant=world.tenant)
    assert sorted(created.values_list("target", flat=True)) == ["project:default", "project:research",
                                                              "project:support", "project:support-bot"]
    # an entry is complete: the limit it leaves out goes back to none
    doc["projects"] = [doc["projects"][0], {"slug": "support-bot", "name": "Support bot", "tokens_per_day": 500_000},
                       support]
    path.write_text(yaml.safe_dump(doc))
    out = apply(path, "--prune", "--dry-run")
    assert "- delete project research" in out and "~ change project support-bot" in out
    assert "default" not in out.split("delete project", 1)[1].splitlines()[0]
    apply(path, "--prune")
    bot.refresh_from_db()
    assert (bot.default_model, bot.requests_per_minute, bot.tokens_per_day) == ("", None, 500_000)
    assert set(Project.objects.filter(tenant=world.tenant).values_list("slug", flat=True)) == {
        "default", "support-bot", "support"}


def test_pruning_a_project_with_active_keys_is_refused_by_path_and_nothing_is_written(world, tmp_path):
    bot = project_create(tenant=world.tenant, slug="bot", name="Bot", actor=SYSTEM)
    api_key_create(tenant=world.tenant, name="bot key", scope="chat", actor=SYSTEM, project=bot)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "tenant": {"slug": "acme"},
                                    "projects": [{"slug": "default", "name": "Default"},
                                                 {"slug": "new-one", "name": "New"}]}))
    with pytest.raises(CommandError) as caught:
        apply(path, "--prune")
    assert "bot key" in str(caught.value) and "projects" in str(caught.value)
    assert set(Project.objects.filter(tenant=world.tenant).values_list("slug", flat=True)) == {"default", "bot"}
    # (and the project the file would have created was rolled back with it)


def test_project_aliases_are_matched_by_project_and_name(world, env):
    """The same name may be tenant-wide and a project's (not twice in one project); an alias naming a
    project the tenant will not have is refused by path; moving an alias is a delete and a create."""
    configured(world.tenant)
    deployments = [{"model": "up:m1"}]
    twice = {"version": 1, "aliases": [{"name": "a", "project": "bot", "deployments": deployments},
                                       {"name": "a", "project": "bot", "deployments": deployments}]}
    with pytest.raises(ConfigInvalid, match=r"aliases\[1\]\.name: 'a' of project 'bot' is already aliases\[0\]"):
        config_apply(tenant=world.tenant, document=twice, actor=SYSTEM)
    unknown = {"version": 1, "aliases": [{"name": "a", "project": "nowhere", "deployments": deployments}]}
    with pytest.raises(ConfigInvalid, match=r"aliases\[0\]\.project: tenant 'acme' has no project 'nowhere'"):
        config_apply(tenant=world.tenant, document=unknown, actor=SYSTEM)

    world.tenant.refresh_from_db()
    doc = config_export(tenant=world.tenant)
    doc["projects"].append({"slug": "bot", "name": "Bot", "default_model": "cheap"})
    doc["aliases"].append({"name": "cheap", "project": "bot", "deployments": [{"model": "anth:claude-x"}]})
    plan = config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert {c.line().split(":")[0] for c in plan.changes} == {"+ create project bot", "+ create alias bot/cheap"}
    bot = Project.objects.get(tenant=world.tenant, slug="bot")
    assert bot.default_model == "cheap"
    assert sorted(ModelAlias.objects.filter(tenant=world.tenant, name="cheap").values_list("project", flat=True),
                  key=str) == sorted([None, bot.pk], key=str)
    assert config_apply(tenant=world.tenant, document=doc, actor=SYSTEM).changes == []

    # the project's alias becomes tenant-wide under another name; with prune the old one goes
    doc["aliases"][-1] = {"name": "bot-cheap", "deployments": [{"model": "anth:claude-x"}]}
    doc["projects"][-1]["default_model"] = "bot-cheap"
    lines = [c.line() for c in config_apply(tenant=world.tenant, document=doc, actor=SYSTEM, prune=True).changes]
    assert "- delete alias bot/cheap" in lines and any(line.startswith("+ create alias bot-cheap") for line in lines)
    assert not ModelAlias.objects.filter(project=bot).exists()
    bot.refresh_from_db()
    assert bot.default_model == "bot-cheap"


# --- budgets and limits in every scope -------------------------------------------------------------


def test_limit_rules_are_created_changed_and_pruned_by_scope_project_key_and_model(world):
    doc = {"version": 1, "projects": [{"slug": "default", "name": "Default"},
                                      {"slug": "support", "name": "Support", "tokens_per_minute": 500}],
           "limits": [
               {"scope": "end_user", "project": "support", "requests_per_minute": 30},
               {"key": "default chat key", "tokens_per_day": 1000},
               {"tokens_per_minute": 7000},
           ]}
    plan = config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert [c.line() for c in plan.changes] == [
        "+ create project support: name 'Support', tokens_per_minute 500",
        "+ create limit end_user project=support: requests_per_minute 30, enabled true",
        "+ create limit key key=default chat key: tokens_per_day 1000, enabled true",
        "+ create limit tenant: tokens_per_minute 7000, enabled true",
    ]
    rule = LimitRule.objects.get(tenant=world.tenant, scope="end_user")
    assert rule.project.slug == "support" and rule.requests_per_minute == 30
    assert AuditEvent.objects.filter(action="limit_rule.create", tenant=world.tenant).count() == 3
    assert config_apply(tenant=world.tenant, document=doc, actor=SYSTEM).changes == []

    # An entry is complete: a limit it leaves out is cleared; a rule it does not name is kept without prune.
    doc["limits"] = [{"scope": "end_user", "project": "support", "tokens_per_day": 99, "enabled": False},
                     {"tokens_per_minute": 7000}]
    plan = config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert [c.line() for c in plan.changes] == [
        "~ change limit end_user project=support: requests_per_minute 30 → null; tokens_per_day null → 99; "
        "enabled true → false"]
    rule.refresh_from_db()
    assert (rule.requests_per_minute, rule.tokens_per_day, rule.enabled) == (None, 99, False)
    plan = config_apply(tenant=world.tenant, document=doc, actor=SYSTEM, prune=True)
    assert [c.line() for c in plan.changes] == ["- delete limit key key=default chat key"]
    assert LimitRule.objects.filter(tenant=world.tenant).count() == 2


def test_budgets_name_projects_and_models_and_bad_ones_are_refused_by_path(world):
    doc = {"version": 1, "projects": [{"slug": "default", "name": "Default"}, {"slug": "bot", "name": "Bot"}],
           "budgets": [{"name": "Bot", "project": "bot", "amount": "10"},
                       {"name": "Bot users", "scope": "end_user", "project": "bot", "amount": "1", "period": "day"}]}
    plan = config_apply(tenant=world.tenant, document=doc, actor=SYSTEM)
    assert "+ create budget Bot: scope 'project', project 'bot', amount '10.00'" in plan.text()
    bot = Budget.objects.get(tenant=world.tenant, name="Bot")
    assert (bot.scope, bot.project.slug) == ("project", "bot")
    assert config_apply(tenant=world.tenant, document=doc, actor=SYSTEM).changes == []

    with pytest.raises(ConfigInvalid) as caught:
        config_apply(tenant=world.tenant, actor=SYSTEM, document={
            "version": 1, "budgets": [{"name": "x", "project": "nowhere", "amount": "1"}],
            "limits": [{"scope": "project", "project": "nowhere", "requests_per_minute": 1}]})
    assert caught.value.errors == [
        "budgets[0].project: tenant 'acme' has no project 'nowhere'; add it under projects:, or name one of the "
        "tenant's projects.",
        "limits[0].project: tenant 'acme' has no project 'nowhere'; add it under projects:, or name one of the "
        "tenant's projects."]
    with pytest.raises(ConfigInvalid, match=r"budgets\[0\]\.project: tenant 'acme' has no project 'bot' \(the file "
                                            r"prunes it\)"):
        config_apply(tenant=world.tenant, actor=SYSTEM, prune=True, document={
            "version": 1, "projects": [{"slug": "default", "name": "Default"}],
            "budgets": [{"name": "Bot", "project": "bot", "amount": "10"}]})
    with pytest.raises(ConfigInvalid, match=r"limits\[0\]\.model: model 'gpt-9' is not an alias or model"):
        config_apply(tenant=world.tenant, actor=SYSTEM, document={
            "version": 1, "limits": [{"model": "gpt-9", "requests_per_minute": 1}]})
    assert not LimitRule.objects.exists()
    assert Budget.objects.filter(tenant=world.tenant).count() == 2


def test_limit_entries_are_checked_by_the_schema_and_for_twins(world):
    errors = document_errors({"version": 1, "limits": [{"scope": "tenant"}, {"requests_per_minute": 0},
                                                       {"project": "x", "colour": "red", "tokens_per_day": 1}]})
    assert "limits[0]: needs at least one limit: requests_per_minute, tokens_per_minute or tokens_per_day" in errors
    assert "limits[1].requests_per_minute: must be ≥ 1" in errors
    assert any(e.startswith("limits[2].colour: is not a known field here") for e in errors)
    with pytest.raises(ConfigInvalid) as caught:
        config_apply(tenant=world.tenant, actor=SYSTEM, document={"version": 1, "limits": [
            {"scope": "end_user", "requests_per_minute": 1}, {"scope": "end_user", "tokens_per_day": 5}]})
    assert caught.value.errors == ["limits[1]: the same scope, project, key and model as limits[0] (one rule per "
                                   "target and model)"]


def test_a_rule_of_a_revoked_key_is_not_exported_and_does_not_stop_a_round_trip(world):
    key, _ = api_key_create(tenant=world.tenant, name="old", actor=SYSTEM)
    limit_rule_create(tenant=world.tenant, actor=SYSTEM, data={"api_key": key.pk, "requests_per_minute": 5})
    api_key_revoke(key=key, actor=SYSTEM)
    doc = config_export(tenant=world.tenant)
    assert doc["limits"] == []
    assert config_apply(tenant=world.tenant, document=doc, actor=SYSTEM, prune=True).changes == []
    assert LimitRule.objects.filter(api_key=key).exists()  # it limits nothing; it is left alone
