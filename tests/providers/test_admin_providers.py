"""The providers admin: keys are masked and never shown to anyone, an edit without a key keeps it,
sync and connection-test actions, and base URLs checked by the API's rules (a new URL needs the
key again)."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from providers.models import Provider
from providers.services import provider_create
from tenants.models import AuditEvent
from tests.fakes import FakeOpenAI

pytestmark = pytest.mark.django_db

SECRET = "sk-admin-visible-never-9876"


@pytest.fixture
def root(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@t.test", "pw"))
    return client


def test_admin_masks_provider_keys(root):
    provider = provider_create(owner=None, data={"name": "p", "base_url": "http://127.0.0.1:9/v1", "api_key": SECRET})
    listing = root.get("/admin/providers/provider/").content.decode()
    change = root.get(f"/admin/providers/provider/{provider.pk}/change/").content.decode()
    assert SECRET not in listing and SECRET not in change
    assert "sk-…9876" in listing


def test_admin_edit_without_a_key_keeps_it(root):
    provider = provider_create(owner=None, data={"name": "p", "base_url": "http://127.0.0.1:9/v1", "api_key": SECRET})
    form = {
        "name": "p", "display_name": "P", "provider_type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1",
        "api_key": "", "priority": 3, "timeout_seconds": 30, "max_retries": 1, "sync_interval_minutes": 60,
        "enabled": "on", "auto_sync": "on",
    }
    response = root.post(f"/admin/providers/provider/{provider.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    provider.refresh_from_db()
    assert provider.api_key == SECRET and provider.priority == 3


def test_admin_sync_and_test_actions(root):
    with FakeOpenAI(models=["a", "b"]) as fake:
        provider = provider_create(owner=None, data={"name": "p", "base_url": fake.base_url})
        page = root.post("/admin/providers/provider/", {"action": "sync_now", "_selected_action": [provider.pk]},
                         follow=True).content.decode()
        assert "P: 2 added, 0 updated, 0 stale, 0 unchanged." in page  # the admin capitalises messages
        page = root.post("/admin/providers/provider/", {"action": "test_connection", "_selected_action": [provider.pk]},
                         follow=True).content.decode()
        assert "P: reachable, 2 models" in page
    assert Provider.objects.get(pk=provider.pk).sync_status == "ok"


# --- secrets are never shown, to anyone (issue #11, item 2) ------------------------------------

HEADER_SECRET = "org-header-secret-5150"
LOOPBACK = "http://127.0.0.1:9/v1"
ELSEWHERE = "http://127.0.0.2:9/v1"
NEW_KEY = "sk-brand-new-key-1234"


@pytest.fixture
def keyed_provider(settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    return provider_create(owner=None, data={
        "name": "p", "base_url": LOOPBACK, "api_key": SECRET,
        "extra_headers": {"X-Org-Token": HEADER_SECRET},
    })


def admin_form(**changes):
    form = {
        "name": "p", "display_name": "P", "provider_type": "openai_compatible",
        "base_url": LOOPBACK,
        "api_key": "", "extra_headers": "", "priority": 0, "timeout_seconds": 60, "max_retries": 2,
        "sync_interval_minutes": 1440, "enabled": "on", "auto_sync": "on",
    }
    form.update(changes)
    return form


@pytest.mark.parametrize("who", ["support", "superuser"])
def test_no_provider_admin_page_shows_a_secret(world, client, keyed_provider, who):
    # Given support staff (view-only) or a superuser
    if who == "support":
        client.force_login(world.support)
    else:
        client.force_login(get_user_model().objects.create_superuser("root", "r@t.test", "pw"))
    # When they open the change list and the provider's change page
    pages = [client.get("/admin/providers/provider/"),
             client.get(f"/admin/providers/provider/{keyed_provider.pk}/change/")]
    # Then neither shows the key or a header value, but both show the key's hint
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert SECRET not in html and HEADER_SECRET not in html
        assert "sk-…9876" in html
    change = pages[1].content.decode()
    assert "X-Org-Token" in change  # header names are not secret
    if who == "support":
        assert 'name="_save"' not in change and 'name="api_key"' not in change


def test_superuser_sets_a_new_key_and_headers_through_the_admin(keyed_provider, root):
    # When a superuser types a new key and new headers
    url = f"/admin/providers/provider/{keyed_provider.pk}/change/"
    response = root.post(url, admin_form(api_key=NEW_KEY, extra_headers="X-Org-Token: new-value"))
    assert response.status_code == 302, response.content.decode()[-3000:]
    # Then they are stored (encrypted) and the audit trail has only hints
    provider = Provider.objects.get(pk=keyed_provider.pk)
    assert provider.api_key == NEW_KEY
    assert provider.extra_headers == {"X-Org-Token": "new-value"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM providers_provider WHERE id = %s", [provider.pk])
        assert "brand-new" not in cursor.fetchone()[0]
    event = AuditEvent.objects.filter(action="provider.update").latest("pk")
    assert event.after["api_key"] == "sk-…1234" and "sk-brand-new" not in str(event.after)
    # And leaving both fields empty keeps them
    assert root.post(url, admin_form(priority=4)).status_code == 302
    provider.refresh_from_db()
    assert provider.api_key == NEW_KEY and provider.extra_headers == {"X-Org-Token": "new-value"}
    assert provider.priority == 4
    # And the clear boxes remove them
    response = root.post(url, admin_form(clear_api_key="on", clear_extra_headers="on"))
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.api_key == "" and provider.extra_headers == {}


# --- base URLs: the API's rules (item 1) and the key follows its URL (item 11) -----------------


def test_admin_add_form_validates_base_urls_like_the_api(root, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    add = "/admin/providers/provider/add/"
    form = admin_form(name="new", provider_type="")
    for url, words in [("http://169.254.169.254/latest", "169.254.169.254"),
                       ("http://[fd00:ec2::254]/v1", "fd00:ec2::254"),
                       ("http://10.0.0.5/v1", "ALLOW_PRIVATE_PROVIDER_URLS"),
                       ("ftp://example.com", "http:// or https://"),
                       ("https://example.com/v1?x=1", "query string")]:
        response = root.post(add, {**form, "base_url": url})
        assert response.status_code == 200, url
        assert words in response.content.decode(), url
    assert not Provider.objects.filter(name="new").exists()
    # A private URL is fine where the setting allows it
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    assert root.post(add, {**form, "base_url": "http://10.0.0.5:8000/v1/"}).status_code == 302
    provider = Provider.objects.get(name="new")
    assert provider.provider_type == "openai_compatible"
    assert provider.base_url == "http://10.0.0.5:8000/v1"
    # The type is detected and the URL normalized, as the API does; the save is audited
    response = root.post(add, {**form, "name": "oa", "base_url": "HTTPS://API.OpenAI.com/v1//"})
    assert response.status_code == 302
    provider = Provider.objects.get(name="oa")
    assert (provider.provider_type, provider.base_url) == ("openai", "https://api.openai.com/v1")
    assert AuditEvent.objects.filter(action="provider.create", target="provider:oa").exists()
    # A host name without a dot is fine, as it is for the API
    response = root.post(add, {**form, "name": "gpu", "base_url": "http://gpu-box:11434"})
    assert response.status_code == 302
    assert Provider.objects.get(name="gpu").provider_type == "ollama"
    # An empty URL gets the type's well-known one
    response = root.post(add, {**form, "name": "ant", "provider_type": "anthropic", "base_url": ""})
    assert response.status_code == 302
    assert Provider.objects.get(name="ant").base_url == "https://api.anthropic.com"
    # Names follow the API's pattern
    response = root.post(add, {**form, "name": "Bad:Name", "base_url": "https://example.com/v1"})
    assert response.status_code == 200 and "lowercase letters" in response.content.decode()


def test_admin_change_form_refuses_unsafe_urls_and_a_new_url_needs_the_key(keyed_provider, root):
    url = f"/admin/providers/provider/{keyed_provider.pk}/change/"
    page = root.get(url).content.decode()  # the form starts from the saved URL and type
    assert f'name="base_url" value="{LOOPBACK}"' in page
    assert '<option value="openai_compatible" selected>' in page
    response = root.post(url, admin_form(base_url="http://169.254.169.254/latest", api_key=NEW_KEY))
    assert response.status_code == 200 and "169.254.169.254" in response.content.decode()
    # A new URL without the key (and the headers): refused, naming them
    response = root.post(url, admin_form(base_url=ELSEWHERE))
    assert response.status_code == 200
    assert "send api_key and extra_headers again" in response.content.decode()
    keyed_provider.refresh_from_db()
    assert (keyed_provider.base_url, keyed_provider.api_key) == (LOOPBACK, SECRET)
    # With the key and the headers typed again it is saved
    response = root.post(url, admin_form(base_url=ELSEWHERE, api_key=NEW_KEY,
                                         extra_headers="X-Org-Token: again"))
    assert response.status_code == 302, response.content.decode()[-3000:]
    keyed_provider.refresh_from_db()
    assert (keyed_provider.base_url, keyed_provider.api_key) == (ELSEWHERE, NEW_KEY)
