"""The console's projects pages and a key's settings page: the REST API's services and permissions.

acme (owner, admin, viewer) has, besides its default project, ``support`` (pa administers it, pv
views it), ``web`` (pa views it) and ``labs`` (no role of theirs), each with a chat key and an
alias (test_project_members' fixture). Tenant admins create, change and delete projects, tenant
owners manage project roles, everyone reads; a project member reads their projects only (others
are 404s) and changes none of them (403, as over REST); a key's own limits change as
``PATCH /api/keys/{id}`` changes them (a project admin: their projects' keys). The outsider gets 404s."""

import html as html_lib
import re

import pytest
from django.contrib.auth import get_user_model

from tenants.access import SYSTEM
from tenants.models import ApiKey, AuditEvent, Project, ProjectMembership, Role
from tenants.services import api_key_revoke
from tests.config.console import test_project_members
from tests.config.console.test_e2e import log_in, new_page, shot  # noqa: F401 - new_page: the browser fixture
from tests.config.console.test_pages import error_next_to

pytestmark = pytest.mark.django_db
projects = test_project_members.projects  # the fixture

BASE = "/app/acme"


def text(response) -> str:
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


def project_data(**changes) -> dict:
    data = {"slug": "search", "name": "Search", "default_model": "", "requests_per_minute": "",
            "tokens_per_minute": "", "tokens_per_day": ""}
    data.update(changes)
    return data


# --- the list and creating --------------------------------------------------------------------


