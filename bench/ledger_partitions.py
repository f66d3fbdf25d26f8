"""Should the ledger (billing_usagelog) be partitioned by month on PostgreSQL? Insert, query and
retention costs of a plain table against monthly RANGE partitions, both shaped like the ledger.

    .venv/bin/python bench/ledger_partitions.py [--rows 650000] [--tenants 200] [--repeats 25]

Runs against PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/tollgate_bench,
created if missing) with psycopg only: no Django, no migrations. It (re)creates its own tables
(``bench_ledger_*``) and drops them at the end unless --keep is given. The default 650,000
rows (50,000 a month) take about 4 minutes on a 2-core machine; 1,300,000 took 11, most of it
the partitioned table's unbounded request-id lookups, which grow with its size.

The tables:

* **plain** is billing_usagelog as migrated today (0006): identity ``id`` primary key, unique
  ``request_id``, an index on api_key_id, provider_id and provider_model_id, the model's
  (tenant_id, created_at DESC), (created_at) and partial (tenant_id, conversation_id)
  indexes, deferrable foreign keys to small stand-ins for tenants, keys, providers and
  models, the same CHECKs.
* **part** is the same columns PARTITION BY RANGE (created_at), one partition per UTC calendar
  month, 13 of them. A unique constraint on a partitioned table must contain the partition
  key, so the primary key becomes (id, created_at) and request_id uniqueness becomes
  (request_id, created_at); the id is a bigserial (identity columns on partitioned tables
  need PostgreSQL 17).

What (request_id, created_at) means for idempotent writes: ``ON CONFLICT`` only fires when the
same request id comes again *with the same created_at*. A retried batch does carry the same
values (a row's created_at is set once, when the request ran, and travels with the row), so
retries stay no-ops, which this bench checks. What the constraint no longer forbids is the
same request id at two different instants; the ledger writer's lookup of existing request ids
(``billing.ledger._write``) still looks across all partitions, at the cost measured below.

Measured:

(a) writes as the data plane does them (``billing.ledger``): per batch of 1000 rows, one
    transaction with ``SELECT request_id … WHERE request_id = ANY(batch)`` then an executemany
    ``INSERT … ON CONFLICT DO NOTHING``, rows in time order over 13 months with request ids
    shaped like the gateway's (a per-process prefix + a counter, 8 processes restarted
    weekly). The load uses a server-side-binding cursor (what billing.ledger means to use);
    then, at full size, a day's more rows go through a client-side-binding cursor (what
    ``connection.connection.cursor()`` hands out under Django today) and through a lookup
    bounded by the batch's created_at range (what a partitioned ledger would need). The
    rollup upsert that follows in the same transaction is the same for both designs and left
    out.
(b) reads, median of --repeats after 3 warm-up runs, warm cache, literal parameters as Django
    sends them (planning time included): count + sum(cost) over a tenant's last 30 days and
    over one day, for a big tenant (~10 % of all rows) and a small one; the newest 50 rows of
    the last 30 days (the rows API's page); one row by request id (support's lookup).
(c) retention of the oldest month: batched DELETE exactly as ``billing.retention`` does it
    (per tenant, 5000 ids per transaction selected in id order FOR UPDATE SKIP LOCKED) against
    DETACH PARTITION CONCURRENTLY + DROP TABLE: time, WAL written, size afterwards, and the
    VACUUM the DELETE leaves behind.

Autovacuum is off on the bench tables so it does not run in the middle of a measurement:
ANALYZE runs, untimed, whenever autovacuum's default threshold would have (10 % of the rows
new since the last one), and every VACUUM is explicit. Each figure is for this machine only;
compare the two columns, not the absolute numbers.
"""

import argparse
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate_bench")

