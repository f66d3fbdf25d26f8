"""The console end to end, in a real headless browser: Debian's chromium driven by Playwright
for Python, against pytest-django's live server (a real HTTP server on loopback) and, for the
provider pages, a loopback fake OpenAI server.

A missing chromium or Playwright makes these tests FAIL (never skip) with what to install.
Screenshots of the main pages land in test-output/screenshots/ (gitignored)."""

import asyncio
import os
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections

from gateway.state import RedisState
from providers.models import ModelAlias, Provider
from tenants.models import ApiKey, Tenant
from tests.config.console.conftest import build_console, write_usage
from tests.fakes import FakeOpenAI

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = Path(django_settings.BASE_DIR) / "test-output" / "screenshots"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def browser_problem() -> str:
    """Why the browser cannot run here, or "" when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("Playwright for Python is not installed. Add `playwright` to the dev dependencies "
                "(.venv/bin/pip install playwright). Do not run `playwright install`: these tests drive "
                "Debian's chromium.")
    if not os.path.exists(CHROMIUM):
        return (f"Chromium is not installed at {CHROMIUM}. Install Debian's chromium "
                "(`apt-get install -y chromium`; `make test` and .ci/run should do it) or point "
                "CHROMIUM_PATH at a chromium binary.")
    return ""


@pytest.fixture
def new_page(live_server, monkeypatch):
    """``new_page(viewport)`` opens a page on the live server in a fresh browser context.

    The browser starts on the first call, inside the test, so a missing chromium fails the
    test itself. Playwright's sync API runs an event loop in this thread while it is open; the
    test's own ORM calls are synchronous all the same (DJANGO_ALLOW_ASYNC_UNSAFE), and the
    loop is closed at teardown, before the database is flushed."""
    state = {}

    def make(viewport=LAPTOP):
        if "browser" not in state:
            problem = browser_problem()
            if problem:
                pytest.fail(problem, pytrace=False)
            from playwright.sync_api import sync_playwright

            monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
            state["playwright"] = sync_playwright().start()
            try:
                state["browser"] = state["playwright"].chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            except Exception as exc:
                pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}", pytrace=False)
        context = state["browser"].new_context(viewport=viewport, base_url=live_server.url)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm / data-confirm
        return page

    yield make
    # Connections the test body opened while Playwright's loop was running belong to that
    # context: close them now, or the test database cannot be dropped at the end of the run.
    connections.close_all()
    if "browser" in state:
        state["browser"].close()
    if "playwright" in state:
        state["playwright"].stop()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page, email: str, password: str = "pw", then: str = "/app/") -> None:
    page.goto(then)
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def chart_drawn(page, canvas_id: str) -> dict:
    """Wait until Chart.js has drawn on the canvas; its dataset count and painted pixels."""
    page.wait_for_function(
        """id => { const c = document.getElementById(id); const chart = c && window.Chart && Chart.getChart(c);
                   return chart && chart.data.datasets.length > 0 && !chart.animating; }""",
        arg=canvas_id,
    )
    page.wait_for_timeout(400)  # let the (short) entry animation finish painting
    return page.evaluate(
        """id => { const c = document.getElementById(id); const chart = Chart.getChart(c);
                   const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let painted = 0; for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) painted++;
                   return {datasets: chart.data.datasets.length, labels: chart.data.labels.length,
                           nonzero: chart.data.datasets.some(d => d.data.some(v => v > 0)), painted}; }""",
        canvas_id,
    )


def test_login_change_default_model_and_create_a_key_seen_once(world, new_page):
    console = build_console(world)
    page = new_page()

    # given the admin logs in, /app/ opens their only tenant's overview
    log_in(page, "admin@acme.test")
    assert page.url.endswith("/app/acme/")
    assert page.get_by_role("heading", name="Overview").is_visible()

    # when they pick another default model on the settings page
    page.get_by_role("link", name="LLM settings").click()
    page.get_by_label("openai:gpt-4o", exact=True).check()
    page.get_by_label("Temperature").fill("0.3")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").wait_for()
    tenant = Tenant.objects.get(pk=console.tenant.pk)
    assert tenant.default_model == "openai:gpt-4o" and tenant.temperature == 0.3
    assert page.get_by_label("openai:gpt-4o", exact=True).is_checked()

    # and a value the API refuses is refused here, next to its field
    page.get_by_label("Top p").fill("1.5")
    page.get_by_role("button", name="Save settings").click()
    assert page.locator("#id_top_p_error").inner_text().strip() != ""
    assert page.get_by_label("Top p").get_attribute("aria-invalid") == "true"

    # when they create a key, the full key is shown once, with a working copy button
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("e2e key")
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#new-key").input_value()
    assert raw.startswith("tg_") and len(raw) == 43
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == raw
    key = ApiKey.objects.get(tenant=console.tenant, name="e2e key")
    assert raw.startswith(key.prefix)

    # then it is never shown again
    page.get_by_role("link", name="Done").click()
    assert raw not in page.content()
    row = page.locator(f"#key-{key.pk}")
    assert key.prefix in row.inner_text()

    # and revoking it (htmx, after a confirmation) updates the row in place
    row.get_by_role("button", name="Revoke").click()
    row.get_by_text("Revoked.").wait_for()
    assert "revoked" in page.locator(f"#key-{key.pk}").inner_text()
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_add_test_and_sync_a_provider_against_a_loopback_fake(world, new_page, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the fake listens on 127.0.0.1
    build_console(world)
    page = new_page()
    log_in(page, "admin@acme.test")

    with FakeOpenAI(models=["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"], api_key="sk-fake-e2e-key") as fake:
        page.goto("/app/acme/providers/new/")
        page.get_by_label("Name", exact=True).fill("fake")
        page.get_by_label("Base URL").fill(fake.base_url)

        # a wrong key: the test says so in words
        page.get_by_label("API key").fill("sk-wrong-key-0000")
        page.get_by_role("button", name="Test connection").click()
        failure = page.locator("#test-result")
        failure.get_by_text("Connection failed").wait_for()
        assert "sk-wrong-key-0000" not in failure.inner_text()

        # the right key: reachable, with the models it lists
        page.get_by_label("API key").fill("sk-fake-e2e-key")
        page.get_by_role("button", name="Test connection").click()
        page.locator("#test-result").get_by_text("Reachable").wait_for()
        assert "3 models" in page.locator("#test-result").inner_text()
        shot(page, "provider-form")

        page.get_by_role("button", name="Add provider").click()
        page.get_by_text("Provider 'fake' added.").wait_for()
        provider = Provider.objects.get(owner=world.tenant, name="fake")
        # the key is shown masked, never in full
        row = page.locator(f"#provider-{provider.pk}")
        assert "sk-…-key" in row.inner_text() and "sk-fake-e2e-key" not in page.content()

        # Sync now: a progress indicator while it runs, then the result
        fake.set_fault("slow", delay=1.0, times=1, path="/v1/models")
        row.get_by_role("button", name="Sync now").click()
        page.locator(f"#sync-progress-{provider.pk}").wait_for(state="visible")
        result = page.locator(f"#sync-result-{provider.pk}")
        result.get_by_text("Synced").wait_for()
        assert "3 added" in result.inner_text().replace("\n", " ")
        assert "OK" in page.locator(f"#sync-state-{provider.pk}").inner_text()
        shot(page, "providers")

        # a failing sync says why
        fake.set_fault("status", status=500, times=1, path="/v1/models")
        row.get_by_role("button", name="Sync now").click()
        result.get_by_text("Sync failed").wait_for()

    # the synced models are on the models page, searchable
    page.goto("/app/acme/models/?provider=fake")
    page.get_by_label("Search").fill("mini")
    page.wait_for_function("() => document.querySelectorAll('#models-results tbody tr').length === 1")
    assert "gpt-4o-mini" in page.locator("#models-results").inner_text()


def test_create_an_alias_spreading_over_two_deployments_and_see_their_traffic(world, new_page, settings):
    console = build_console(world)

    # given traffic on both models, written by the gateway's own writer before the browser starts
    async def traffic():
        state = RedisState(settings.REDIS_URL)
        try:
            for n, model in enumerate([console.gpt, console.gpt, console.gpt, console.llama]):
                await state.take(tenant_id=console.tenant.pk, provider_model_id=model.pk, request_id=f"e2e-{n}")
        finally:
            await state.close()

    if time.time() % 60 > 40:  # this minute's counters are read back: write and read in one UTC minute
        time.sleep(60.2 - time.time() % 60)
    asyncio.run(traffic())
    page = new_page()
    log_in(page, "admin@acme.test", then="/app/acme/aliases/new/")

    # when the admin creates an alias with two deployments in group 0, weighted 3 : 1, a limit
    page.get_by_label("Name", exact=True).fill("spread")
    page.get_by_label("Model of deployment 1").select_option("openai:gpt-4o")
    page.get_by_label("Group of deployment 1").fill("0")
    page.get_by_label("Weight of deployment 1").fill("3")
    page.get_by_label("RPM limit of deployment 1").fill("100")
    page.get_by_label("Model of deployment 2").select_option("lab:meta-llama/llama-3.1-8b:free")
    page.get_by_label("Group of deployment 2").fill("0")
    assert page.get_by_label("Order of deployment 2").input_value() == "2"  # the empty rows are numbered
    page.get_by_label("Strategy").select_option("least-busy")
    page.get_by_label("Session affinity").check()
    page.get_by_label("Context-window fallbacks").fill("smart-cheap")
    shot(page, "alias-deployments-form")
    page.get_by_role("button", name="Create alias").click()
    page.get_by_text("Alias 'spread' created.").wait_for()

    # then the aliases page lists both deployments with their settings and share of traffic
    alias = ModelAlias.objects.get(tenant=console.tenant, name="spread")
    assert [(t.priority, t.weight, t.rpm_limit) for t in alias.targets.order_by("position")] == [
        (0, 3, 100), (0, 1, None)]
    table = page.get_by_role("region", name="Deployments of spread")
    gpt = table.get_by_role("row", name="openai:gpt-4o")
    assert " ".join(gpt.inner_text().split()) == "openai:gpt-4o 0 3 75 % (3) 3 / 100 0 / none 3 — / — none"
    llama = table.get_by_role("row", name="lab:meta-llama/llama-3.1-8b:free")
    assert "25 % (1)" in " ".join(llama.inner_text().split())
    card = page.get_by_role("region", name="spread", exact=True)
    assert "Strategy: fewest requests in flight · session affinity on" in " ".join(card.inner_text().split())
    shot(page, "aliases-deployments")


def test_overview_chart_draws_and_main_pages_render_at_laptop_and_phone_widths(world, new_page):
    console = build_console(world)
    write_usage(console, days=20, per_day=4)
    page = new_page()
    log_in(page, "admin@acme.test")

    # the overview's 30-day stacked chart is drawn from the rollups
    page.goto("/app/acme/")
    drawn = chart_drawn(page, "cost-chart")
    assert drawn["datasets"] == 2 and drawn["labels"] == 30 and drawn["nonzero"] and drawn["painted"] > 500
    assert page.locator(".budget .bar[role=progressbar]").count() == 1
    shot(page, "overview")

    pages = {"settings": "settings/", "providers": "providers/", "models": "models/", "keys": "keys/",
             "aliases": "aliases/", "alias-edit": f"aliases/{console.alias.pk}/", "budgets": "budgets/",
             "budget-edit": f"budgets/{console.budget.pk}/", "usage": "usage/", "members": "members/"}
    for name, path in pages.items():
        response = page.goto(f"/app/acme/{path}")
        assert response.status == 200, name
        shot(page, name)
    page.goto("/app/acme/usage/?view=week&by=conversation")
    token_chart = chart_drawn(page, "token-chart")
    assert token_chart["datasets"] == 3 and token_chart["nonzero"]
    shot(page, "usage-weekly-by-conversation")

    # keyboard: the first Tab lands on the skip link, which moves focus to the content
    page.goto("/app/acme/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"

    # phone width: the nav collapses behind a Menu button, tables scroll inside their box and
    # the page itself never scrolls sideways
    phone = new_page(PHONE)
    log_in(phone, "viewer@acme.test", then="/app/acme/")
    assert not phone.locator("#site-nav").is_visible()
    phone.get_by_role("button", name="Menu").click()
    assert phone.locator("#site-nav").is_visible()
    chart_drawn(phone, "cost-chart")
    shot(phone, "phone-overview")
    for name, path in {"models": "models/", "usage": "usage/", "keys": "keys/", "aliases": "aliases/",
                       "settings": "settings/"}.items():
        phone.goto(f"/app/acme/{path}")
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        shot(phone, f"phone-{name}")
    # the viewer sees the settings read-only: the controls are disabled, there is no save button
    assert phone.get_by_label("Temperature").is_disabled()
    assert phone.get_by_role("button", name="Save settings").count() == 0


def test_support_pages_sort_switch_windows_and_draw_sparklines(world, new_page):
    console = build_console(world)
    write_usage(console, days=10, per_day=4)
    page = new_page()
    log_in(page, "support@tollgate.test", then="/support/")

    # every tenant is listed; acme's 14-day sparkline is drawn (a polyline with 14 points)
    row = page.locator("table.support-tenants tbody tr", has_text="acme")
    points = row.locator("svg.spark polyline").get_attribute("points").split()
    assert len(points) == 14 and len({p.split(",")[1] for p in points}) > 1  # not a flat line
    assert "Cost per day, last 14 days" in row.locator("svg.spark").get_attribute("aria-label")
    assert page.locator("table.support-tenants tbody tr", has_text="other").count() == 1
    shot(page, "support-tenants")

    # sorting by a column header: highest spend first, and the header says so
    page.get_by_role("link", name="Spend this month").click()
    page.wait_for_url("**/support/?sort=-spend_month")
    first = page.locator("table.support-tenants tbody tr").first
    assert "acme" in first.inner_text()
    assert page.locator('th[aria-sort="descending"]').inner_text().strip() == "Spend this month"

    # search, and a tenant's console read-only
    page.get_by_label("Tenant slug or name").fill("oth")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/support/?q=oth**")
    assert page.locator("table.support-tenants tbody tr").count() == 1

    # provider health: the last hour by default, then the last 24 hours
    page.goto("/support/providers/")
    assert page.locator('ul[aria-label="Window"] a[aria-current="page"]').inner_text() == "Last hour"
    health = page.locator("table.support-providers").inner_text()
    assert "gpt-4o" in health
    page.get_by_role("link", name="Last 24 hours").click()
    page.wait_for_url("**/support/providers/?window=day")
    shot(page, "support-providers")

    phone = new_page(PHONE)
    log_in(phone, "support@tollgate.test", then="/support/")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(phone, "phone-support-tenants")


def test_sign_in_with_the_identity_provider(world, new_page, settings):
    """The login page's "Sign in with …" button, through a loopback OpenID Connect issuer and
    back, into the console of the tenant the domain rule gives."""
    from sso.discovery import endpoints_forget
    from tests.fakes.oidc import FakeOIDC
    from tests.sso.conftest import CLIENT_ID, CLIENT_SECRET, sso_settings

    with FakeOIDC(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  claims={"sub": "u-e2e", "email": "dana@acme.com", "email_verified": True}) as issuer:
        sso_settings(settings, issuer, domain_rules="acme.com=acme:viewer")
        try:
            page = new_page()
            page.goto("/accounts/login/")
            page.get_by_role("link", name="Sign in with Acme ID").click()
            page.wait_for_url("**/app/acme/")
            assert "Acme" in page.content()
            assert [r.path for r in issuer.requests if r.path in ("/authorize", "/token")] == ["/authorize", "/token"]
            page.screenshot(path=str(SCREENSHOTS / "sso-signed-in.png"))
        finally:
            endpoints_forget()
    assert world.tenant.memberships.get(user__email="dana@acme.com").role == "viewer"
