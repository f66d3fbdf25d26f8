"""How many bytes one ledger (UsageLog) row costs on PostgreSQL: heap, indexes and total.

    DEBUG=true .venv/bin/python bench/ledger_size.py [--rows 200000] [--seed 1]

Runs against DATABASE_URL (default postgres://postgres@127.0.0.1:5432/tollgate_bench, created if
missing), migrated to the current schema. The rows go into a scratch copy of the ledger table
(``CREATE TABLE … (LIKE billing_usagelog INCLUDING ALL)``: the same columns, defaults and
every index, but no foreign keys), so the figures are the ledger's alone whatever else the
bench database holds; the copy is dropped at the end. Rows are realistic: a mix of statuses,
streams, cache hits and refusals, conversation ids and end-user tags on some, costs with 12
decimal places (unknown on a few), arriving in time order over 30 days for 20 tenants. They are loaded with
COPY, then VACUUM ANALYZE settles the visibility map and statistics before sizes are read.
"""

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ENV_FILE", "/dev/null")

SCRATCH = "bench_ledger_size"
STATUSES = [("ok", 0.90), ("error", 0.04), ("partial", 0.01), ("cache_hit", 0.03), ("rejected", 0.02)]
ERROR_TYPES = ["upstream_timeout", "upstream_5xx", "rate_limited", "connection_error", "invalid_request"]
REJECT_TYPES = ["budget_exceeded", "rate_limited", "tokens_per_day"]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet-latest", "meta-llama/llama-3.1-8b-instruct", "llama3:70b"]
ALIASES = ["smart", "fast", "cheap-chat", "support-bot"]


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def realistic_rows(n: int, seed: int):
    """Rows in USAGE column order, as the gateway writes them."""
    rng = random.Random(seed)
    process = f"{rng.getrandbits(48):012x}"
    start = datetime.now(UTC) - timedelta(days=30)
    status_names = [s for s, _ in STATUSES]
    status_weights = [w for _, w in STATUSES]
    for i in range(n):
        tenant = rng.randrange(1, 21)
        status = rng.choices(status_names, status_weights)[0]
        model = rng.randrange(len(MODELS))
        routed = status != "rejected"
        stream = rng.random() < 0.6
        input_tokens = int(rng.lognormvariate(6.5, 1.1)) if status != "rejected" else 0
        output_tokens = int(rng.lognormvariate(5.0, 1.0)) if status in ("ok", "partial", "cache_hit") else 0
        cached = input_tokens // 2 if rng.random() < 0.25 else 0
        reasoning = output_tokens // 3 if model == 0 and rng.random() < 0.2 else 0
        priced = routed and rng.random() > 0.03
        cost = None
        if priced:
            cost = (Decimal(input_tokens) * Decimal("0.15") + Decimal(output_tokens) * Decimal("0.6")) / 10**6
            cost = cost.quantize(Decimal("1e-12"))
        openrouter = model == 3
        latency = int(rng.lognormvariate(6.8, 0.7)) if routed else rng.randrange(0, 3)
        yield (
            f"req_{process}{i:012x}",  # request_id
            tenant,  # tenant_id
            tenant * 10 + rng.randrange(5),  # api_key_id
            rng.choice(ALIASES) if rng.random() < 0.4 else f"provider{model}:{MODELS[model]}",  # model_requested
            model + 1 if routed else None,  # provider_id
            model + 1 if routed else None,  # provider_model_id
            (1 if rng.random() < 0.95 else rng.randrange(2, 4)) if routed else 0,  # attempts
            status,
            rng.choice(ERROR_TYPES) if status in ("error", "partial") else (
                rng.choice(REJECT_TYPES) if status == "rejected" else ""),  # error_type
            input_tokens, cached, 0, output_tokens, reasoning,
            rng.random() < 0.02,  # tokens_estimated
            cost,
            cost if openrouter and cost is not None else None,  # provider_cost
            latency,
            min(latency, int(rng.lognormvariate(5.5, 0.6))) if stream and routed else None,  # ttft_ms
            stream,
            f"conv_{rng.getrandbits(128):032x}" if rng.random() < 0.4 else "",  # conversation_id
            f"user-{rng.randrange(100_000)}" if rng.random() < 0.3 else "",  # end_user
            start + timedelta(seconds=30 * 86_400 * i / n),  # created_at: in arrival order, as written
        )


