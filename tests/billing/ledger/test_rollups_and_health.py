"""The per-tenant daily rollup (TenantDaily) and the provider health histograms
(HealthBucket) the ledger writer keeps beside the ledger, the percentiles read back from the
histograms, and their pruning."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.health import (
    bucket_bounds,
    histogram_percentile,
    latency_bucket,
    slot_start,
    window_start,
)
from billing.ledger import usage_records_write
from billing.models import HealthBucket, TenantDaily, UsageDaily
from billing.records import UsageRecord
from billing.retention import health_buckets_prune
from support.selectors import platform_health
from tests.billing.ledger.conftest import utc, write

pytestmark = pytest.mark.django_db


def exact_percentile(values: list[int], fraction: float) -> float:
    """percentile_cont: linear between the two values around rank fraction · (n - 1)."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def histogram(values: list[int]) -> list[tuple[int, int]]:
    counts: dict[int, int] = {}
    for value in values:
        counts[latency_bucket(value)] = counts.get(latency_bucket(value), 0) + 1
    return list(counts.items())


# --- the histogram arithmetic --------------------------------------------------------------------


def test_every_latency_falls_inside_its_bucket_and_buckets_are_about_nine_percent_wide():
    for value in [0, 1, 2, 3, 7, 99, 100, 101, 1023, 1024, 4_999, 60_000, 600_000]:
        low, high = bucket_bounds(latency_bucket(value))
        assert low <= value < high, value
    assert 1.08 < (bucket_bounds(80)[1] + 1) / (bucket_bounds(80)[0] + 1) < 1.1
    assert latency_bucket(600_000) < 160  # ten minutes: a few hundred rows per model and slot at most


@pytest.mark.parametrize("shape", ["uniform", "skewed", "bimodal", "constant"])
def test_percentiles_from_the_histogram_are_within_five_percent_of_the_exact_ones(shape):
    rng = random.Random(shape)
    draw = {
        "uniform": lambda: rng.randint(50, 3000),
        "skewed": lambda: int(80 + rng.random() * rng.random() * 4000),
        "bimodal": lambda: rng.choice([rng.randint(20, 40), rng.randint(900, 1200)]),
        "constant": lambda: 250,
    }[shape]
    values = [draw() for _ in range(20_000)]
    for fraction in (0.5, 0.95, 0.99):
        exact = exact_percentile(values, fraction)
        assert histogram_percentile(histogram(values), fraction) == pytest.approx(exact, rel=0.05), fraction


def test_percentiles_of_a_few_samples_interpolate_between_them():
    values = [100, 200, 300, 400]
    assert histogram_percentile(histogram(values), 0.5) == pytest.approx(250, rel=0.05)
    assert histogram_percentile(histogram(values), 0.95) == pytest.approx(385, rel=0.05)
    assert histogram_percentile(histogram([700]), 0.5) == pytest.approx(700, rel=0.05)
    assert histogram_percentile([], 0.5) is None and histogram_percentile([(10, 0)], 0.5) is None


def test_slots_and_windows_are_whole_utc_slots_covering_at_least_the_window():
    at = utc(2026, 3, 1, 10, 47, 31)
    assert slot_start(at, 300) == utc(2026, 3, 1, 10, 45) and slot_start(at, 3600) == utc(2026, 3, 1, 10)
    assert window_start("hour", at) == (utc(2026, 3, 1, 9, 45), 300)
    assert window_start("day", at) == (utc(2026, 2, 28, 10), 3600)


# --- what the ledger writer keeps ---------------------------------------------------------------


def test_tenant_daily_equals_the_model_and_key_rollups_and_a_retried_batch_adds_nothing(world, gpt, chat_key):
    other = world.other
    at = utc(2026, 3, 1, 12)
    write(world.tenant, at, at, model=gpt, key=chat_key, cost=Decimal("0.25"))
    write(world.tenant, at, model=gpt, status="error", cost=None, input_tokens=5)  # unpriced and an error
    write(world.tenant, at, status="cache_hit", cost=Decimal(0))
    write(other, at - timedelta(days=1), model=gpt, cost=Decimal("1.5"))
    sums = ("requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cost", "unpriced")

    def per_tenant_day(model) -> dict:
        return {(r.pop("tenant_id"), r.pop("day")): r for r in
                model.objects.values("tenant_id", "day").annotate(**{s: Sum(s) for s in sums}).order_by()}

    expected = per_tenant_day(UsageDaily)
    assert per_tenant_day(TenantDaily) == expected
    acme = TenantDaily.objects.get(tenant=world.tenant)
    assert (acme.requests, acme.errors, acme.cache_hits, acme.unpriced, acme.cost) == (4, 1, 1, 1, Decimal("0.5"))
    assert TenantDaily.objects.count() == 2

    row = {"request_id": "req_retry_1", "tenant_id": world.tenant.pk, "created_at": at, "day": at.date(),
           "provider_id": gpt.provider_id, "provider_model_id": gpt.pk, "cost": Decimal("2"), "latency_ms": 90}
    assert len(usage_records_write([UsageRecord(**row)])) == 1
    assert usage_records_write([UsageRecord(**row), UsageRecord(**row)]) == []  # the same batch again, twice over
    acme.refresh_from_db()
    assert (acme.requests, acme.cost) == (5, Decimal("2.5"))
    assert HealthBucket.objects.filter(span=300).aggregate(n=Sum("requests"))["n"] == 6


