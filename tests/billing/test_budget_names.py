"""A budget's name goes back out in the x-tollgate-budget-downgrade header of /v1 answers: a
line break (or another control character) in it made every downgraded request a 500. Every
entry path refuses such a name with an error naming the field."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from billing.models import Budget
from billing.services import budget_create
from core.errors import InvalidInput
from tenants.access import SYSTEM
from tests.billing.conftest import make_budget

pytestmark = pytest.mark.django_db

BAD_NAMES = ["Monthly\r\nX-Injected: 1", "Monthly\nbis", "Mon\x01thly", "Mon\x7fthly", "Mon\tthly"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_service_refuses_control_characters_in_the_name(world, name):
    with pytest.raises(InvalidInput, match="line breaks or other control characters") as caught:
        budget_create(tenant=world.tenant, data={"name": name, "amount": Decimal(10)}, actor=SYSTEM)
    assert caught.value.field == "name"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_api_answers_400_naming_the_field(world, client_for, name):
    client = client_for(key=world.admin_key)
    created = client.post("/api/budgets", {"name": name, "amount": "10"}, format="json")
    budget = make_budget(world.tenant, name="Monthly")
    changed = client.patch(f"/api/budgets/{budget.pk}", {"name": name}, format="json")
    for response in (created, changed):
        assert response.status_code == 400, response.json()
        assert list(response.json()["error"]["fields"]) == ["name"]
        assert "control characters" in response.json()["error"]["message"]
    assert list(Budget.objects.values_list("name", flat=True)) == ["Monthly"]


def test_console_form_shows_the_error_next_to_the_name(world, client_for):
    client = client_for(user=world.owner)
    form = {
        "name": "Monthly\r\nX-Injected: 1",
        "scope": "tenant",
        "amount": "10",
        "period": "month",
        "thresholds": "50, 80, 100",
        "action": "alert",
        "enabled": "on",
    }
    response = client.post("/app/acme/budgets/new/", form)
    assert response.status_code == 400
    assert "line breaks or other control characters" in response.content.decode()
    assert not Budget.objects.exists()


def test_admin_form_refuses_it(world, client):
    client.force_login(
        get_user_model().objects.create_superuser("root", "root@tollgate.test", "pw")
    )
    form = {
        "tenant": world.tenant.pk,
        "name": "Daily\x0bcap",
        "scope": "tenant",
        "api_key": "",
        "amount": "5",
        "period": "day",
        "thresholds": "[100]",
        "action": "alert",
        "downgrade_alias": "",
        "webhook_url": "",
        "enabled": "on",
    }
    response = client.post("/admin/billing/budget/add/", form)
    assert response.status_code == 200
    assert "line breaks or other control characters" in response.content.decode()
    assert not Budget.objects.exists()


def test_names_in_other_scripts_and_with_spaces_are_fine(world, client_for):
    response = client_for(key=world.admin_key).post(
        "/api/budgets", {"name": "Büro – 月額", "amount": "10"}, format="json"
    )
    assert response.status_code == 201, response.json()