COLUMNS = (
    "request_id", "tenant_id", "api_key_id", "model_requested", "provider_id", "provider_model_id", "attempts",
    "status", "error_type", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "tokens_estimated", "cost", "provider_cost", "latency_ms", "ttft_ms", "stream",
    "conversation_id", "end_user", "created_at",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    url = os.environ["DATABASE_URL"]
    ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import psycopg

    from billing.models import UsageLog

    table = UsageLog._meta.db_table
    with psycopg.connect(url, autocommit=True) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        conn.execute(f"CREATE TABLE {SCRATCH} (LIKE {table} INCLUDING ALL)")
        try:
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(f"COPY {SCRATCH} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in realistic_rows(args.rows, args.seed):
                        copy.write_row(row)
            loaded = time.perf_counter() - started
            conn.execute(f"VACUUM ANALYZE {SCRATCH}")

            count = conn.execute(f"SELECT count(*) FROM {SCRATCH}").fetchone()[0]
            total, table_size, heap, indexes = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_table_size(%s), pg_relation_size(%s), pg_indexes_size(%s)",
                [SCRATCH] * 4,
            ).fetchone()
            width = conn.execute(f"SELECT avg(pg_column_size(t.*)) FROM {SCRATCH} t").fetchone()[0]
            per_index = conn.execute(
                "SELECT c.relname, pg_relation_size(c.oid), pg_get_indexdef(c.oid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass ORDER BY 2 DESC",
                [SCRATCH],
            ).fetchall()
            mix = conn.execute(f"SELECT status, count(*) FROM {SCRATCH} GROUP BY 1 ORDER BY 2 DESC").fetchall()
            shares = conn.execute(
                "SELECT avg((conversation_id <> '')::int), avg((cost IS NULL)::int), avg(stream::int) "
                f"FROM {SCRATCH}"
            ).fetchone()
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")

    def mb(n: int) -> str:
        return f"{n / 2**20:,.1f} MiB"

    print(f"\nLedger size, {count:,} UsageLog rows, PostgreSQL {server} "
          f"(loaded with COPY in {loaded:.1f} s, then VACUUM ANALYZE)\n")
    print("| measure | size | bytes per row |")
    print("|---|---|---|")
    print(f"| heap (`pg_relation_size`) | {mb(heap)} | {heap / count:.0f} |")
    print(f"| TOAST + free space map + visibility map (`pg_table_size` − heap) | {mb(table_size - heap)} | "
          f"{(table_size - heap) / count:.0f} |")
    print(f"| indexes (`pg_indexes_size`, {len(per_index)}) | {mb(indexes)} | {indexes / count:.0f} |")
    print(f"| **total** (`pg_total_relation_size`) | **{mb(total)}** | **{total / count:.0f}** |")
    print(f"| average row data (`pg_column_size`, no page or item overhead) | | {width:.0f} |")
    print("\n| index | size | bytes per row |")
    print("|---|---|---|")
    for _name, size, definition in per_index:
        using = definition.split(" USING ", 1)[1] if " USING " in definition else definition
        print(f"| `{using}` | {mb(size)} | {size / count:.0f} |")
    print(f"\nRow mix: {', '.join(f'{s} {c / count:.0%}' for s, c in mix)}; with a conversation id "
          f"{shares[0]:.0%}, unknown cost {shares[1]:.0%}, streamed {shares[2]:.0%}.")
    per_million = total / count * 1_000_000
    print(f"At {total / count:.0f} bytes per row: {per_million / 2**30:.2f} GiB per million requests, "
          f"{per_million * 30 / 2**30:.0f} GiB per 30 days at a million requests a day.")


if __name__ == "__main__":
    main()