PREFIX = "bench_ledger"
PLAIN, PART = f"{PREFIX}_plain", f"{PREFIX}_part"
MONTHS = 13
BATCH = 1000
DELETE_BATCH = 5000
WORKERS = 8
COLUMNS = (
    "request_id", "tenant_id", "api_key_id", "model_requested", "provider_id", "provider_model_id", "attempts",
    "status", "error_type", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "tokens_estimated", "cost", "provider_cost", "latency_ms", "ttft_ms", "stream",
    "conversation_id", "end_user", "created_at",
)
COLUMN_DDL = f"""
    request_id varchar(40) NOT NULL,
    model_requested varchar(255) NOT NULL,
    attempts smallint NOT NULL CHECK (attempts >= 0),
    status varchar(10) NOT NULL,
    error_type varchar(40) NOT NULL,
    input_tokens integer NOT NULL CHECK (input_tokens >= 0),
    cached_input_tokens integer NOT NULL CHECK (cached_input_tokens >= 0),
    cache_write_tokens integer NOT NULL CHECK (cache_write_tokens >= 0),
    output_tokens integer NOT NULL CHECK (output_tokens >= 0),
    reasoning_tokens integer NOT NULL CHECK (reasoning_tokens >= 0),
    tokens_estimated boolean NOT NULL,
    cost numeric(20, 12) NULL,
    provider_cost numeric(20, 12) NULL,
    latency_ms integer NOT NULL CHECK (latency_ms >= 0),
    ttft_ms integer NULL CHECK (ttft_ms >= 0),
    stream boolean NOT NULL,
    conversation_id varchar(128) NOT NULL,
    end_user varchar(128) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    api_key_id bigint NULL REFERENCES {PREFIX}_apikey (id) DEFERRABLE INITIALLY DEFERRED,
    provider_id bigint NULL REFERENCES {PREFIX}_provider (id) DEFERRABLE INITIALLY DEFERRED,
    provider_model_id bigint NULL REFERENCES {PREFIX}_providermodel (id) DEFERRABLE INITIALLY DEFERRED,
    tenant_id bigint NOT NULL REFERENCES {PREFIX}_tenant (id) DEFERRABLE INITIALLY DEFERRED
"""
# billing_usagelog's secondary indexes as migrated (up to 0006_leaner_ledger_indexes), on either table.
INDEXES = (
    "(api_key_id)", "(provider_id)", "(provider_model_id)", "(tenant_id, created_at DESC)", "(created_at)",
    "(tenant_id, conversation_id) WHERE conversation_id > ''",
)


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def month_starts(now: datetime) -> list[datetime]:
    """The first instants (UTC) of the 13 months ending with ``now``'s, plus the next one."""
    year, month = now.year, now.month
    starts = []
    for back in range(MONTHS - 1, -2, -1):
        y, m = divmod((year * 12 + month - 1) - back, 12)
        starts.append(datetime(y, m + 1, 1, tzinfo=UTC))
    return starts


def create_tables(conn, tenants: int, months: list[datetime]) -> None:
    drop_tables(conn)
    conn.execute(f"CREATE TABLE {PREFIX}_tenant (id bigint PRIMARY KEY)")
    conn.execute(f"CREATE TABLE {PREFIX}_apikey (id bigint PRIMARY KEY)")
    conn.execute(f"CREATE TABLE {PREFIX}_provider (id bigint PRIMARY KEY)")
    conn.execute(f"CREATE TABLE {PREFIX}_providermodel (id bigint PRIMARY KEY)")
    conn.execute(f"INSERT INTO {PREFIX}_tenant SELECT generate_series(1, %s)", [tenants])
    conn.execute(f"INSERT INTO {PREFIX}_apikey SELECT generate_series(1, %s)", [tenants * 2])
    conn.execute(f"INSERT INTO {PREFIX}_provider SELECT generate_series(1, 3)")
    conn.execute(f"INSERT INTO {PREFIX}_providermodel SELECT generate_series(1, 20)")

    conn.execute(f"""CREATE TABLE {PLAIN} (id bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,
                     {COLUMN_DDL}, UNIQUE (request_id)) WITH (autovacuum_enabled = false)""")
    conn.execute(f"""CREATE TABLE {PART} (id bigserial NOT NULL, {COLUMN_DDL},
                     PRIMARY KEY (id, created_at), UNIQUE (request_id, created_at))
                     PARTITION BY RANGE (created_at)""")
    for start, end in zip(months[:-1], months[1:], strict=True):
        conn.execute(f"CREATE TABLE {PART}_{start:%Y_%m} PARTITION OF {PART} "
                     f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}') "
                     "WITH (autovacuum_enabled = false)")
    for table in (PLAIN, PART):
        for n, columns in enumerate(INDEXES):
            conn.execute(f"CREATE INDEX {table}_ix{n} ON {table} {columns}")
    conn.commit()


