"""The support dashboards: who may open them, the all-tenants figures (each tenant's own
time zone, from the rollups), sorting and searching, provider health from the histograms the
ledger writer keeps and Redis, the tenant admin's cost columns, and that no page shows a provider key."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.ledger import usage_records_write
from billing.models import Budget, TenantDaily, UsageDaily
from billing.periods import local_today
from billing.records import UsageRecord
from core.redis import get_redis
from providers.cooldowns import cooldown_key
from support.selectors import platform_health, tenants_dashboard, top_spenders, trends_fill
from tenants.models import Project, Tenant
from tests.billing.usage.factories import record, usage
from tests.config.console.conftest import OWN_KEY, PLATFORM_KEY

pytestmark = pytest.mark.django_db

PAGES = ["/support/", "/support/?sort=-spend_month&q=a", "/support/providers/", "/support/providers/?window=day"]
EAST, WEST = "Pacific/Kiritimati", "Pacific/Pago_Pago"  # UTC+14 and UTC-11: never the same date
NOW = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)  # Kiritimati: 1 March 19:00; Pago Pago: 28 February 18:00


def rollup(tenant, day, *, requests, cost, errors=0, model=0, key=0, unpriced=0):
    """A day's rollups as the ledger writer leaves them: the model × key row and its
    tenant × day total."""
    UsageDaily.objects.create(tenant=tenant, day=day, provider_model_id=model, api_key_id=key, requests=requests,
                              errors=errors, cost=Decimal(cost), unpriced=unpriced)
    total, _ = TenantDaily.objects.get_or_create(tenant=tenant, day=day)
    TenantDaily.objects.filter(pk=total.pk).update(requests=F("requests") + requests, errors=F("errors") + errors,
                                                   cost=F("cost") + Decimal(cost), unpriced=F("unpriced") + unpriced)


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", PAGES)
def test_support_pages_refuse_everyone_but_support_staff(console, login, url):
    world = console.world
    response = login(None).get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    for user in (world.owner, world.admin, world.viewer, world.other_owner, world.plain_staff):
        assert login(user).get(url).status_code == 403, (url, user)
    world.support.is_active = False
    world.support.save()
    assert login(world.support).get(url).status_code in (302, 403)
    world.support.is_active = True
    world.support.save()
    assert login(world.support).get(url).status_code == 200


def test_support_pages_refuse_a_tenant_owner_who_is_also_staff_without_the_permission(console, login):
    owner = console.world.owner
    owner.is_staff = True
    owner.save()
    assert login(owner).get("/support/").status_code == 403
    assert login(owner).get("/support/providers/").status_code == 403


# --- all tenants --------------------------------------------------------------------------------


@pytest.fixture
def zoned(console):
    """acme far east, other far west, with rollups around NOW and budgets."""
    acme, other = console.tenant, console.world.other
    Tenant.objects.filter(pk=acme.pk).update(timezone=EAST)
    Tenant.objects.filter(pk=other.pk).update(timezone=WEST)
    d = lambda s: datetime.fromisoformat(s).date()  # noqa: E731
    rollup(acme, d("2026-03-01"), requests=10, errors=1, cost="1.5", model=console.gpt.pk, key=console.chat_key.pk)
    rollup(acme, d("2026-02-28"), requests=5, cost="2")  # acme's last month; in its trend
    rollup(other, d("2026-02-28"), requests=8, errors=2, cost="3", unpriced=1)  # other's today
    rollup(other, d("2026-02-01"), requests=4, cost="1")  # other's month
    rollup(other, d("2026-03-01"), requests=100, cost="50")  # other's tomorrow: not counted
    rollup(other, d("2026-01-31"), requests=1, cost="0.25")  # other's last month
    # A per-key daily budget of acme at 150 %, a disabled one of other that would be higher.
    Budget.objects.create(tenant=acme, name="Key day", scope="key", api_key=console.chat_key, amount=1, period="day")
    Budget.objects.create(tenant=other, name="Off", amount=Decimal("0.5"), enabled=False)
    return console


def test_all_tenants_figures_are_in_each_tenants_own_time_zone(zoned):
    rows = {r.slug: r for r in tenants_dashboard(now=NOW)}
    acme, other = rows["acme"], rows["other"]
    assert acme.today.isoformat() == "2026-03-01" and other.today.isoformat() == "2026-02-28"
    assert (acme.spend_today, acme.spend_month) == (Decimal("1.5"), Decimal("1.5"))
    assert (acme.requests_month, acme.errors_month, acme.error_percent) == (10, 1, "10.0 %")
    assert acme.budget_percent == Decimal("150.0")  # max(Monthly $10: 15 %, key day $1: 150 %)
    assert acme.trend == []  # drawn only for the rows shown
    trends_fill([acme, other])
    assert acme.trend[-2:] == [Decimal(2), Decimal("1.5")] and len(acme.trend) == 14
    assert (other.spend_today, other.spend_month) == (Decimal(3), Decimal(4))
    assert (other.requests_today, other.requests_month, other.errors_month, other.unpriced_month) == (8, 12, 2, 1)
    assert other.error_percent == "16.7 %"
    assert other.budget_percent == Decimal("80.0")  # Theirs $5: 4 / 5; the disabled budget is ignored
    assert other.trend[-1] == Decimal(3) and other.trend[-2] == Decimal(0)
    assert [r.slug for r in top_spenders(list(rows.values()))] == ["other", "acme"]


def test_all_tenants_sorting_and_search(zoned):
    order = lambda **kw: [r.slug for r in tenants_dashboard(now=NOW, **kw)]  # noqa: E731
    assert order() == ["acme", "other"]
    assert order(sort="-tenant") == ["other", "acme"]
    assert order(sort="-spend_month") == ["other", "acme"]
    assert order(sort="spend_month") == ["acme", "other"]
    assert order(sort="-spend_today") == ["other", "acme"]
    assert order(sort="-budget") == ["acme", "other"]
    assert order(sort="error_rate") == ["acme", "other"]
    assert order(sort="-requests") == ["other", "acme"]
    assert order(sort="nonsense") == ["acme", "other"]
    assert order(query="OTH") == ["other"]
    assert order(query="acme") == ["acme"] and order(query="Other Co") == ["other"]
    assert order(query="nobody") == []


def test_all_tenants_page_renders_rows_links_sort_and_search(console, login):
    acme, other = console.tenant, console.world.other
    rollup(acme, local_today(acme.timezone), requests=10, errors=1, cost="1.5")
    rollup(other, local_today(other.timezone), requests=3, cost="7.25")
    client = login(console.world.support)
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/support/").content.decode()
    assert len(queries) <= 10
    top = page[page.index("Top spenders"):page.index("<table")]
    assert top.index('href="/app/other/"') < top.index('href="/app/acme/"')  # $7.25 before $1.50
    assert 'href="/app/acme/usage/"' in page and "$1.5" in page and "$7.25" in page and "10.0 %" in page
    assert "<polyline points=" in page and "15.0 %" in page  # acme's Monthly budget: $1.50 of $10
    table = page[page.index("<table"):]
    sorted_page = client.get("/support/?sort=-spend_month").content.decode()
    sorted_table = sorted_page[sorted_page.index("<table"):]
    assert sorted_table.index('href="/app/other/"') < sorted_table.index('href="/app/acme/"')
    assert table.index('href="/app/acme/"') < table.index('href="/app/other/"')
    assert 'aria-sort="descending"' in sorted_page
    searched = client.get("/support/?q=other").content.decode()
    assert 'href="/app/other/"' in searched and 'href="/app/acme/"' not in searched


def test_all_tenants_page_paginates_with_a_bounded_number_of_queries(console, login):
    Tenant.objects.bulk_create([Tenant(slug=f"t{i:03d}", name=f"T {i}", timezone="Asia/Tokyo") for i in range(60)])
    for tenant in Tenant.objects.filter(slug__in=["t000", "t059"]):
        rollup(tenant, local_today(tenant.timezone), requests=1, cost="1")
    client = login(console.world.support)
    with CaptureQueriesContext(connection) as queries:
        first = client.get("/support/").content.decode()
    assert len(queries) <= 10
    assert "page 1 of 2" in first and 'rel="next"' in first and 'href="/app/t047/"' in first
    assert 'href="/app/t048/"' not in first
    second = client.get("/support/?page=2").content.decode()
    assert 'href="/app/t059/"' in second and 'href="/app/acme/"' not in second.split("<table")[1]


# --- providers ----------------------------------------------------------------------------------


@pytest.fixture
def traffic(console):
    now = timezone.now()
    rows = []
    for i, (latency, status, ago) in enumerate([(100, "ok", 5), (200, "ok", 10), (300, "error", 20), (400, "ok", 30),
                                                (1000, "ok", 120)]):  # the last: 2 hours ago
        at = now - timedelta(minutes=ago)
        rows.append(UsageRecord(request_id=f"req_sup_{i}", tenant_id=console.tenant.pk,
                                api_key_id=console.chat_key.pk, provider_id=console.platform.pk,
                                provider_model_id=console.gpt.pk, status=status, latency_ms=latency,
                                input_tokens=10, output_tokens=5, cost=Decimal("0.01"), created_at=at,
                                day=at.date()))
    rows.append(UsageRecord(request_id="req_sup_own", tenant_id=console.tenant.pk, api_key_id=console.chat_key.pk,
                            provider_id=console.own.pk, provider_model_id=console.llama.pk, status="rejected",
                            latency_ms=50, created_at=now - timedelta(minutes=1), day=now.date()))
    usage_records_write(rows)
    get_redis().set(cooldown_key(console.tenant.pk, console.gpt.pk), b"1", ex=45)
    return console


def test_provider_health_from_the_ledger_and_redis(traffic):
    c = traffic
    hour = platform_health(window="hour")
    assert (hour.totals.requests, hour.totals.errors) == (5, 2)
    providers = {p.pk: p for p in hour.providers}
    platform = providers[c.platform.pk]
    assert (platform.requests, platform.errors, platform.error_percent) == (4, 1, "25.0 %")
    # From the latency histograms: within 5 % of percentile_cont over 100, 200, 300 and 400 ms.
    assert (platform.p50, platform.p95) == (pytest.approx(250, rel=0.05), pytest.approx(385, rel=0.05))
    assert platform.cooldowns == 1 and platform.owner_slug == ""
    gpt = next(m for m in platform.models if m.pk == c.gpt.pk)
    assert (gpt.model_id, gpt.requests, gpt.cooldowns) == ("gpt-4o", 4, 1)
    own = providers[c.own.pk]
    assert (own.owner_slug, own.requests, own.errors) == ("acme", 1, 1)
    assert c.other_provider.pk not in providers  # a tenant's own provider without traffic
    [cooldown] = hour.cooldowns
    assert (cooldown.tenant_slug, cooldown.label) == ("acme", "openai:gpt-4o") and 0 < cooldown.seconds_left <= 45

    day = platform_health(window="day")
    platform = {p.pk: p for p in day.providers}[c.platform.pk]
    assert (platform.requests, platform.p50) == (5, pytest.approx(300, rel=0.05))


def test_providers_page_shows_health_and_window(traffic, login):
    client = login(traffic.world.support)
    page = client.get("/support/providers/").content.decode()
    platform = next(p for p in platform_health(window="hour").providers if p.pk == traffic.platform.pk)
    assert "gpt-4o" in page and "25.0 %" in page
    assert f">{platform.p50:.0f}<" in page and f">{platform.p95:.0f}<" in page
    assert "openai:gpt-4o" in page and 'href="/app/acme/"' in page  # the cooldown
    assert re.search(r'href="\?window=hour" aria-current="page"', page)
    day = client.get("/support/providers/?window=day").content.decode()
    assert re.search(r'href="\?window=day" aria-current="page"', day)
    assert client.get("/support/providers/?window=week").status_code == 200  # falls back to the hour


# --- Django admin -------------------------------------------------------------------------------


def test_tenant_admin_shows_cost_this_month_and_by_model(console, login):
    acme, other = console.tenant, console.world.other
    today = local_today(acme.timezone)
    rollup(acme, today, requests=3, cost="1.25", model=console.gpt.pk)
    rollup(acme, today, requests=2, cost="0.5", model=console.llama.pk, key=console.chat_key.pk)
    rollup(other, local_today(other.timezone), requests=1, cost="9")
    client = login(console.world.support)  # view-only admin access
    with CaptureQueriesContext(connection) as few:
        changelist = client.get("/admin/tenants/tenant/")
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert "cost this month" in html.lower() and "$1.7500" in html and "$9.0000" in html
    Tenant.objects.bulk_create([Tenant(slug=f"x{i:02d}", name=f"X {i}") for i in range(20)])
    with CaptureQueriesContext(connection) as many:
        assert client.get("/admin/tenants/tenant/").status_code == 200
    assert len(many) == len(few)  # not one query per row
    change = client.get(f"/admin/tenants/tenant/{acme.pk}/change/").content.decode()
    assert "cost this month by model" in change.lower()
    assert "openai:gpt-4o" in change and "lab:meta-llama/llama-3.1-8b:free" in change
    assert "$1.2500" in change and "$0.5000" in change and "$1.7500" in change


# --- secrets ------------------------------------------------------------------------------------


def test_no_support_page_reveals_provider_keys(traffic, login):
    c = traffic
    client = login(c.world.support)
    urls = [*PAGES, "/admin/tenants/tenant/", f"/admin/tenants/tenant/{c.tenant.pk}/change/",
            "/app/acme/", "/app/acme/usage/"]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        for secret in (PLATFORM_KEY, OWN_KEY, "sk-theirs-0000", c.world.chat_key, c.world.admin_key):
            assert secret not in body, (url, secret)


def test_tenant_admin_shows_cost_this_month_by_project(console, login):
    acme = console.tenant
    bot = Project.objects.create(tenant=acme, slug="bot", name="Support bot")
    default = Project.objects.get(tenant=acme, slug="default")
    now = timezone.now()
    record(acme, [usage(acme, at=now, project_id=bot.pk, cost=Decimal("1.25")),
                  usage(acme, at=now, project_id=bot.pk, cost=Decimal("0.25")),
                  usage(acme, at=now, project_id=default.pk, cost=Decimal("0.5"))])
    theirs = Project.objects.get(tenant=console.world.other, slug="default")
    record(console.world.other, [usage(console.world.other, at=now, project_id=theirs.pk, cost=Decimal("9"))])
    change = login(console.world.support).get(f"/admin/tenants/tenant/{acme.pk}/change/").content.decode()
    table = re.search(r'<table class="cost-by-project">(.*?)</table>', change, re.S).group(1)
    rows = re.findall(r"<tr><td>([^<]*)</td><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td></tr>", table)
    assert rows == [("bot", "2", "$1.5000"), ("default", "1", "$0.5000")]
    assert "$9.0000" not in table


def test_budget_column_counts_project_budgets_and_leaves_end_user_and_model_ones_out(zoned):
    acme = zoned.tenant
    project = zoned.chat_key.project
    # acme's key spent $1.50 today: its project's day budget of $0.50 is at 300 %.
    Budget.objects.create(tenant=acme, name="Project day", scope="project", project=project, amount=Decimal("0.5"),
                          period="day")
    # Each end user has their own spend, and a model filter counts part of it: neither is in the column.
    Budget.objects.create(tenant=acme, name="Each user", scope="end_user", amount=Decimal("0.01"), period="day")
    Budget.objects.create(tenant=acme, name="One model", model="gpt-4o", amount=Decimal("0.01"), period="day")
    # Another project of acme, without spend.
    empty = Project.objects.create(tenant=acme, slug="empty", name="Empty")
    Budget.objects.create(tenant=acme, name="Empty", scope="project", project=empty, amount=Decimal("1"), period="day")
    rows = {r.slug: r for r in tenants_dashboard(now=NOW)}
    assert rows["acme"].budget_percent == Decimal("300.0")
