"""The console's end-users page: the top list with its filters and statuses, blocking and
unblocking (admins), read-only for viewers, another tenant's blocks 404. The browser test
clicks Block and Unblock in a real chromium."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.end_users import end_user_block
from billing.ledger import usage_records_write
from billing.models import EndUserBlock
from billing.records import UsageRecord
from tenants.access import SYSTEM
from tenants.models import AuditEvent, Project
from tenants.services import api_key_create
from tests.config.console.conftest import build_console
from tests.config.console.test_e2e import log_in, new_page, shot  # noqa: F401 - new_page: the browser fixture

_ids = itertools.count(1)


def spend(tenant, end_user: str, cost: str, *, key=None, days_ago: int = 0) -> None:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    usage_records_write([UsageRecord(
        request_id=f"req_eu_page{next(_ids):012x}", tenant_id=tenant.pk, created_at=at, day=at.date(),
        api_key_id=key.pk if key else None, project_id=key.project_id if key else None, status="ok",
        input_tokens=1000, output_tokens=100, cost=Decimal(cost), end_user=end_user)])


def seed(world):
    bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Support bot")
    bot_key, _ = api_key_create(tenant=world.tenant, name="bot key", project=bot, actor=SYSTEM)
    spend(world.tenant, "alice@example.com", "2.5", key=bot_key)
    spend(world.tenant, "bob", "0.75", key=bot_key, days_ago=12)
    spend(world.tenant, "carol", "0.1")  # no key, no project
    spend(world.other, "mallory", "9")
    return bot


@pytest.mark.django_db
def test_the_page_lists_the_top_end_users_with_filters_and_a_nav_link(console, login):
    bot = seed(console.world)
    end_user_block(tenant=console.tenant, end_user="bob", project=bot, reason="too many retries", actor=SYSTEM)
    client = login(console.world.viewer)
    page = client.get("/app/acme/end-users/").content.decode()
    assert 'href="/app/acme/end-users/" aria-current="page"' in page
    assert page.index("alice@example.com") < page.index(">bob<") < page.index(">carol<")
    assert "$2.50" in page and "1,100" in page
    assert "blocked in bot" in page and "too many retries" in page
    assert "mallory" not in page
    assert "Block" not in page.split("Blocked end users")[0].split("</thead>")[1]  # no buttons for viewers
    assert "Unblock" not in page and "Block an end user" not in page

    week = client.get("/app/acme/end-users/?period=7d").content.decode()
    assert "alice@example.com" in week and ">bob<" not in week.split("Blocked end users")[0]
    in_bot = client.get(f"/app/acme/end-users/?project={bot.pk}&search=ALI").content.decode()
    assert "alice@example.com" in in_bot and ">carol<" not in in_bot
    bad = client.get("/app/acme/end-users/?period=forever")
    assert bad.status_code == 400 and "forever" in bad.content.decode()


@pytest.mark.django_db
def test_an_admin_blocks_and_unblocks_from_the_page(console, login):
    bot = seed(console.world)
    client = login(console.world.admin)
    response = client.post("/app/acme/end-users/block/", {"end_user": "alice@example.com", "project": str(bot.pk),
                                                         "reason": "abuse", "back": "period=7d&search=ali"})
    assert response.status_code == 302 and response["Location"] == "/app/acme/end-users/?period=7d&search=ali"
    block = EndUserBlock.objects.get()
    assert (block.end_user, block.project, block.reason, block.created_by) == (
        "alice@example.com", bot, "abuse", console.world.admin)
    page = client.get(response["Location"]).content.decode()
    assert "blocked in every project" not in page and "blocked in bot" in page
    assert "End user &#x27;alice@example.com&#x27; blocked in project &#x27;bot&#x27;" in page

    empty = client.post("/app/acme/end-users/block/", {"end_user": " ", "project": ""}, follow=True)
    assert "end_user must not be empty" in empty.content.decode()
    unknown = client.post("/app/acme/end-users/block/", {"end_user": "x", "project": "999999"}, follow=True)
    assert "Select a valid choice" in unknown.content.decode()
    assert EndUserBlock.objects.count() == 1

    unblocked = client.post(f"/app/acme/end-users/blocks/{block.pk}/unblock/", {"back": ""})
    assert unblocked.status_code == 302 and unblocked["Location"] == "/app/acme/end-users/"
    assert not EndUserBlock.objects.exists()
    assert list(AuditEvent.objects.filter(action__startswith="end_user.").values_list("action", flat=True)
                .order_by("id")) == ["end_user.block", "end_user.unblock"]


@pytest.mark.django_db
def test_viewers_cannot_block_and_another_tenants_blocks_are_404(console, login):
    theirs, _ = end_user_block(tenant=console.world.other, end_user="mallory", actor=SYSTEM)
    mine, _ = end_user_block(tenant=console.tenant, end_user="alice", actor=SYSTEM)
    viewer = login(console.world.viewer)
    assert viewer.post(f"/app/acme/end-users/blocks/{mine.pk}/unblock/").status_code == 403
    assert viewer.post("/app/acme/end-users/block/", {"end_user": "bob"}).status_code == 403
    owner = login(console.world.owner)
    assert owner.post(f"/app/acme/end-users/blocks/{theirs.pk}/unblock/").status_code == 404
    assert login(console.world.other_owner).post(f"/app/acme/end-users/blocks/{mine.pk}/unblock/").status_code == 404
    assert EndUserBlock.objects.count() == 2


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_blocking_and_unblocking_in_the_browser(world, new_page, settings):  # noqa: F811 - the fixture
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    build_console(world)
    bot = seed(world)
    page = new_page()
    log_in(page, "admin@acme.test", then="/app/acme/")
    page.get_by_role("link", name="End users").click()
    page.wait_for_url("**/app/acme/end-users/")
    page.get_by_label("Period").select_option("7d")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**period=7d**")
    table = page.get_by_role("region", name="Top end users")
    row = table.locator("tr", has_text="alice@example.com")
    assert "ok" in row.inner_text() and table.locator("tr", has_text="bob").count() == 0
    shot(page, "end-users")

    row.locator("summary", has_text="Block").click()  # the summary opens the row's form
    row.get_by_label("Blocked in").select_option(label="project bot")
    row.get_by_label("Reason").fill("scraping the catalogue")
    row.get_by_role("button", name="Block alice@example.com").click()
    page.wait_for_load_state()
    assert "period=7d" in page.url
    assert page.get_by_role("status").filter(has_text="blocked in project 'bot'").count() == 1
    row = page.get_by_role("region", name="Top end users").locator("tr", has_text="alice@example.com")
    assert "blocked in bot" in row.inner_text() and "scraping the catalogue" in row.inner_text()
    block = EndUserBlock.objects.get()
    assert (block.end_user, block.project_id, block.reason) == ("alice@example.com", bot.pk, "scraping the catalogue")

    row.get_by_role("button", name="Unblock alice@example.com").click()  # confirmed (the page accepts dialogs)
    page.wait_for_load_state()
    row = page.get_by_role("region", name="Top end users").locator("tr", has_text="alice@example.com")
    row.locator(".status.ok").wait_for()
    assert not EndUserBlock.objects.exists()

    # blocking someone not in the list, in every project
    form = page.locator("form", has=page.get_by_role("heading", name="Block an end user"))
    form.get_by_label("End user").fill("dave-the-bot")
    form.get_by_role("button", name="Block").click()
    page.wait_for_load_state()
    blocks = page.get_by_role("region", name="Blocked end users")
    assert "every project" in blocks.locator("tr", has_text="dave-the-bot").inner_text()
    assert EndUserBlock.objects.get().project is None