def drop_tables(conn) -> None:
    for name in (PART, PLAIN, "tenant", "apikey", "provider", "providermodel"):
        table = name if name.startswith(PREFIX) else f"{PREFIX}_{name}"
        conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    conn.execute(f"DROP TABLE IF EXISTS {PART}_detached")
    conn.commit()


class Rows:
    """Deterministic ledger rows in time order from ``start`` to ``end``; the same seed gives
    the same rows, so both tables get identical data."""

    def __init__(self, *, rows: int, tenants: int, start: datetime, end: datetime, seed: int = 42):
        self.n, self.start, self.span, self.seed = rows, start, (end - start).total_seconds(), seed
        self.rng = random.Random(seed)
        self.tenants = list(range(1, tenants + 1))
        # tenant 1 sends ~10 % of all requests; the rest follow a Zipf-like curve
        rest = [1 / rank for rank in range(1, tenants)]
        scale = 0.9 / sum(rest)
        self.weights = [0.1] + [w * scale for w in rest]
        self.prefixes: dict[tuple[int, int], str] = {}

    def share(self, tenant: int) -> float:
        return self.weights[tenant - 1]

    def request_id(self, i: int, at: datetime) -> str:
        worker, week = i % WORKERS, int((at - self.start).total_seconds() // (7 * 86400))
        prefix = self.prefixes.get((week, worker))
        if prefix is None:
            process = random.Random(f"{self.seed}-{week}-{worker}")
            prefix = self.prefixes[(week, worker)] = f"{process.getrandbits(48):012x}"
        return f"req_{prefix}{i // WORKERS:012x}"

    def batches(self, size: int):
        rng = self.rng
        for first in range(0, self.n, size):
            count = min(size, self.n - first)
            tenants = rng.choices(self.tenants, self.weights, k=count)
            batch = []
            for j, tenant in enumerate(tenants):
                i = first + j
                at = self.start + timedelta(seconds=self.span * i / self.n + rng.random())
                pm = rng.randint(1, 20)
                roll = rng.random()
                status = "ok" if roll < 0.97 else "error" if roll < 0.99 else "cache_hit"
                inp, out = rng.randint(50, 4000), rng.randint(10, 1000)
                cost = None if pm == 20 else (Decimal(inp * 25 + out * 100) / 10**7).quantize(Decimal("1e-12"))
                stream = roll < 0.6
                batch.append((
                    self.request_id(i, at), tenant, tenant * 2 - (i & 1), "openai:gpt-4o-mini", pm % 3 + 1, pm,
                    1 if status != "error" else 3, status, "upstream_5xx" if status == "error" else "", inp,
                    0, 0, out, 0, False, cost, None, rng.randint(80, 5000),
                    rng.randint(50, 800) if stream else None, stream,
                    f"conv-{rng.randint(1, 5000)}" if roll < 0.3 else "", f"user-{tenant}-{rng.randint(1, 300)}",
                    at,
                ))
            yield batch


def load(conn, rows: Rows, cursor_class, *, bounded: bool = False) -> dict[str, dict]:
    """Write every batch as billing.ledger does, through ``cursor_class``, into both tables in
    turn (batch k into one, then into the other: both grow together and share whatever else
    the machine is doing). ``bounded``: the request-id lookup also says the batch's created_at
    range, which lets PostgreSQL skip the partitions the batch cannot be in. Returns timings
    per table."""
    tables = {PLAIN: "request_id", PART: "request_id, created_at"}
    insert = {table: f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
                     f"ON CONFLICT ({conflict}) DO NOTHING" for table, conflict in tables.items()}
    stats = {table: {"seconds": 0.0, "lookup": 0.0, "tail_s": 0.0} for table in tables}
    tail_rows = written = analyzed = 0
    base = conn.execute(f"SELECT count(*) FROM {PLAIN}").fetchone()[0]
    conn.commit()  # each batch below is its own transaction, not a savepoint in this one
    assert conn.info.transaction_status == conn.info.transaction_status.__class__.IDLE
    tail_from = int(rows.n * 0.9)
    first_batch = None
    for batch in rows.batches(BATCH):
        first_batch = first_batch or batch
        ids = [r[0] for r in batch]
        lookup, params = "SELECT request_id FROM {} WHERE request_id = ANY(%s)", [ids]
        if bounded:
            lookup += " AND created_at >= %s AND created_at <= %s"
            params += [min(r[-1] for r in batch), max(r[-1] for r in batch)]
        in_tail = written + len(batch) > tail_from
        for table in (tables if written // BATCH % 2 == 0 else reversed(tables)):
            started = time.perf_counter()
            with conn.transaction():
                with cursor_class(conn) as cursor:
                    cursor.execute(lookup.format(table), params)
                    existing = {r[0] for r in cursor}
                    looked = time.perf_counter()
                    cursor.executemany(insert[table], [r for r in batch if r[0] not in existing])
            elapsed = time.perf_counter() - started
            stats[table]["seconds"] += elapsed
            stats[table]["lookup"] += looked - started
            if in_tail:
                stats[table]["tail_s"] += elapsed
        tail_rows += len(batch) if in_tail else 0
        written += len(batch)
        if written - analyzed > 0.1 * (base + written):  # autovacuum is off: analyze when it would
            analyzed = written
            for table in tables:
                conn.execute(f"ANALYZE {table}")
            conn.commit()
        if rows.n >= 100_000 and written % (rows.n // 10) < BATCH:
            print(f"  {written:>10,} rows: " + ", ".join(
                f"{table} {written / s['seconds']:,.0f} rows/s" for table, s in stats.items()), flush=True)

    for table, s in stats.items():
        # a retried batch: the same rows again, lookup skipped so ON CONFLICT has to catch them all
        with conn.transaction(), cursor_class(conn) as cursor:
            cursor.executemany(insert[table], first_batch)
            s["retried"] = cursor.rowcount
        s.update(rows=written, rate=written / s["seconds"], tail_rate=tail_rows / s["tail_s"],
                 lookup_ms=s["lookup"] / (written / BATCH) * 1000)
    return stats


def size(conn, table: str) -> int:
    """Bytes of ``table`` with its indexes (and its partitions' for a partitioned table)."""
    return conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size(%s::regclass)) "
        "FROM pg_partition_tree(%s::regclass)", [table, table]
    ).fetchone()[0]


def median_ms(conn, sql: str, params: list, repeats: int) -> float:
    for _ in range(3):
        conn.execute(sql, params).fetchall()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def queries(conn, table: str, *, now: datetime, big: int, small: int, request_id: str,
            repeats: int) -> dict[str, float]:
    day = (now - timedelta(days=40)).replace(hour=0, minute=0, second=0, microsecond=0)
    since = now - timedelta(days=30)
    agg = f"SELECT count(*), sum(cost) FROM {table} WHERE tenant_id = %s AND created_at >= %s AND created_at < %s"
    page = (f"SELECT * FROM {table} WHERE tenant_id = %s AND created_at >= %s AND created_at < %s "
            "ORDER BY created_at DESC, id DESC LIMIT 50")
    return {
        "big: last 30 days": median_ms(conn, agg, [big, since, now], repeats),
        "big: one day": median_ms(conn, agg, [big, day, day + timedelta(days=1)], repeats),
        "small: last 30 days": median_ms(conn, agg, [small, since, now], repeats),
        "small: one day": median_ms(conn, agg, [small, day, day + timedelta(days=1)], repeats),
        "big: newest 50 rows of 30 days": median_ms(conn, page, [big, since, now], repeats),
        "one row by request_id": median_ms(conn, f"SELECT * FROM {table} WHERE request_id = %s", [request_id],
                                           repeats),
    }


def wal_lsn(conn):
    return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def wal_since(conn, lsn) -> int:
    """WAL bytes written since ``lsn`` by the whole cluster: an upper bound for one session."""
    return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn]).fetchone()[0])


