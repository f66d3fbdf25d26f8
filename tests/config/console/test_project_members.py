"""The console for members with roles on some projects only (``ProjectMembership``).

acme has three projects besides its default one: ``support`` (pa is its admin, pv its viewer),
``web`` (pa is its viewer) and ``labs`` (nobody of theirs). Each has a chat key, an alias, a
project budget, a project limit rule and an end-user block. As over the REST API: a project
member opens the pages for keys, aliases, budgets, limits, usage and end users and sees their
projects' things only; a project admin changes them in the projects they administer; other
projects' objects and the tenant-wide ones are 404s, the tenant-wide pages 403s. A member who
is a viewer only is refused every change (403) before the object is looked up, as tenant viewers are."""

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.end_users import end_user_block
from billing.ledger import usage_records_write
from billing.limit_services import limit_rule_create
from billing.models import Budget, EndUserBlock, LimitRule
from billing.records import UsageRecord
from billing.services import budget_create
from providers.models import ModelAlias
from providers.services import alias_create
from tenants.access import SYSTEM
from tenants.models import ApiKey, KeyScope, Membership, Project, ProjectMembership, Role
from tenants.services import api_key_create
from tests.config.console.test_e2e import log_in, new_page, shot  # noqa: F401 - new_page: the browser fixture
from tests.config.console.test_permissions import alias_form


@dataclass
class Area:
    """One project's things."""

    project: Project
    key: ApiKey
    alias: ModelAlias
    budget: Budget
    rule: LimitRule
    block: EndUserBlock


def make_area(tenant, slug: str) -> Area:
    project = Project.objects.create(tenant=tenant, slug=slug, name=slug.capitalize())
    key, _ = api_key_create(tenant=tenant, name=f"{slug} key", project=project, actor=SYSTEM)
    alias = alias_create(tenant=tenant, data={"name": f"{slug}-fast", "project": project,
                                              "targets": [{"model": "openai:gpt-4o"}]}, actor=SYSTEM)
    budget = budget_create(tenant=tenant, data={"name": f"{slug} budget", "scope": "project", "project": project.pk,
                                                "amount": Decimal("7")}, actor=SYSTEM)
    rule = limit_rule_create(tenant=tenant, data={"scope": "project", "project": project.pk,
                                                  "requests_per_minute": 60}, actor=SYSTEM)
    block, _ = end_user_block(tenant=tenant, end_user=f"{slug}-spammer", project=project, actor=SYSTEM)
    return Area(project=project, key=key, alias=alias, budget=budget, rule=rule, block=block)


@dataclass
class Projects:
    console: object
    support: Area
    web: Area
    labs: Area
    pa: object  # admin of support, viewer of web
    pv: object  # viewer of support


@pytest.fixture
def projects(console) -> Projects:
    tenant = console.tenant
    support, web, labs = (make_area(tenant, slug) for slug in ("support", "web", "labs"))
    User = get_user_model()
    pa = User.objects.create_user("pa@acme.test", "pa@acme.test", "pw")
    pv = User.objects.create_user("pv@acme.test", "pv@acme.test", "pw")
    ProjectMembership.objects.create(project=support.project, user=pa, role=Role.ADMIN)
    ProjectMembership.objects.create(project=web.project, user=pa, role=Role.VIEWER)
    ProjectMembership.objects.create(project=support.project, user=pv, role=Role.VIEWER)
    return Projects(console=console, support=support, web=web, labs=labs, pa=pa, pv=pv)


BASE = "/app/acme"
THEIR_PAGES = ["", "keys/", "aliases/", "aliases/new/", "budgets/", "budgets/new/", "limits/", "limits/new/",
               "usage/", "usage/export.csv", "end-users/"]
TENANT_WIDE_PAGES = ["settings/", "providers/", "providers/new/", "models/", "members/"]


def object_pages(area: Area) -> list[str]:
    return [f"aliases/{area.alias.pk}/", f"budgets/{area.budget.pk}/", f"limits/{area.rule.pk}/"]


