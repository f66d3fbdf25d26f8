"""How long a 500-model catalog sync takes of our own time, and how many queries it makes.

    DEBUG=true .venv/bin/python bench/catalog_sync.py [--models 500] [--rounds 5]

Runs against PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/tollgate_bench,
created if missing) and a loopback fake upstream per protocol. "Own time" is the sync's wall
time minus the time spent waiting for the upstream's HTTP answer (measured separately by
timing the catalog fetch alone), i.e. parsing, pricing, diffing and writing.
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
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ENV_FILE", "/dev/null")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    from core.net import fetch_json, guarded_client
    from providers.fetchers.base import request_headers
    from providers.models import Provider
    from providers.services import provider_create
    from providers.sync import provider_sync
    from tests.fakes import FakeOpenAI, FakeOpenRouter, make_models

    n = args.models
    names = make_models(n, prefix="gpt-4o-mini-variant")
    openrouter_models = [
        {"id": f"vendor/model-{i:04d}", "pricing": {"prompt": "0.0000001", "completion": "0.0000004"},
         "context_length": 131072, "supported_parameters": ["tools"],
         "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]}}
        for i in range(n)
    ]
    rows = []

    def run_against(label, fake):
        """Measure the syncs against one fake upstream (a function, so the closures below bind its values)."""
        with fake:
            Provider.objects.filter(owner__isnull=True, name="bench").delete()
            kind = "openrouter" if isinstance(fake, FakeOpenRouter) else "openai"
            provider = provider_create(owner=None, data={"name": "bench", "base_url": fake.base_url,
                                                         "provider_type": kind})
            catalog_url = f"{provider.base_url}/models"
            fetch = []
            with guarded_client(timeout=30, headers=request_headers(provider), max_bytes=50_000_000) as client:
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    fetch_json(client, "GET", catalog_url)  # the HTTP exchange and JSON decode only
                    fetch.append(time.perf_counter() - started)
            fetch_s = statistics.median(fetch)

            def measured(step: str, mutate=None):
                if mutate:
                    mutate()
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    result = provider_sync(provider=provider)
                    wall = time.perf_counter() - started
                rows.append((label, step, result, wall, max(wall - fetch_s, 0), len(queries)))

            measured("first sync (all new)")
            for i in range(args.rounds):
                measured(f"unchanged #{i + 1}")

            def change_tenth():
                if kind == "openrouter":
                    for m in fake.models[: n // 10]:
                        m["context_length"] = 65536
                    fake.models = fake.models[: n - n // 20]
                else:
                    fake.models = names[: n - n // 20] + [f"new-model-{i}" for i in range(n // 20)]

            measured("5% gone, 5-10% changed/new", change_tenth)
            Provider.objects.filter(pk=provider.pk).delete()

    run_against("openai-compatible (genai-prices lookups)", FakeOpenAI(models=names))
    run_against("openrouter (reported prices)", FakeOpenRouter(models=openrouter_models))

    print(f"\nCatalog sync, {n} models, PostgreSQL, loopback fake upstream "
          f"(own = wall minus the median time of the bare HTTP fetch + JSON decode)\n")
    print("| provider | step | added | updated | stale | wall ms | own ms | queries |")
    print("|---|---|---|---|---|---|---|---|")
    for label, step, r, wall, own, queries in rows:
        print(f"| {label} | {step} | {r.added} | {r.updated} | {r.stale} | {wall * 1000:.1f} | "
              f"{own * 1000:.1f} | {queries} |")


if __name__ == "__main__":
    main()