def purge_by_delete(conn, table: str, *, cutoff: datetime, tenants: int) -> dict:
    """billing.retention's loop: per tenant, 5000 ids at a time in id order, one transaction
    each. Each DELETE runs under EXPLAIN (ANALYZE, WAL), which executes it and reports the WAL
    it wrote (the row locks taken by the SELECT add a little more, not counted)."""
    select = (f"SELECT id FROM {table} WHERE tenant_id = %s AND created_at < %s AND id > %s "
              f"ORDER BY id LIMIT {DELETE_BATCH} FOR UPDATE SKIP LOCKED")
    delete = f"EXPLAIN (ANALYZE, WAL, FORMAT JSON) DELETE FROM {table} WHERE id = ANY(%s)"
    before_size = size(conn, table)
    conn.commit()
    started = time.perf_counter()
    deleted = batches = wal = 0
    for tenant in range(1, tenants + 1):
        after = 0
        while True:
            with conn.transaction():
                ids = [r[0] for r in conn.execute(select, [tenant, cutoff, after])]
                if ids:
                    plan = conn.execute(delete, [ids]).fetchone()[0][0]["Plan"]
                    wal += plan["WAL Bytes"]
                    deleted += len(ids)  # locked by us: every one of them is deleted
                    batches += 1
            if len(ids) < DELETE_BATCH:
                break
            after = ids[-1]
    seconds = time.perf_counter() - started
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()  # this session's counts reach the statistics when it goes idle
    time.sleep(1)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    dead = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass",
                        [table]).fetchone()[0]
    after_size = size(conn, table)
    conn.commit()
    conn.autocommit = True
    started = time.perf_counter()
    conn.execute(f"VACUUM {table}")
    vacuum_s = time.perf_counter() - started
    conn.autocommit = False
    return {"deleted": deleted, "batches": batches, "seconds": seconds, "wal": wal, "dead": dead,
            "before": before_size, "after": after_size, "vacuum_s": vacuum_s, "after_vacuum": size(conn, table)}


