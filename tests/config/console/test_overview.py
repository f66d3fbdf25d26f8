"""The overview's figures: read from the daily rollups only (never the ledger), in the
tenant's time zone, in a bounded number of queries whatever the traffic."""

from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.dashboards import CHART_SERIES, budget_bars, overview_get
from billing.models import UsageDaily
from billing.services import budget_create
from providers.models import ProviderModel
from tenants.access import SYSTEM
from tenants.models import Tenant


def rollup(tenant, day: date, model: ProviderModel | None, *, cost: str, requests: int = 1, errors: int = 0,
           unpriced: int = 0, key_id: int = 0) -> UsageDaily:
    return UsageDaily.objects.create(
        tenant=tenant, day=day, provider_id=model.provider_id if model else 0,
        provider_model_id=model.pk if model else 0, api_key_id=key_id, requests=requests, errors=errors,
        cost=Decimal(cost), unpriced=unpriced,
    )


def test_figures_are_counted_in_the_tenants_time_zone(console):
    tenant = console.tenant
    Tenant.objects.filter(pk=tenant.pk).update(timezone="America/New_York")
    tenant.refresh_from_db()
    now = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)  # 22:00 on 28 February in New York
    rollup(tenant, date(2025, 2, 28), console.gpt, cost="1.5", requests=10, errors=1, unpriced=2)
    rollup(tenant, date(2025, 2, 28), console.gpt, cost="0.25", requests=2, key_id=console.chat_key.pk)
    rollup(tenant, date(2025, 2, 1), console.llama, cost="2", requests=5, errors=4)
    rollup(tenant, date(2025, 1, 30), console.gpt, cost="7", requests=3)  # in the chart, not the month
    rollup(tenant, date(2025, 1, 29), console.gpt, cost="100", requests=3)  # in neither
    rollup(console.world.other, date(2025, 2, 28), None, cost="999", requests=99)  # another tenant

    overview = overview_get(tenant=tenant, now=now)

    assert overview.today == date(2025, 2, 28) and overview.month_start == date(2025, 2, 1)
    assert (overview.today_totals.cost, overview.today_totals.requests, overview.today_totals.unpriced) == (
        Decimal("1.75"), 12, 2)
    month = overview.month_totals
    assert (month.cost, month.requests, month.errors, month.error_percent) == (Decimal("3.75"), 17, 5, "29.4 %")
    chart = overview.chart
    assert chart["labels"][0] == "2025-01-30" and chart["labels"][-1] == "2025-02-28" and len(chart["labels"]) == 30
    assert [d["label"] for d in chart["datasets"]] == ["openai:gpt-4o", "lab:meta-llama/llama-3.1-8b:free"]
    gpt = chart["datasets"][0]["data"]
    assert gpt[0] == "7.000000" and gpt[-1] == "1.750000" and gpt[1] == "0.000000"
    assert overview.chart_rows[2] == (date(2025, 2, 1), Decimal("2"))


def test_an_empty_tenant_has_zeros_and_no_error_rate(console):
    overview = overview_get(tenant=console.tenant)
    assert overview.month_totals.cost == Decimal(0) and overview.month_totals.error_percent == "–"
    assert overview.chart["datasets"] == [] and len(overview.chart["labels"]) == 30


def test_many_models_are_drawn_as_the_most_expensive_plus_the_rest(console):
    today = overview_get(tenant=console.tenant).today
    models = [ProviderModel.objects.create(provider=console.own, model_id=f"m{i:02d}")
              for i in range(CHART_SERIES + 3)]
    for i, model in enumerate(models):
        rollup(console.tenant, today, model, cost=str(i + 1))
    datasets = overview_get(tenant=console.tenant).chart["datasets"]
    assert len(datasets) == CHART_SERIES + 1
    assert datasets[0]["label"] == f"lab:m{CHART_SERIES + 2:02d}"
    assert datasets[-1] == {"label": "3 other models", "data": [*["0.000000"] * 29, "6.000000"]}  # 1 + 2 + 3


def test_overview_reads_rollups_only_in_a_bounded_number_of_queries(console, login):
    today = overview_get(tenant=console.tenant).today
    for day in range(1, 28):
        for model in (console.gpt, console.llama):
            for key_id in range(1, 6):
                rollup(console.tenant, today.replace(day=day) if day <= today.day else today, model,
                       cost="0.01", key_id=key_id + day * 10)
    for name in ("A", "B", "C"):
        budget_create(tenant=console.tenant, data={"name": name, "amount": Decimal("50")}, actor=SYSTEM)
    client = login(console.world.admin)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/app/acme/")
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if "billing_usagelog" in s], "the overview must not read the ledger"
    # session + user, tenant slug, membership, tenant switcher, one GROUP BY over the rollups,
    # model names, the budgets and one spend sum per budget
    assert len(sql) <= 8 + 4, "\n".join(sql)
    rollup_reads = [s for s in sql if "billing_usagedaily" in s]
    assert len(rollup_reads) == 1 + 4  # the overview's GROUP BY + one sum per budget (4 budgets)
    assert "GROUP BY" in rollup_reads[0]


def test_budget_bars_cap_at_the_end_and_mark_thresholds(console):
    today = overview_get(tenant=console.tenant).today
    rollup(console.tenant, today, console.gpt, cost="25")  # 250 % of the $10 budget
    [bar] = budget_bars(tenant=console.tenant)
    assert bar.width == "100" and bar.marks == [50, 80, 100] and bar.over
    assert bar.status.state == "exhausted" and bar.status.percent_used == Decimal("250.00")


def test_overview_page_says_unknown_costs_apart(console, login):
    today = overview_get(tenant=console.tenant).today
    rollup(console.tenant, today, console.mini, cost="0", requests=4, unpriced=4)
    page = login(console.world.viewer).get("/app/acme/").content.decode()
    assert "+ 4 requests of unknown cost" in page
    assert 'id="cost-chart-data"' in page and "chart.umd.min.js" in page
    assert "cdn" not in page.lower()
