"""tokens_per_minute beside requests_per_minute and tokens_per_day: the tenant's settings (REST and
console), a project's and a key's own limits (REST; a project admin changes their projects'
keys only), audited, and every change bumps the tenant's configuration version."""

import pytest
from django.contrib.auth import get_user_model

from core.redis import get_redis
from tenants.access import SYSTEM
from tenants.config_version import version_key
from tenants.models import ApiKey, AuditEvent, Project, ProjectMembership, Role
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)  # the version bumps run on commit


@pytest.fixture
def bot(world):
    User = get_user_model()
    world.bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Bot")
    world.web = Project.objects.create(tenant=world.tenant, slug="web", name="Web")
    world.bot_key, _ = api_key_create(tenant=world.tenant, name="bot key", project=world.bot, actor=SYSTEM)
    world.web_key, _ = api_key_create(tenant=world.tenant, name="web key", project=world.web, actor=SYSTEM)
    world.bot_admin = User.objects.create_user("botadmin@acme.test", "botadmin@acme.test", "pw")
    world.bot_viewer = User.objects.create_user("botviewer@acme.test", "botviewer@acme.test", "pw")
    ProjectMembership.objects.create(project=world.bot, user=world.bot_admin, role=Role.ADMIN)
    ProjectMembership.objects.create(project=world.bot, user=world.bot_viewer, role=Role.VIEWER)
    return world


def version(tenant) -> str | None:
    return get_redis().get(version_key(tenant.pk))


def test_tenant_settings_take_tokens_per_minute(world, client_for):
    client = client_for(user=world.owner)
    before = version(world.tenant)
    changed = client.put(f"/api/tenants/{world.tenant.pk}", {"settings": {"limits": {"tokens_per_minute": 50_000}}},
                         format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["settings"]["limits"]["tokens_per_minute"] == 50_000
    world.tenant.refresh_from_db()
    assert world.tenant.tokens_per_minute == 50_000 and version(world.tenant) != before
    assert AuditEvent.objects.get(action="tenant.update").after == {"tokens_per_minute": 50_000}
    refused = client.put(f"/api/tenants/{world.tenant.pk}", {"settings": {"limits": {"tokens_per_minute": 0}}},
                         format="json")
    assert refused.status_code == 400 and "tokens_per_minute" in str(refused.json()["error"]["fields"])
    cleared = client.put(f"/api/tenants/{world.tenant.pk}", {"settings": {"limits": {"tokens_per_minute": None}}},
                         format="json")
    assert cleared.json()["settings"]["limits"]["tokens_per_minute"] is None


def test_console_settings_save_tokens_per_minute(world, client_for):
    client = client_for(user=world.owner)
    page = client.get(f"/app/{world.tenant.slug}/settings/")
    assert 'name="tokens_per_minute"' in page.content.decode()
    form = {"name": "Acme", "timezone": "UTC", "tokens_per_minute": "1234", "cache_ttl_seconds": "3600",
            "redis_outage": "inherit"}
    saved = client.post(f"/app/{world.tenant.slug}/settings/", form)
    assert saved.status_code in (200, 302), saved.content.decode()[:1000]
    world.tenant.refresh_from_db()
    assert world.tenant.tokens_per_minute == 1234


def test_the_admin_shows_tokens_per_minute(bot, client):
    root = get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw")
    client.force_login(root)
    for url in (f"/admin/tenants/tenant/{bot.tenant.pk}/change/", f"/admin/tenants/apikey/{bot.bot_key.pk}/change/",
                f"/admin/tenants/project/{bot.bot.pk}/change/"):
        page = client.get(url)
        assert page.status_code == 200 and "tokens_per_minute" in page.content.decode(), url


def test_projects_have_tokens_per_minute_and_a_change_bumps_the_version(bot, client_for):
    client = client_for(user=bot.owner)
    before = version(bot.tenant)
    changed = client.patch("/api/projects/bot", {"limits": {"tokens_per_minute": 9000}}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["limits"] == {"requests_per_minute": None, "tokens_per_minute": 9000, "tokens_per_day": None}
    assert Project.objects.get(pk=bot.bot.pk).tokens_per_minute == 9000
    assert version(bot.tenant) != before
    created = client.post("/api/projects", {"slug": "new", "name": "New", "limits": {"tokens_per_minute": 5}},
                          format="json")
    assert created.status_code == 201 and created.json()["limits"]["tokens_per_minute"] == 5


def test_keys_show_and_change_their_own_limits(bot, client_for):
    client = client_for(user=bot.owner)
    shown = client.get(f"/api/keys/{bot.bot_key.pk}").json()
    assert shown["limits"] == {"requests_per_minute": None, "tokens_per_minute": None, "tokens_per_day": None}
    before = version(bot.tenant)
    changed = client.patch(f"/api/keys/{bot.bot_key.pk}", {"limits": {"tokens_per_minute": 700,
                                                                      "requests_per_minute": 10}}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["limits"] == {"requests_per_minute": 10, "tokens_per_minute": 700, "tokens_per_day": None}
    assert version(bot.tenant) != before
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.after == {"requests_per_minute": 10, "tokens_per_minute": 700}
    bad = client.patch(f"/api/keys/{bot.bot_key.pk}", {"limits": {"tokens_per_minute": -1}}, format="json")
    assert bad.status_code == 400
    unknown = client.patch(f"/api/keys/{bot.bot_key.pk}", {"limits": {"colour": 1}}, format="json")
    assert unknown.status_code == 400


def test_a_project_admin_changes_their_projects_keys_limits_only(bot, client_for):
    admin = client_for(user=bot.bot_admin)
    mine = admin.patch(f"/api/keys/{bot.bot_key.pk}", {"limits": {"tokens_per_day": 100}}, format="json")
    assert mine.status_code == 200 and mine.json()["limits"]["tokens_per_day"] == 100
    assert admin.patch(f"/api/keys/{bot.web_key.pk}", {"limits": {"tokens_per_day": 1}},
                       format="json").status_code == 404
    viewer = client_for(user=bot.bot_viewer)
    assert viewer.get(f"/api/keys/{bot.bot_key.pk}").json()["limits"]["tokens_per_day"] == 100
    assert viewer.patch(f"/api/keys/{bot.bot_key.pk}", {"limits": {"tokens_per_day": 1}},
                        format="json").status_code == 403
    outsider = client_for(user=bot.other_owner)
    assert outsider.patch(f"/api/keys/{bot.bot_key.pk}", {"limits": {"tokens_per_day": 1}},
                          format="json").status_code == 404
    assert ApiKey.objects.get(pk=bot.web_key.pk).tokens_per_day is None