def purge_by_drop(conn, oldest: str) -> dict:
    before_size = size(conn, PART)
    deleted = conn.execute(f"SELECT count(*) FROM {oldest}").fetchone()[0]
    conn.commit()
    conn.autocommit = True  # DETACH … CONCURRENTLY runs outside a transaction block
    lsn = wal_lsn(conn)
    started = time.perf_counter()
    conn.execute(f"ALTER TABLE {PART} DETACH PARTITION {oldest} CONCURRENTLY")
    detach_s = time.perf_counter() - started
    conn.execute(f"DROP TABLE {oldest}")
    seconds = time.perf_counter() - started
    wal = wal_since(conn, lsn)
    conn.autocommit = False
    return {"deleted": deleted, "seconds": seconds, "detach_s": detach_s, "wal": wal, "before": before_size,
            "after": size(conn, PART)}


def mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=650_000, help="ledger rows, spread over 13 months")
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=25, help="runs per query (the median is shown)")
    parser.add_argument("--extra-rows", type=int, default=30_000,
                        help="rows written at full size in each of the two variants after the load")
    parser.add_argument("--keep", action="store_true", help="leave the bench tables in place")
    args = parser.parse_args()

    url = os.environ["DATABASE_URL"]
    ensure_database(url)
    import psycopg

    conn = psycopg.connect(url, cursor_factory=psycopg.ClientCursor)  # as Django sends queries
    run_started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    months = month_starts(now)
    create_tables(conn, args.tenants, months)
    oldest = f"{PART}_{months[0]:%Y_%m}"

    def rows_of(**kw) -> Rows:
        return Rows(tenants=args.tenants, **({"rows": args.rows, "start": months[0], "end": now} | kw))

    print(f"writing {args.rows:,} rows into each table ...", flush=True)
    loads = load(conn, rows_of(), psycopg.Cursor)
    # then, at full size, more rows of the last day: through the cursor Django's connection hands
    # out today (client-side binding), and with the lookup bounded by the batch's times
    extra = {"rows": args.extra_rows, "start": now - timedelta(days=1)}
    client = load(conn, rows_of(**extra, seed=7), psycopg.ClientCursor)
    bounded = load(conn, rows_of(**extra, seed=8), psycopg.Cursor, bounded=True)
    conn.autocommit = True
    for table in (PLAIN, PART):
        conn.execute(f"VACUUM (ANALYZE) {table}")
    conn.autocommit = False
    sizes = {table: size(conn, table) for table in (PLAIN, PART)}

    rows = rows_of()
    small = args.tenants // 2
    request_id = conn.execute(f"SELECT request_id FROM {PLAIN} ORDER BY id LIMIT 1 OFFSET %s",
                              [args.rows // 2]).fetchone()[0]
    print("querying ...", flush=True)
    reads = {t: queries(conn, t, now=now, big=1, small=small, request_id=request_id, repeats=args.repeats)
             for t in (PLAIN, PART)}
    conn.commit()

    print("purging the oldest month ...", flush=True)
    deleted = purge_by_delete(conn, PLAIN, cutoff=months[1], tenants=args.tenants)
    dropped = purge_by_drop(conn, oldest)
    assert deleted["deleted"] == dropped["deleted"], (deleted["deleted"], dropped["deleted"])
    if not args.keep:
        drop_tables(conn)
    conn.close()
    wall = time.perf_counter() - run_started

    p, q = loads[PLAIN], loads[PART]
    cp, cq = client[PLAIN], client[PART]
    bp, bq = bounded[PLAIN], bounded[PART]
    lines = [
        f"\nLedger on PostgreSQL: plain table vs 13 monthly partitions. {p['rows']:,} rows over 13 months "
        f"+ 2 × {cp['rows']:,} in the last day, {args.tenants} tenants (big = tenant 1, {rows.share(1):.0%} of rows; "
        f"small = tenant {small}, {rows.share(small):.2%}). Writes: batches of {BATCH}, one transaction each. "
        f"Queries: median of {args.repeats}, warm cache. Whole run {wall:.0f} s.\n",
        "| measure | plain table | monthly partitions |",
        "|---|---|---|",
        f"| writes, server-side binding, whole load (rows/s) | {p['rate']:,.0f} | {q['rate']:,.0f} |",
        f"| writes, server-side binding, last 10 % of the load (rows/s) | {p['tail_rate']:,.0f} "
        f"| {q['tail_rate']:,.0f} |",
        f"| … of which the request-id lookup (ms per batch) | {p['lookup_ms']:.1f} | {q['lookup_ms']:.1f} |",
        f"| writes, client-side binding (Django's cursor today), at full size (rows/s) | {cp['rate']:,.0f} "
        f"| {cq['rate']:,.0f} |",
        f"| writes, server-side binding, lookup bounded by the batch's created_at, at full size (rows/s) "
        f"| {bp['rate']:,.0f} | {bq['rate']:,.0f} |",
        f"| … of which the bounded lookup (ms per batch) | {bp['lookup_ms']:.1f} | {bq['lookup_ms']:.1f} |",
        f"| retried batch of {BATCH}: rows inserted again | {p['retried']} | {q['retried']} |",
        f"| size with indexes after the load | {mb(sizes[PLAIN])} | {mb(sizes[PART])} |",
    ]
    for name in reads[PLAIN]:
        lines.append(f"| query, {name} (ms) | {reads[PLAIN][name]:.2f} | {reads[PART][name]:.2f} |")
    lines += [
        f"| retention, oldest month: rows removed | {deleted['deleted']:,} | {dropped['deleted']:,} |",
        f"| … how | batched DELETE, {deleted['batches']} transactions of ≤ {DELETE_BATCH:,} "
        f"| DETACH PARTITION CONCURRENTLY + DROP TABLE |",
        f"| … time | {deleted['seconds']:.2f} s | {dropped['seconds'] * 1000:.0f} ms "
        f"(of which detach {dropped['detach_s'] * 1000:.0f} ms) |",
        f"| … WAL written | {mb(deleted['wal'])} (DELETE statements) "
        f"| ≤ {dropped['wal'] / 1024:,.0f} kB (whole cluster meanwhile; catalog changes only) |",
        f"| … size before → after | {mb(deleted['before'])} → {mb(deleted['after'])}, "
        f"{deleted['dead']:,} dead rows | {mb(dropped['before'])} → {mb(dropped['after'])} |",
        f"| … VACUUM afterwards | needed: {deleted['vacuum_s']:.2f} s; size still {mb(deleted['after_vacuum'])} "
        f"(space reused by new rows, not returned) | not needed |",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
