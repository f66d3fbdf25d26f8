"""The embedded default (SQLite) answers the usage reads exactly as PostgreSQL does: the same
sample ledger is read here and in a fresh SQLite process."""

import json
import subprocess
import sys

import pytest

from tests.billing.usage.embedded import snapshot
from tests.billing.usage.factories import sample_record
from tests.utils.procs import REPO, embedded_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_sqlite_answers_like_postgresql(world, catalog, tmp_path):
    world.tenant.timezone = "America/New_York"
    world.tenant.save()
    sample_record(world.tenant, catalog)
    on_postgres = json.loads(json.dumps(snapshot(world.tenant)))

    done = subprocess.run([sys.executable, "-m", "tests.billing.usage.embedded"], cwd=REPO,
                          env=embedded_env(tmp_path, DEBUG="true"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])

    assert answer["vendor"] == "sqlite"
    on_sqlite = answer["snapshot"]
    assert on_sqlite.keys() == on_postgres.keys()
    for name in on_postgres:
        assert on_sqlite[name] == on_postgres[name], name
    assert on_postgres["day/rollups"]["totals"]["requests"] > 200 and len(on_postgres["csv"]) > 200