def object_changes(area: Area) -> list[tuple[str, dict]]:
    """A change of each of the area's objects (the deletes last)."""
    return [
        (f"keys/{area.key.pk}/revoke/", {}),
        (f"aliases/{area.alias.pk}/", alias_form(area.alias.name, "openai:gpt-4o") | {"project": area.project.slug,
                                                                                      "retries": "2"}),
        (f"budgets/{area.budget.pk}/", budget_form(area.budget.name, "9", area.project)),
        (f"limits/{area.rule.pk}/", rule_form(area.project, "30")),
        (f"end-users/blocks/{area.block.pk}/unblock/", {}),
        (f"aliases/{area.alias.pk}/delete/", {}),
        (f"budgets/{area.budget.pk}/delete/", {}),
        (f"limits/{area.rule.pk}/delete/", {}),
    ]


def budget_form(name: str, amount: str, project: Project) -> dict:
    return {"name": name, "scope": "project", "project": str(project.pk), "amount": amount, "period": "month",
            "thresholds": "50, 100", "action": "alert", "enabled": "on"}


def rule_form(project: Project, rpm: str) -> dict:
    return {"scope": "project", "project": str(project.pk), "requests_per_minute": rpm, "enabled": "on"}


def unchanged(area: Area) -> None:
    assert ApiKey.objects.get(pk=area.key.pk).revoked_at is None
    assert ModelAlias.objects.get(pk=area.alias.pk).retries == area.alias.retries
    assert Budget.objects.get(pk=area.budget.pk).amount == Decimal("7")
    assert LimitRule.objects.get(pk=area.rule.pk).requests_per_minute == 60
    assert EndUserBlock.objects.filter(pk=area.block.pk).exists()


# --- reading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["pa", "pv"])
def test_project_members_open_their_pages_and_the_nav_offers_only_those(projects, login, who):
    client = login(getattr(projects, who))
    for page in THEIR_PAGES + object_pages(projects.support):
        response = client.get(f"{BASE}/{page}")
        assert response.status_code == 200, (who, page, response.content[:500])
    html = client.get(f"{BASE}/keys/").content.decode()
    for page in ("keys/", "aliases/", "budgets/", "limits/", "usage/", "end-users/"):
        assert f'href="{BASE}/{page}"' in html, page
    for page in TENANT_WIDE_PAGES:
        assert f'href="{BASE}/{page}"' not in html, page
    assert ("project admin" if who == "pa" else "project viewer") in html


@pytest.mark.parametrize("who", ["pa", "pv"])
def test_tenant_wide_pages_are_403_for_project_members(projects, login, who):
    client = login(getattr(projects, who))
    c = projects.console
    for page in TENANT_WIDE_PAGES + [f"providers/{c.own.pk}/"]:
        response = client.get(f"{BASE}/{page}")
        assert response.status_code == 403, (who, page)
        assert "role on some of its projects only" in response.content.decode(), page
    posts = [("settings/", {"name": "Hijacked", "timezone": "UTC", "cache_ttl_seconds": "60"}),
             ("providers/new/", {"name": "mine", "provider_type": "openai_compatible"}),
             (f"providers/{c.own.pk}/delete/", {}),
             (f"models/{c.platform.pk}/toggle/gpt-4o-mini", {"enabled": "1"}),
             ("members/", {"email": "pv@acme.test", "role": "owner"})]
    for page, data in posts:
        assert client.post(f"{BASE}/{page}", data).status_code == 403, (who, page)
    c.tenant.refresh_from_db()
    assert c.tenant.name == "Acme"
    assert not Membership.objects.filter(user=projects.pv).exists()


