import pytest
from django.contrib.auth import get_user_model

from providers.models import Provider
from providers.services import provider_create
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
