"""How fast the support dashboards answer with a big ledger: 1,000 tenants and 10 million
usage rows (plus their daily rollups and the provider health histograms) over 90 days.

    .venv/bin/python bench/dashboards.py [--rows 10000000] [--tenants 1000] [--requests 50]
    .venv/bin/python bench/dashboards.py --generate-only      # just build / top up the data
    .venv/bin/python bench/dashboards.py --measure-only       # just measure what is there

Runs against PostgreSQL (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/tollgate_bench_dashboards, created if missing and migrated).
Its own database by default: ``tollgate_bench`` is shared with the other benches, whose
10,000 tenants would change what the all-tenants page has to read. Generation is idempotent:
tenants ``bench-0000``… and ledger rows ``bench_<n>`` already present are reused, only the
missing ones are inserted (``INSERT … SELECT generate_series`` in SQL, in chunks), and the
rollups of the bench tenants (per model and key, per tenant) and the health histograms of the
last two days are rebuilt from the ledger when they no longer match it.

Measured, with Django's test Client logged in as a support user, ``--requests`` timed
requests per page after warm-up: p50 / p95 wall time in ms and the number of SQL queries.
Pages: /support/, /support/?sort=-spend_month, /support/providers/?window=day and the
overview /app/<slug>/ of the biggest tenant.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate_bench_dashboards")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ENV_FILE", "/dev/null")

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "America/Los_Angeles",
         "Asia/Kolkata", "Pacific/Auckland"]
DAYS = 90
CHUNK = 500_000
MODELS = [  # (provider, model, input $/M, output $/M)
    ("bench-openai", "gpt-4o", "2.5", "10"), ("bench-openai", "gpt-4o-mini", "0.15", "0.6"),
    ("bench-openai", "o3-mini", "1.1", "4.4"), ("bench-anthropic", "claude-sonnet-4", "3", "15"),
    ("bench-anthropic", "claude-haiku-3.5", "0.8", "4"), ("bench-openrouter", "meta-llama/llama-3.1-70b", "0.4", "0.4"),
    ("bench-openrouter", "mistral/mistral-large", "2", "6"), ("bench-openrouter", "qwen/qwen-2.5-72b", "0.35", "0.4"),
]


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def generate(n_tenants: int, n_rows: int) -> None:
    from django.db import connection, transaction

    from billing.models import Budget
    from providers.models import Provider, ProviderModel
    from tenants.models import Tenant

    t0 = time.monotonic()
    have = set(Tenant.objects.filter(slug__startswith="bench-").values_list("slug", flat=True))
    missing = [Tenant(slug=f"bench-{i:04d}", name=f"Bench tenant {i:04d}", timezone=ZONES[i % len(ZONES)])
               for i in range(n_tenants) if f"bench-{i:04d}" not in have]
    Tenant.objects.bulk_create(missing, batch_size=1000)
    tenants = list(Tenant.objects.filter(slug__startswith="bench-").order_by("slug").values_list("pk", flat=True))
    tenants = tenants[:n_tenants]
    with_budget = set(Budget.objects.filter(tenant_id__in=tenants).values_list("tenant_id", flat=True))
    Budget.objects.bulk_create([Budget(tenant_id=t, name="Monthly", amount=500 + (t % 7) * 250)
                                for t in tenants if t not in with_budget], batch_size=1000)
    model_ids, provider_ids = [], []
    for provider_name, model_id, inp, out in MODELS:
        provider, _ = Provider.objects.get_or_create(
            owner=None, name=provider_name,
            defaults={"provider_type": "mock", "sync_status": "ok", "auto_sync": False})
        model, _ = ProviderModel.objects.get_or_create(
            provider=provider, model_id=model_id,
            defaults={"input_price": inp, "output_price": out, "price_source": "catalog"})
        model_ids.append(model.pk)
        provider_ids.append(provider.pk)
    print(f"tenants: {len(tenants)} ({len(missing)} new), models: {len(model_ids)} [{time.monotonic() - t0:.1f}s]",
          flush=True)

    with connection.cursor() as cur:
        cur.execute("SELECT coalesce(max(substr(request_id, 7)::bigint), 0) FROM billing_usagelog "
                    "WHERE request_id LIKE 'bench\\_%%'")
        done = cur.fetchone()[0]
    print(f"ledger rows already there: {done:,}; target {n_rows:,}", flush=True)
    inserted = 0
    while done < n_rows:
        upto = min(done + CHUNK, n_rows)
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cur:
            # Tenant skew: index floor(n * r^3), so bench-0000 is the biggest tenant (~10 %+).
            # Latency and status are drawn per row; ~3 % errors, ~1 % unknown price.
            cur.execute(
                """
                INSERT INTO billing_usagelog (request_id, tenant_id, api_key_id, model_requested, provider_id,
                    provider_model_id, attempts, status, error_type, input_tokens, cached_input_tokens,
                    cache_write_tokens, output_tokens, reasoning_tokens, tokens_estimated, cost, provider_cost,
                    latency_ms, ttft_ms, stream, conversation_id, end_user, created_at)
                SELECT 'bench_' || x.g, (%(tenants)s::bigint[])[x.ti], NULL, 'default',
                       (%(providers)s::bigint[])[x.mi], (%(models)s::bigint[])[x.mi], 1,
                       CASE WHEN x.r < 0.03 THEN 'error' WHEN x.r < 0.05 THEN 'cache_hit' ELSE 'ok' END,
                       CASE WHEN x.r < 0.03 THEN 'upstream_5xx' ELSE '' END,
                       x.tin, 0, 0, x.tout, 0, false,
                       CASE WHEN x.r >= 0.99 THEN NULL ELSE round((x.tin * 2.5 + x.tout * 10) / 1e6, 12) END,
                       NULL, x.lat, NULL, false, '', '',
                       now() - random() * %(days)s * interval '1 day'
                FROM (SELECT g, 1 + floor(%(nt)s * power(random(), 3))::int AS ti,
                             1 + floor(random() * %(nm)s)::int AS mi, random() AS r,
                             (50 + random() * 3000)::int AS tin, (10 + random() * 800)::int AS tout,
                             (80 + random() * random() * 4000)::int AS lat
                      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g) AS x
                """,
                {"tenants": tenants, "providers": provider_ids, "models": model_ids, "days": DAYS,
                 "nt": len(tenants), "nm": len(model_ids), "lo": done + 1, "hi": upto},
            )
        inserted += upto - done
        done = upto
        print(f"  ledger {done:,} / {n_rows:,} rows ({time.monotonic() - started:.1f}s for this chunk)", flush=True)

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM billing_usagelog WHERE tenant_id = ANY(%s)", [tenants])
        ledger = cur.fetchone()[0]
        cur.execute("SELECT coalesce(sum(requests), 0) FROM billing_usagedaily WHERE tenant_id = ANY(%s)", [tenants])
        rolled = cur.fetchone()[0]
    if inserted or ledger != rolled:
        started = time.monotonic()
        print(f"rebuilding rollups ({rolled:,} requests rolled up, {ledger:,} in the ledger)…", flush=True)
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("DELETE FROM billing_usagedaily WHERE tenant_id = ANY(%s)", [tenants])
            cur.execute(
                """
                INSERT INTO billing_usagedaily (tenant_id, day, provider_id, provider_model_id, api_key_id, requests,
                    errors, cache_hits, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
                    reasoning_tokens, cost, unpriced, latency_ms_total)
                SELECT u.tenant_id, (u.created_at AT TIME ZONE t.timezone)::date, coalesce(u.provider_id, 0),
                       coalesce(u.provider_model_id, 0), coalesce(u.api_key_id, 0), count(*),
                       count(*) FILTER (WHERE u.status IN ('error', 'partial', 'rejected')),
                       count(*) FILTER (WHERE u.status = 'cache_hit'), sum(u.input_tokens), sum(u.cached_input_tokens),
                       sum(u.cache_write_tokens), sum(u.output_tokens), sum(u.reasoning_tokens),
                       coalesce(sum(u.cost), 0),
                       count(*) FILTER (WHERE u.cost IS NULL AND (u.input_tokens > 0 OR u.output_tokens > 0)),
                       sum(u.latency_ms)
                FROM billing_usagelog u JOIN tenants_tenant t ON t.id = u.tenant_id
                WHERE u.tenant_id = ANY(%s)
                GROUP BY 1, 2, 3, 4, 5
                """,
                [tenants],
            )
        print(f"  rollups rebuilt in {time.monotonic() - started:.1f}s", flush=True)
    with connection.cursor() as cur:
        cur.execute("SELECT coalesce(sum(requests), 0) FROM billing_tenantdaily WHERE tenant_id = ANY(%s)", [tenants])
        per_tenant = cur.fetchone()[0]
    if inserted or per_tenant != ledger:
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cur:  # what the ledger writer adds up per tenant and day
            cur.execute("DELETE FROM billing_tenantdaily WHERE tenant_id = ANY(%s)", [tenants])
            cur.execute(
                """
                INSERT INTO billing_tenantdaily (tenant_id, day, requests, errors, cache_hits, input_tokens,
                    output_tokens, cost, unpriced)
                SELECT tenant_id, day, sum(requests), sum(errors), sum(cache_hits), sum(input_tokens),
                       sum(output_tokens), sum(cost), sum(unpriced)
                FROM billing_usagedaily WHERE tenant_id = ANY(%s) GROUP BY tenant_id, day
                """,
                [tenants],
            )
        print(f"  per-tenant rollups rebuilt in {time.monotonic() - started:.1f}s", flush=True)
    # The provider health histograms of the last two days (what the writer keeps), rebuilt every
    # time (cheap), so "the last day" is the one before now: 5-minute and hour slots, latency
    # bucket floor(8 · log2(ms + 1)) as billing.health has it.
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM billing_healthbucket")
        cur.execute(
            """
            INSERT INTO billing_healthbucket (span, start, provider_id, provider_model_id, bucket, requests, errors)
            SELECT s.span, to_timestamp(floor(extract(epoch FROM u.created_at) / s.span) * s.span),
                   coalesce(u.provider_id, 0), coalesce(u.provider_model_id, 0),
                   floor(8 * log(2, u.latency_ms + 1.0))::int, count(*),
                   count(*) FILTER (WHERE u.status IN ('error', 'partial', 'rejected'))
            FROM billing_usagelog u CROSS JOIN (VALUES (300), (3600)) AS s(span)
            WHERE u.created_at >= now() - interval '2 days'
            GROUP BY 1, 2, 3, 4, 5
            """
        )
        cur.execute("SELECT count(*) FROM billing_healthbucket")
        print(f"  health histograms rebuilt ({cur.fetchone()[0]:,} rows) in {time.monotonic() - started:.1f}s",
              flush=True)
    with connection.cursor() as cur:
        for table in ("billing_usagelog", "billing_usagedaily", "billing_tenantdaily", "billing_healthbucket",
                      "tenants_tenant"):
            cur.execute(f"ANALYZE {table}")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM billing_usagedaily WHERE tenant_id = ANY(%s)", [tenants])
        print(f"data ready: {ledger:,} ledger rows, {cur.fetchone()[0]:,} rollup rows, {len(tenants)} tenants "
              f"[{time.monotonic() - t0:.1f}s total]", flush=True)


def measure(n_requests: int) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from billing.models import UsageDaily
    from support.groups import SUPPORT_GROUP, support_group_ensure
    from tenants.models import Tenant

    support_group_ensure()
    User = get_user_model()
    user, _ = User.objects.get_or_create(username="bench-support@tollgate.test",
                                         defaults={"email": "bench-support@tollgate.test", "is_staff": True})
    user.groups.add(Group.objects.get(name=SUPPORT_GROUP))
    client = Client()
    client.force_login(user)
    big = (UsageDaily.objects.filter(tenant__slug__startswith="bench-").values("tenant_id")
           .annotate(n=__import__("django.db.models", fromlist=["Sum"]).Sum("requests")).order_by("-n").first())
    big_slug = Tenant.objects.get(pk=big["tenant_id"]).slug if big else "bench-0000"
    pages = ["/support/", "/support/?sort=-spend_month", "/support/?q=bench-00", "/support/providers/?window=day",
             "/support/providers/?window=hour", f"/app/{big_slug}/"]
    print(f"\n{n_requests} requests per page after 3 warm-up requests; biggest tenant {big_slug} "
          f"({big['n'] if big else 0:,} requests)\n")
    print("| page | p50 ms | p95 ms | max ms | queries |\n|---|---:|---:|---:|---:|")
    for url in pages:
        for _ in range(3):
            assert client.get(url).status_code == 200, url
        times = []
        for _ in range(n_requests):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, url
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        times.sort()
        p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
        print(f"| `{url}` | {statistics.median(times):.1f} | {p95:.1f} | {times[-1]:.1f} | {len(queries)} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="ledger rows to have (default 10M)")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--measure-only", action="store_true")
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not args.measure_only:
        generate(args.tenants, args.rows)
    if not args.generate_only:
        measure(args.requests)


if __name__ == "__main__":
    main()