def test_project_members_see_only_their_projects_things(projects, login):
    pa, pv = login(projects.pa), login(projects.pv)
    keys = pa.get(f"{BASE}/keys/").content.decode()
    assert "support key" in keys and "web key" in keys  # pa is a viewer of web
    assert "labs key" not in keys and projects.console.chat_key.masked not in keys
    pv_keys = pv.get(f"{BASE}/keys/").content.decode()
    assert "support key" in pv_keys and "web key" not in pv_keys

    aliases = pa.get(f"{BASE}/aliases/").content.decode()
    assert "support-fast" in aliases and "web-fast" in aliases
    assert "labs-fast" not in aliases and "smart-cheap" not in aliases  # tenant-wide
    budgets = pa.get(f"{BASE}/budgets/").content.decode()
    assert "support budget" in budgets and "web budget" in budgets
    assert "labs budget" not in budgets
    assert f'{BASE}/budgets/{projects.console.budget.pk}/' not in budgets  # the tenant's budget
    assert "labs budget" not in pa.get(f"{BASE}/").content.decode()
    limits = pv.get(f"{BASE}/limits/").content.decode()
    assert f'{BASE}/limits/{projects.support.rule.pk}/' in limits
    assert f'{BASE}/limits/{projects.web.rule.pk}/' not in limits
    end_users = pa.get(f"{BASE}/end-users/").content.decode()
    assert "support-spammer" in end_users and "web-spammer" in end_users and "labs-spammer" not in end_users


def test_usage_is_their_projects_only(projects, login):
    now = timezone.now()
    c = projects.console
    rows = []
    for n, area in enumerate((projects.support, projects.support, projects.labs, projects.labs, projects.labs)):
        rows.append(UsageRecord(
            request_id=f"req_proj_{n}", tenant_id=c.tenant.pk, api_key_id=area.key.pk, project_id=area.project.pk,
            provider_id=c.gpt.provider_id, provider_model_id=c.gpt.pk, model_requested="openai:gpt-4o",
            input_tokens=10, output_tokens=5, cost=Decimal("0.01"), created_at=now, end_user=f"user-{n}",
            day=now.astimezone(timezone.get_default_timezone()).date()))
    usage_records_write(rows)
    response = login(projects.pv).get(f"{BASE}/usage/")
    assert response.status_code == 200
    assert response.context["series"].totals.requests == 2
    csv = login(projects.pv).get(f"{BASE}/usage/export.csv")
    body = b"".join(csv.streaming_content).decode() if csv.streaming else csv.content.decode()
    assert "req_proj_0" in body and "req_proj_1" in body and "req_proj_2" not in body
    # asking for another project's usage is refused, not answered with the tenant's
    other = login(projects.pv).get(f"{BASE}/usage/", {"project": projects.labs.project.pk})
    assert other.status_code == 400
    top = login(projects.pv).get(f"{BASE}/end-users/").content.decode()
    assert "user-0" in top and "user-2" not in top


# --- refused: other projects and the tenant's objects ----------------------------------------------------


@pytest.mark.parametrize("who", ["pa", "pv"])
def test_other_projects_and_tenant_wide_objects_are_404(projects, login, who):
    client = login(getattr(projects, who))
    c = projects.console
    foreign = [projects.labs] + ([projects.web] if who == "pv" else [])
    for area in foreign:
        for page in object_pages(area):
            assert client.get(f"{BASE}/{page}").status_code == 404, (who, page)
        for page, data in object_changes(area):
            # a viewer of every project they have may change nothing: refused before the object is looked up
            assert client.post(f"{BASE}/{page}", data).status_code == (404 if who == "pa" else 403), (who, page)
        unchanged(area)
    for page in (f"aliases/{c.alias.pk}/", f"budgets/{c.budget.pk}/"):
        assert client.get(f"{BASE}/{page}").status_code == 404, (who, page)
    for page in (f"keys/{c.chat_key.pk}/revoke/", f"aliases/{c.alias.pk}/delete/", f"budgets/{c.budget.pk}/delete/",
                 f"keys/{c.other_key.pk}/revoke/", f"budgets/{c.other_budget.pk}/delete/"):
        assert client.post(f"{BASE}/{page}", {}).status_code == (404 if who == "pa" else 403), (who, page)
    assert ApiKey.objects.get(pk=c.chat_key.pk).revoked_at is None
    assert ModelAlias.objects.filter(pk=c.alias.pk).exists() and Budget.objects.filter(pk=c.budget.pk).exists()