def test_the_list_shows_every_project_with_its_limits_and_keys(projects, login):
    Project.objects.filter(pk=projects.support.project.pk).update(default_model="support-fast",
                                                                  requests_per_minute=60, tokens_per_day=5000)
    api_key_revoke(key=projects.labs.key, actor=SYSTEM)
    response = login(projects.console.world.viewer).get(f"{BASE}/projects/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="{BASE}/projects/"' in page  # in the nav
    row = re.search(r'<tr id="project-support">(.*?)</tr>', page, re.S).group(1)
    assert "support-fast" in row and ">60<" in row and ">5000<" in row and "1 active" in row
    assert f'href="{BASE}/usage/?project=support"' in row
    labs = re.search(r'<tr id="project-labs">(.*?)</tr>', page, re.S).group(1)
    assert "0 active" in labs and "(1 in all)" in labs
    assert 'id="project-default"' in page and 'id="project-web"' in page
    assert "Create project" not in page  # a viewer


def test_an_admin_creates_a_project(projects, login):
    client = login(projects.console.world.admin)
    response = client.post(f"{BASE}/projects/", project_data(default_model="smart-cheap", requests_per_minute="600",
                                                              tokens_per_day="2000000"))
    assert response.status_code == 302 and response["Location"] == f"{BASE}/projects/search/"
    project = Project.objects.get(tenant=projects.console.tenant, slug="search")
    assert (project.name, project.default_model, project.requests_per_minute, project.tokens_per_minute,
            project.tokens_per_day) == ("Search", "smart-cheap", 600, None, 2_000_000)
    assert AuditEvent.objects.filter(action="project.create", target="project:search",
                                     actor="user:admin@acme.test").exists()
    assert "Project &#x27;search&#x27; created." in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("changes, field, words", [
    ({"slug": "Bad Slug"}, "slug", "Invalid project slug 'Bad Slug'"),
    ({"slug": "support"}, "slug", "already has a project with slug 'support'"),
    ({"name": ""}, "name", "This field is required"),
    ({"default_model": "support-fast"}, "default_model", "not an alias or model this project's keys may use"),
    ({"default_model": "nowhere"}, "default_model", "smart-cheap"),  # lists what it may use
    ({"requests_per_minute": "0"}, "requests_per_minute", "greater than or equal to 1"),
    ({"tokens_per_day": "x"}, "tokens_per_day", "Enter a whole number"),
])
def test_bad_input_is_a_400_next_to_its_field(projects, login, changes, field, words):
    response = login(projects.console.world.admin).post(f"{BASE}/projects/", project_data(**changes))
    assert response.status_code == 400
    assert words in error_next_to(response.content.decode(), field)
    assert not Project.objects.filter(tenant=projects.console.tenant, slug="search").exists()


# --- one project --------------------------------------------------------------------------------


def test_an_admin_changes_a_projects_name_default_model_and_limits(projects, login):
    client = login(projects.console.world.admin)
    url = f"{BASE}/projects/support/"
    page = client.get(url).content.decode()
    assert 'value="Support"' in page and "Save project" in page
    response = client.post(url, {"name": "Support desk", "default_model": "support-fast",
                                 "requests_per_minute": "30", "tokens_per_minute": "", "tokens_per_day": "900"})
    assert response.status_code == 302
    project = Project.objects.get(pk=projects.support.project.pk)
    assert (project.name, project.default_model, project.requests_per_minute, project.tokens_per_day) == (
        "Support desk", "support-fast", 30, 900)
    # another project's alias is not one its keys may send
    refused = client.post(url, {"name": "Support desk", "default_model": "web-fast"})
    assert refused.status_code == 400
    assert "web-fast" in error_next_to(refused.content.decode(), "default_model")
    assert Project.objects.get(pk=project.pk).default_model == "support-fast"


def test_deleting_is_refused_while_keys_are_active_and_for_the_default_project(projects, login):
    client = login(projects.console.world.admin)
    refused = client.post(f"{BASE}/projects/labs/delete/", follow=True)
    assert "still has 1 active API key(s): labs key" in text(refused)
    assert Project.objects.filter(pk=projects.labs.project.pk).exists()
    default = client.post(f"{BASE}/projects/default/delete/", follow=True)
    assert "cannot be deleted" in text(default)
    assert "Delete project" not in client.get(f"{BASE}/projects/default/").content.decode()

    api_key_revoke(key=projects.labs.key, actor=SYSTEM)
    deleted = client.post(f"{BASE}/projects/labs/delete/")
    assert deleted.status_code == 302 and deleted["Location"] == f"{BASE}/projects/"
    assert not Project.objects.filter(pk=projects.labs.project.pk).exists()
    assert ApiKey.objects.get(pk=projects.labs.key.pk).project.is_default  # the revoked key moved


def test_a_tenant_viewer_reads_and_changes_nothing(projects, login):
    client = login(projects.console.world.viewer)
    page = client.get(f"{BASE}/projects/support/").content.decode()
    assert "<fieldset class=\"section\" disabled>" in page and "Save project" not in page
    assert "Delete project" not in page and "Add to project" not in page
    for url, data in [("projects/", project_data()), ("projects/support/", {"name": "X"}),
                      ("projects/labs/delete/", {}),
                      ("projects/support/members/", {"email": "someone@acme.test", "role": "viewer"})]:
        assert client.post(f"{BASE}/{url}", data).status_code == 403, url
    assert Project.objects.get(pk=projects.support.project.pk).name == "Support"
    assert not Project.objects.filter(slug="search").exists()


@pytest.mark.parametrize("who", ["pa", "pv"])
def test_a_project_member_reads_their_projects_only_and_changes_none(projects, login, who):
    client = login(getattr(projects, who))
    listing = client.get(f"{BASE}/projects/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert 'id="project-support"' in page and 'id="project-labs"' not in page and 'id="project-default"' not in page
    assert ('id="project-web"' in page) == (who == "pa")
    assert "Create project" not in page and "some projects only" in page
    assert client.get(f"{BASE}/projects/support/").status_code == 200
    for url in ("projects/labs/", "projects/default/", "projects/labs/delete/"):
        assert client.get(f"{BASE}/{url}").status_code == 404, url
        # a viewer-only member is refused every change before the object is looked up, as tenant viewers are
        assert client.post(f"{BASE}/{url}", {"name": "X"}).status_code == (404 if who == "pa" else 403), url
    for url, data in [("projects/", project_data()), ("projects/support/", {"name": "X"}),
                      ("projects/support/delete/", {}),
                      ("projects/support/members/", {"email": "someone@acme.test", "role": "viewer"})]:
        response = client.post(f"{BASE}/{url}", data)
        assert response.status_code == 403, url
    assert Project.objects.get(pk=projects.support.project.pk).name == "Support"


def test_the_outsider_gets_404s(projects, login):
    world = projects.console.world
    theirs = Project.objects.create(tenant=world.other, slug="theirs", name="Theirs")
    outsider = login(world.other_owner)
    for url in ("projects/", "projects/support/", f"keys/{projects.support.key.pk}/"):
        assert outsider.get(f"{BASE}/{url}").status_code == 404, url
        assert outsider.post(f"{BASE}/{url}", {"name": "X"}).status_code == 404, url
    owner = login(world.owner)
    assert owner.get(f"{BASE}/projects/theirs/").status_code == 404
    assert owner.post(f"{BASE}/projects/theirs/delete/").status_code == 404
    other_key = ApiKey.objects.filter(tenant=world.other).first()
    assert owner.get(f"{BASE}/keys/{other_key.pk}/").status_code == 404
    assert Project.objects.filter(pk=theirs.pk).exists()


# --- project members ------------------------------------------------------------------------------


def test_an_owner_adds_changes_and_removes_a_project_member(projects, login):
    User = get_user_model()
    newcomer = User.objects.create_user("new@acme.test", "new@acme.test", "pw")
    client = login(projects.console.world.owner)
    url = f"{BASE}/projects/web/"
    added = client.post(f"{url}members/", {"email": "new@acme.test", "role": "viewer"})
    assert added.status_code == 302
    membership = ProjectMembership.objects.get(project=projects.web.project, user=newcomer)
    assert membership.role == Role.VIEWER
    page = client.get(url).content.decode()
    assert "new@acme.test" in page and "Add to project" in page

    changed = client.post(f"{url}members/{membership.pk}/role/", {f"m{membership.pk}-role": "admin"}, follow=True)
    assert "new@acme.test is now admin of project &#x27;web&#x27;." in changed.content.decode()
    assert ProjectMembership.objects.get(pk=membership.pk).role == Role.ADMIN
    assert AuditEvent.objects.filter(action="project_member.update", before={"role": "viewer"},
                                     after={"role": "admin"}).exists()
    bad = client.post(f"{url}members/{membership.pk}/role/", {f"m{membership.pk}-role": "owner"}, follow=True)
    assert "Choose a project role: admin or viewer." in bad.content.decode()

    # a member of the whole tenant already has a role here: a 400 saying so, next to the email
    tenant_member = client.post(f"{url}members/", {"email": "viewer@acme.test", "role": "admin"})
    assert tenant_member.status_code == 400
    assert "covers every project" in error_next_to(tenant_member.content.decode(), "email")
    unknown = client.post(f"{url}members/", {"email": "nobody@acme.test", "role": "admin"})
    assert "No user with email" in error_next_to(unknown.content.decode(), "email")

    removed = client.post(f"{url}members/{membership.pk}/remove/")
    assert removed.status_code == 302
    assert not ProjectMembership.objects.filter(pk=membership.pk).exists()
    # another project's membership id in this project's URL is a 404
    pa_on_support = ProjectMembership.objects.get(project=projects.support.project, user=projects.pa)
    assert client.post(f"{url}members/{pa_on_support.pk}/remove/").status_code == 404
    assert ProjectMembership.objects.filter(pk=pa_on_support.pk).exists()


def test_a_tenant_admin_does_not_manage_project_members(projects, login):
    client = login(projects.console.world.admin)
    membership = ProjectMembership.objects.get(project=projects.support.project, user=projects.pv)
    assert "Add to project" not in client.get(f"{BASE}/projects/support/").content.decode()
    for url, data in [("members/", {"email": "admin@acme.test", "role": "viewer"}),
                      (f"members/{membership.pk}/role/", {f"m{membership.pk}-role": "admin"}),
                      (f"members/{membership.pk}/remove/", {})]:
        response = client.post(f"{BASE}/projects/support/{url}", data)
        assert response.status_code == 403, url
        assert "needs the owner role" in response.content.decode()
    assert ProjectMembership.objects.get(pk=membership.pk).role == Role.VIEWER


# --- a key's settings -------------------------------------------------------------------------------


def key_limits(rpm="", tpm="", tpd="") -> dict:
    return {"requests_per_minute": rpm, "tokens_per_minute": tpm, "tokens_per_day": tpd}


def test_the_keys_list_links_each_key_to_its_settings(projects, login):
    page = login(projects.console.world.viewer).get(f"{BASE}/keys/").content.decode()
    assert f'href="{BASE}/keys/{projects.support.key.pk}/"' in page


def test_an_admin_sets_a_keys_own_limits(projects, login):
    key = projects.support.key
    ApiKey.objects.filter(pk=key.pk).update(allowed_models=["support-fast"])
    client = login(projects.console.world.admin)
    page = client.get(f"{BASE}/keys/{key.pk}/").content.decode()
    assert key.masked in page and "support-fast" in page and "Save limits" in page
    assert key.key_hash not in page
    response = client.post(f"{BASE}/keys/{key.pk}/", key_limits(rpm="20", tpd="10000"))
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.requests_per_minute, key.tokens_per_minute, key.tokens_per_day) == (20, None, 10_000)
    event = AuditEvent.objects.get(action="api_key.update", target=f"api_key:{key.pk}")
    assert event.after == {"requests_per_minute": 20, "tokens_per_day": 10_000}
    # empty clears a limit
    client.post(f"{BASE}/keys/{key.pk}/", key_limits(rpm="20"))
    key.refresh_from_db()
    assert key.tokens_per_day is None
    bad = client.post(f"{BASE}/keys/{key.pk}/", key_limits(rpm="0", tpm="-5"))
    assert bad.status_code == 400
    assert "greater than or equal to 1" in error_next_to(bad.content.decode(), "requests_per_minute")
    assert "greater than or equal to 1" in error_next_to(bad.content.decode(), "tokens_per_minute")
    assert ApiKey.objects.get(pk=key.pk).requests_per_minute == 20


def test_who_may_change_a_keys_limits(projects, login):
    world = projects.console.world
    support, web, labs = projects.support.key, projects.web.key, projects.labs.key
    viewer = login(world.viewer)
    assert "disabled" in viewer.get(f"{BASE}/keys/{support.pk}/").content.decode()
    assert viewer.post(f"{BASE}/keys/{support.pk}/", key_limits(rpm="5")).status_code == 403
    pa = login(projects.pa)
    assert pa.post(f"{BASE}/keys/{support.pk}/", key_limits(rpm="5")).status_code == 302  # they administer support
    refused = pa.post(f"{BASE}/keys/{web.pk}/", key_limits(rpm="5"))  # they view web
    assert refused.status_code == 403 and "Your role on project &#x27;web&#x27; is viewer" in refused.content.decode()
    assert pa.get(f"{BASE}/keys/{labs.pk}/").status_code == 404
    assert pa.post(f"{BASE}/keys/{labs.pk}/", key_limits(rpm="5")).status_code == 404
    assert login(projects.pv).post(f"{BASE}/keys/{support.pk}/", key_limits(rpm="6")).status_code == 403
    assert [k.requests_per_minute for k in ApiKey.objects.filter(pk__in=[support.pk, web.pk, labs.pk])
            .order_by("pk")] == [5, None, None]


# --- in the browser -------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_an_admin_manages_projects_in_the_browser(projects, new_page):  # noqa: F811
    page = new_page()
    log_in(page, "admin@acme.test")

    # given the Projects page from the nav
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Projects").click()
    page.wait_for_url("**/app/acme/projects/")
    assert page.locator("#project-support").is_visible()

    # when a project is created with a default model the project could not use, the error says what it may use
    page.get_by_label("Slug").fill("search")
    page.get_by_label("Name", exact=True).fill("Search")
    page.get_by_label("Default model").fill("web-fast")
    page.get_by_label("Requests per minute").fill("600")
    page.get_by_role("button", name="Create project").click()
    assert "smart-cheap" in page.locator("#id_default_model_error").inner_text()
    page.get_by_label("Default model").fill("smart-cheap")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/app/acme/projects/search/")
    assert page.get_by_text("Project 'search' created.").is_visible()
    project = Project.objects.get(slug="search")
    assert (project.default_model, project.requests_per_minute) == ("smart-cheap", 600)

    # then it is edited
    page.get_by_label("Tokens per day").fill("100000")
    page.get_by_role("button", name="Save project").click()
    assert page.get_by_text("Project 'search' saved.").is_visible()
    assert Project.objects.get(pk=project.pk).tokens_per_day == 100_000
    shot(page, "console-project")

    # and a project with an active key is not deleted, with the reason on the page
    page.goto("/app/acme/projects/labs/")
    page.get_by_role("button", name="Delete project").click()
    assert page.get_by_text("still has 1 active API key(s)").is_visible()
    assert Project.objects.filter(slug="labs").exists()

    # while one without keys is
    page.goto("/app/acme/projects/search/")
    page.get_by_role("button", name="Delete project").click()
    page.wait_for_url("**/app/acme/projects/")
    assert page.get_by_text("Project 'search' deleted.").is_visible()
    assert not Project.objects.filter(slug="search").exists()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_project_admin_sets_their_keys_limits_in_the_browser(projects, new_page):  # noqa: F811
    page = new_page()
    log_in(page, "pa@acme.test")
    nav = page.get_by_role("navigation", name="Console")

    # the projects page shows their projects, read-only
    nav.get_by_role("link", name="Projects").click()
    page.wait_for_url("**/app/acme/projects/")
    assert page.locator("#project-support").is_visible() and page.locator("#project-labs").count() == 0
    assert page.get_by_role("button", name="Create project").count() == 0
    page.locator("#project-support").get_by_role("link", name="support", exact=True).click()
    assert page.get_by_label("Name", exact=True).is_disabled()

    # a key of their project: its own limits change from the key's page, linked from the list
    nav.get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="support key").click()
    page.wait_for_url(f"**/app/acme/keys/{projects.support.key.pk}/")
    page.get_by_label("Requests per minute").fill("12")
    page.get_by_role("button", name="Save limits").click()
    assert page.get_by_text("Limits of key 'support key'").is_visible()
    assert ApiKey.objects.get(pk=projects.support.key.pk).requests_per_minute == 12
    shot(page, "console-key-settings")

    # a key of a project they only view shows its limits without a Save button
    page.goto(f"/app/acme/keys/{projects.web.key.pk}/")
    assert page.get_by_label("Requests per minute").is_disabled()
    assert page.get_by_role("button", name="Save limits").count() == 0


# --- /app/: every tenant the user can open, with their roles ----------------------------------------


def test_the_chooser_names_each_project_role(projects, login):
    world = projects.console.world
    theirs = Project.objects.create(tenant=world.other, slug="theirs", name="Theirs")
    ProjectMembership.objects.create(project=theirs, user=projects.pa, role=Role.VIEWER)
    page = text(login(projects.pa).get("/app/"))
    assert "project admin of support, project viewer of web" in page
    assert "project viewer of theirs" in page
    assert "labs" not in page
    # a tenant role is named as it is
    from tenants.models import Membership

    Membership.objects.create(tenant=world.other, user=world.admin, role=Role.VIEWER)
    both = text(login(world.admin).get("/app/"))
    assert re.search(r"Acme\s+acme\s+admin", both) and re.search(r"Other Co\s+other\s+viewer", both)
