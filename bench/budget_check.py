"""How long the scheduled budget check (``billing.alerts.alerts_check``) takes for 10,000
tenants, and how many queries it makes. Target: under 10 s.

    .venv/bin/python bench/budget_check.py [--tenants 10000] [--days 30] [--rounds 3] [--regenerate]

Runs against PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/tollgate_bench,
created if missing). The first run generates the data set: ``--tenants`` tenants ``bench-NNNNN``
in eight time zones, each with one monthly budget (thresholds 50/80/100 %, amounts chosen so that
some cross a threshold and some do not) and ``--days`` days × 2 models of daily rollups ending
today (written with COPY). Later runs reuse it; the rollups are rewritten when their newest day
is no longer today (UTC), and ``--regenerate`` rebuilds everything.

Each round runs the check twice inside one transaction that is rolled back at the end, so no
alert is kept and no delivery is queued (``on_commit`` callbacks die with the rollback):

* "first check" finds every crossing and inserts its alerts (the worst case: the first check
  after a deploy, or the first after midnight when every daily budget starts over);
* "steady state" runs again and finds the alerts already there (the every-2-minutes case).

COST_ALERT_THRESHOLD is set to $5 for the run so the daily-cost query is part of the timing.
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ENV_FILE", "/dev/null")

ZONES = ["UTC", "Europe/Berlin", "America/Los_Angeles", "Pacific/Auckland", "Asia/Tokyo",
         "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
PREFIX = "bench-"
BATCH = 2000


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def say(text: str) -> None:
    print(text, flush=True)


def generate(n_tenants: int, n_days: int, regenerate: bool) -> None:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from django.db import connection, transaction

    from billing.models import Budget, BudgetAlert, UsageDaily
    from tenants.models import Tenant

    bench = Tenant.objects.filter(slug__startswith=PREFIX)
    if regenerate:
        say("deleting the old bench tenants …")
        bench.delete()
    have = bench.count()
    if have != n_tenants:
        if have:
            say(f"found {have} bench tenants, want {n_tenants}: rebuilding …")
            bench.delete()
        started = time.perf_counter()
        for lo in range(0, n_tenants, BATCH):
            Tenant.objects.bulk_create([
                Tenant(slug=f"{PREFIX}{i:05d}", name=f"Bench {i}", timezone=ZONES[i % len(ZONES)])
                for i in range(lo, min(lo + BATCH, n_tenants))
            ])
            say(f"  tenants {min(lo + BATCH, n_tenants):>6}/{n_tenants}")
        rng = random.Random(42)
        ids = list(bench.order_by("pk").values_list("pk", flat=True))
        for lo in range(0, len(ids), BATCH):
            Budget.objects.bulk_create([
                Budget(tenant_id=tid, name="Monthly", amount=Decimal(rng.choice([25, 50, 100, 200, 400, 1000])),
                       period="month", thresholds=[50, 80, 100], action=rng.choice(["alert", "block"]))
                for tid in ids[lo:lo + BATCH]
            ])
        say(f"  {len(ids)} tenants and budgets in {time.perf_counter() - started:.1f} s")

    today = datetime.now(UTC).date()
    rows = UsageDaily.objects.filter(tenant__slug__startswith=PREFIX)
    newest = rows.order_by("-day").values_list("day", flat=True).first()
    expected = n_tenants * n_days * 2
    if newest == today and rows.count() == expected:
        say(f"reusing {expected:,} rollup rows ({today - timedelta(days=n_days - 1)} .. {today})")
    else:
        say(f"writing {expected:,} rollup rows ({today - timedelta(days=n_days - 1)} .. {today}) with COPY …")
        started = time.perf_counter()
        BudgetAlert.objects.filter(tenant__slug__startswith=PREFIX).delete()
        rows.delete()
        ids = list(Tenant.objects.filter(slug__startswith=PREFIX).order_by("pk").values_list("pk", flat=True))
        rng = random.Random(7)
        days = [today - timedelta(days=d) for d in range(n_days)]
        table = UsageDaily._meta.db_table
        with transaction.atomic():
            connection.ensure_connection()
            with connection.connection.cursor() as cursor:
                with cursor.copy(
                    f"COPY {table} (tenant_id, day, provider_id, provider_model_id, api_key_id, requests, errors, "
                    "cache_hits, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, "
                    "reasoning_tokens, cost, unpriced, latency_ms_total) FROM STDIN"
                ) as copy:
                    for n, tid in enumerate(ids, 1):
                        scale = rng.choice([0.2, 1, 1, 3])  # light, typical and heavy users
                        for day in days:
                            for model in (1, 2):
                                requests = rng.randint(10, 500)
                                cost = Decimal(rng.randint(0, int(2_000_000 * scale))) / 1_000_000
                                copy.write_row((tid, day, 1, model, 0, requests, 0, 0, requests * 800, 0, 0,
                                                requests * 200, 0, cost, 0, requests * 400))
                        if n % BATCH == 0:
                            say(f"  rollups for {n:>6}/{len(ids)} tenants")
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
        say(f"  written in {time.perf_counter() - started:.1f} s")


class Rollback(Exception):
    pass


def measure(rounds: int) -> list[tuple]:
    from decimal import Decimal

    from django.conf import settings
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from billing.alerts import alerts_check
    from billing.models import BudgetAlert

    settings.COST_ALERT_THRESHOLD = Decimal("5")
    results = []
    for r in range(1, rounds + 1):
        try:
            with transaction.atomic():  # rolled back: no alert kept, no on_commit delivery runs
                for label in ("first check", "steady state"):
                    with CaptureQueriesContext(connection) as queries:
                        started = time.perf_counter()
                        created = alerts_check()
                        seconds = time.perf_counter() - started
                    daily = BudgetAlert.objects.filter(pk__in=created, kind="daily_cost").count()
                    results.append((r, label, f"{len(created) - daily:,} + {daily:,}", seconds, len(queries)))
                raise Rollback
        except Rollback:
            pass
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    generate(args.tenants, args.days, args.regenerate)

    from billing.models import Budget, UsageDaily
    from tenants.models import Tenant

    tenants = Tenant.objects.filter(is_active=True).count()
    budgets = Budget.objects.filter(enabled=True).count()
    rollups = UsageDaily.objects.count()
    results = measure(args.rounds)

    print(f"\nBudget check (alerts_check), PostgreSQL, {len(ZONES)} time zones, monthly budgets, "
          f"COST_ALERT_THRESHOLD $5; target < 10 s\n")
    print("| round | run | tenants | budgets | rollup rows | alerts created (budget + daily cost) "
          "| seconds | queries |")
    print("|---|---|---|---|---|---|---|---|")
    for r, label, created, seconds, queries in results:
        print(f"| {r} | {label} | {tenants:,} | {budgets:,} | {rollups:,} | {created} | {seconds:.2f} | {queries} |")
    worst = max(s for *_, s, _ in results)
    print(f"\nslowest run: {worst:.2f} s — {'OK' if worst < 10 else 'OVER'} the 10 s target")


if __name__ == "__main__":
    main()