def test_a_project_viewer_changes_nothing(projects, login):
    client = login(projects.pv)
    for page, data in object_changes(projects.support):
        response = client.post(f"{BASE}/{page}", data)
        assert response.status_code == 403, (page, response.content[:300])
        assert "viewer roles on some projects" in response.content.decode(), page
    creates = [("keys/", {"name": "mine", "scope": "chat", "project": str(projects.support.project.pk)}),
               ("aliases/new/", alias_form("mine", "openai:gpt-4o") | {"project": "support"}),
               ("budgets/new/", budget_form("mine", "1", projects.support.project)),
               ("limits/new/", rule_form(projects.support.project, "5")),
               ("end-users/block/", {"end_user": "eve", "project": str(projects.support.project.pk)})]
    for page, data in creates:
        assert client.post(f"{BASE}/{page}", data).status_code == 403, page
    unchanged(projects.support)
    assert not ApiKey.objects.filter(name="mine").exists() and not EndUserBlock.objects.filter(end_user="eve").exists()
    html = client.get(f"{BASE}/keys/").content.decode()
    assert "Create key" not in html and "Revoke" not in html and "viewer of some projects" in html
    assert "Create a budget" not in client.get(f"{BASE}/budgets/").content.decode()
    alias_page = client.get(f"{BASE}/aliases/{projects.support.alias.pk}/").content.decode()
    assert '<fieldset class="plain" disabled>' in alias_page


def test_a_project_admin_cannot_change_what_they_only_view(projects, login):
    client = login(projects.pa)
    for page, data in object_changes(projects.web):
        response = client.post(f"{BASE}/{page}", data)
        assert response.status_code == 403, (page, response.content[:300])
    unchanged(projects.web)
    html = client.get(f"{BASE}/keys/").content.decode()
    rows = {r.split('"', 1)[0]: r for r in html.split('<tr id="key-')[1:]}
    assert "Revoke" in rows[str(projects.support.key.pk)] and "Revoke" not in rows[str(projects.web.key.pk)]
    web_budget = client.get(f"{BASE}/budgets/{projects.web.budget.pk}/").content.decode()
    assert '<fieldset class="plain" disabled>' in web_budget
    assert '<fieldset class="plain">' in client.get(f"{BASE}/budgets/{projects.support.budget.pk}/").content.decode()


# --- a project admin manages their project -----------------------------------------------------------------


def test_a_project_admin_manages_their_projects_keys_aliases_budgets_rules_and_blocks(projects, login):
    client = login(projects.pa)
    support = projects.support
    created = client.post(f"{BASE}/keys/", {"name": "bot", "scope": "chat", "project": str(support.project.pk)})
    assert created.status_code == 201 and "tg_" in created.content.decode()
    key = ApiKey.objects.get(name="bot")
    assert (key.project, key.scope, key.created_by) == (support.project, KeyScope.CHAT, projects.pa)
    assert client.post(f"{BASE}/aliases/new/", alias_form("bot-model", "openai:gpt-4o")
                       | {"project": "support"}).status_code == 302
    assert ModelAlias.objects.get(name="bot-model").project == support.project
    assert client.post(f"{BASE}/budgets/new/", budget_form("bot budget", "3", support.project)).status_code == 302
    assert Budget.objects.get(name="bot budget").project == support.project
    assert client.post(f"{BASE}/limits/new/", {"scope": "key", "api_key": str(key.pk), "tokens_per_day": "1000",
                                               "enabled": "on"}).status_code == 302
    assert LimitRule.objects.get(api_key=key).tokens_per_day == 1000
    blocked = client.post(f"{BASE}/end-users/block/", {"end_user": "eve", "project": str(support.project.pk)},
                          follow=True)
    assert "blocked in project" in blocked.content.decode()
    assert EndUserBlock.objects.get(end_user="eve").project == support.project

    for page, data in object_changes(support):
        response = client.post(f"{BASE}/{page}", data)
        assert response.status_code == 302, (page, response.content[:1000])
    assert ApiKey.objects.get(pk=support.key.pk).revoked_at is not None
    assert not ModelAlias.objects.filter(pk=support.alias.pk).exists()
    assert not Budget.objects.filter(pk=support.budget.pk).exists()
    assert not LimitRule.objects.filter(pk=support.rule.pk).exists()
    assert not EndUserBlock.objects.filter(pk=support.block.pk).exists()
    from tenants.models import AuditEvent

    actions = set(AuditEvent.objects.filter(tenant=projects.console.tenant, actor="user:pa@acme.test")
                  .values_list("action", flat=True))
    assert {"api_key.create", "api_key.revoke", "alias.create", "alias.update", "budget.create",
            "limit_rule.create", "end_user.block", "end_user.unblock"} <= actions