def test_health_buckets_count_every_request_in_both_slots_with_its_latency_and_errors(world, gpt):
    now = timezone.now()
    latencies = list(range(100, 2100, 10))  # 200 requests
    rows = [UsageRecord(request_id=f"req_h{i}", tenant_id=world.tenant.pk, created_at=now - timedelta(seconds=i),
                        day=now.date(), provider_id=gpt.provider_id, provider_model_id=gpt.pk,
                        status="error" if i % 10 == 0 else "ok", latency_ms=latency)
            for i, latency in enumerate(latencies)]
    rows.append(UsageRecord(request_id="req_h_none", tenant_id=world.tenant.pk, created_at=now, day=now.date(),
                            status="rejected", latency_ms=0))  # refused before any provider
    usage_records_write(rows)
    for span in (300, 3600):
        got = HealthBucket.objects.filter(span=span).aggregate(n=Sum("requests"), e=Sum("errors"))
        assert (got["n"], got["e"]) == (201, 21), span
    assert set(HealthBucket.objects.values_list("provider_id", flat=True)) == {0, gpt.provider_id}

    health = platform_health(window="hour", now=now)
    model = next(m for p in health.providers if p.pk == gpt.provider_id for m in p.models if m.pk == gpt.pk)
    assert (model.requests, model.errors) == (200, 20)
    assert model.p50 == pytest.approx(exact_percentile(latencies, 0.5), rel=0.05)
    assert model.p95 == pytest.approx(exact_percentile(latencies, 0.95), rel=0.05)
    assert (health.totals.requests, health.totals.errors) == (201, 21)


def test_the_day_window_reads_hour_slots_and_the_hour_window_leaves_older_traffic_out(world, gpt):
    now = utc(2026, 3, 1, 10, 30)
    base = {"tenant_id": world.tenant.pk, "day": now.date(), "provider_id": gpt.provider_id,
            "provider_model_id": gpt.pk, "latency_ms": 100}
    usage_records_write([UsageRecord(**base, request_id="req_w1", created_at=now - timedelta(minutes=10)),
                         UsageRecord(**base, request_id="req_w2", created_at=now - timedelta(hours=3)),
                         UsageRecord(**base, request_id="req_w3", created_at=now - timedelta(hours=30))])
    assert platform_health(window="hour", now=now).totals.requests == 1
    assert platform_health(window="day", now=now).totals.requests == 2


def test_old_health_slots_are_pruned_and_recent_ones_kept(world, gpt):
    now = timezone.now()
    base = {"tenant_id": world.tenant.pk, "day": now.date(), "provider_id": gpt.provider_id,
            "provider_model_id": gpt.pk, "latency_ms": 100}
    usage_records_write([UsageRecord(**base, request_id="req_p1", created_at=now - timedelta(days=3)),
                         UsageRecord(**base, request_id="req_p2", created_at=now - timedelta(hours=1))])
    assert HealthBucket.objects.count() == 4
    assert health_buckets_prune(now=now) == 2
    assert sorted(HealthBucket.objects.values_list("requests", flat=True)) == [1, 1]
    assert all(start >= now - timedelta(days=2) for start in HealthBucket.objects.values_list("start", flat=True))
    assert health_buckets_prune(now=now) == 0


def test_admin_lists_both_read_only(world, gpt, client):
    at = timezone.now()
    write(world.tenant, at, model=gpt, latency_ms=120, cost=Decimal("0.75"))
    client.force_login(world.support)  # support staff: view-only admin
    daily = client.get("/admin/billing/tenantdaily/?q=acme")
    assert daily.status_code == 200 and "0.75" in daily.content.decode()
    slots = client.get("/admin/billing/healthbucket/?span__exact=300").content.decode()
    low, high = bucket_bounds(latency_bucket(120))
    assert f"{low:.0f}–{high:.0f}" in slots
    assert client.get("/admin/billing/healthbucket/add/").status_code == 403
    row = TenantDaily.objects.get(tenant=world.tenant)
    assert b'name="_save"' not in client.get(f"/admin/billing/tenantdaily/{row.pk}/change/").content