def test_a_project_admins_forms_offer_only_the_projects_they_administer(projects, login):
    client = login(projects.pa)
    support, web, labs = projects.support.project, projects.web.project, projects.labs.project
    for page in ("keys/", "budgets/new/", "limits/new/"):
        html = client.get(f"{BASE}/{page}").content.decode()
        assert f'value="{support.pk}"' in html, page
        assert f'value="{web.pk}"' not in html and f'value="{labs.pk}"' not in html, page
    end_users = client.get(f"{BASE}/end-users/")  # its filter offers the projects they see, blocking theirs only
    assert end_users.context["block_form"].fields["project"].choices == [(str(support.pk), "project support")]
    assert [v for v, _ in end_users.context["form"].fields["project"].choices] == ["", str(support.pk), str(web.pk)]
    keys = client.get(f"{BASE}/keys/").content.decode()
    assert 'value="admin"' not in keys  # chat keys only
    alias_new = client.get(f"{BASE}/aliases/new/").content.decode()
    assert 'value="support"' in alias_new and 'value="web"' not in alias_new and "tenant-wide —" not in alias_new
    # posting another project, an admin key, or no project is a 400 that creates nothing
    assert client.post(f"{BASE}/keys/", {"name": "x", "scope": "chat", "project": str(web.pk)}).status_code == 400
    assert client.post(f"{BASE}/keys/", {"name": "x", "scope": "admin", "project": str(support.pk)}).status_code == 400
    assert client.post(f"{BASE}/keys/", {"name": "x", "scope": "chat"}).status_code == 400
    assert client.post(f"{BASE}/aliases/new/", alias_form("x", "openai:gpt-4o") | {"project": ""}).status_code == 400
    assert client.post(f"{BASE}/budgets/new/", budget_form("x", "1", web)).status_code == 400
    assert client.post(f"{BASE}/budgets/new/", budget_form("x", "1", support) | {"scope": "tenant"}).status_code == 400
    assert client.post(f"{BASE}/limits/new/", rule_form(labs, "5")).status_code == 400
    everywhere = client.post(f"{BASE}/end-users/block/", {"end_user": "x", "project": ""}, follow=True)
    assert everywhere.status_code == 200 and "required" in everywhere.content.decode()
    assert not ApiKey.objects.filter(name="x").exists() and not ModelAlias.objects.filter(name="x").exists()
    assert not Budget.objects.filter(name="x").exists() and not EndUserBlock.objects.filter(end_user="x").exists()
    assert LimitRule.objects.filter(project=labs).count() == 1


def test_a_project_admin_revokes_in_place_with_htmx_and_changes_nothing_in_a_suspended_tenant(projects, login):
    client = login(projects.pa)
    support = projects.support
    row = client.post(f"{BASE}/keys/{support.key.pk}/revoke/", HTTP_HX_REQUEST="true")
    assert row.status_code == 200 and "Revoked." in row.content.decode()
    assert ApiKey.objects.get(pk=support.key.pk).revoked_at is not None

    tenant = projects.console.tenant
    tenant.is_active = False
    tenant.save(update_fields=["is_active"])
    assert client.get(f"{BASE}/keys/").status_code == 200
    refused = client.post(f"{BASE}/keys/", {"name": "late", "scope": "chat", "project": str(support.project.pk)})
    assert refused.status_code == 403 and "suspended" in refused.content.decode()
    assert client.post(f"{BASE}/budgets/{support.budget.pk}/delete/").status_code == 403
    assert not ApiKey.objects.filter(name="late").exists() and Budget.objects.filter(pk=support.budget.pk).exists()


# --- landing and switching ---------------------------------------------------------------------------------


def test_the_landing_page_and_switcher_list_tenants_with_a_project_role(projects, login):
    assert login(projects.pa).get("/app/")["Location"] == "/app/acme/"
    overview = login(projects.pa).get(f"{BASE}/").content.decode()
    assert "Your projects" in overview and "support" in overview and "web" in overview and "labs" not in overview
    theirs = Project.objects.create(tenant=projects.console.world.other, slug="theirs", name="Theirs")
    ProjectMembership.objects.create(project=theirs, user=projects.pa, role=Role.VIEWER)
    chooser = login(projects.pa).get("/app/")
    assert chooser.status_code == 200
    page = chooser.content.decode()
    assert 'href="/app/acme/"' in page and 'href="/app/other/"' in page
    assert "project admin" in page and "project viewer" in page
    assert 'href="/app/other/"' in login(projects.pa).get(f"{BASE}/keys/").content.decode()
    # their view of the other tenant is that project's only
    other_keys = login(projects.pa).get("/app/other/keys/")
    assert other_keys.status_code == 200 and "Create key" not in other_keys.content.decode()
    assert login(projects.pa).get("/app/other/settings/").status_code == 403


# --- in the browser ------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_project_admin_signs_in_and_creates_a_key_in_their_project(projects, new_page):  # noqa: F811
    page = new_page()

    # given the admin of support (and viewer of web) signs in, /app/ opens acme on their projects
    log_in(page, "pa@acme.test")
    assert page.url.endswith("/app/acme/")
    assert page.get_by_role("heading", name="Your projects", exact=True).is_visible()
    nav = page.get_by_role("navigation", name="Console")
    assert nav.get_by_role("link", name="API keys").is_visible()
    assert nav.get_by_role("link", name="LLM settings").count() == 0
    assert nav.get_by_role("link", name="Members").count() == 0

    # when they create a chat key, the project select offers the project they administer only
    nav.get_by_role("link", name="API keys").click()
    page.wait_for_url("**/app/acme/keys/")
    options = page.get_by_label("Project").locator("option").all_inner_texts()
    assert options == ["Support (support)"]
    assert page.get_by_label("Scope").locator("option").all_inner_texts() == ["Chat (the /v1 gateway)"]
    page.get_by_label("Name").fill("support bot")
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#new-key").input_value()
    assert raw.startswith("tg_")
    key = ApiKey.objects.get(name="support bot")
    assert key.project == projects.support.project and key.scope == KeyScope.CHAT and raw.startswith(key.prefix)
    shot(page, "project-admin-key-created")

    # then the list shows it with a Revoke button, and web's key (they only view web) without one
    page.get_by_role("link", name="Done").click()
    assert page.locator(f"#key-{key.pk}").get_by_role("button", name="Revoke").count() == 1
    assert page.locator(f"#key-{projects.web.key.pk}").get_by_role("button", name="Revoke").count() == 0
    assert page.locator(f"#key-{projects.labs.key.pk}").count() == 0

    # and a tenant-wide page is refused
    page.goto("/app/acme/settings/")
    assert page.get_by_role("heading", name="Not allowed").is_visible()
