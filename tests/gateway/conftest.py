"""Gateway tests use transactional databases: the data plane reads the database from its own
thread, which only sees committed rows. The live-server fixtures are in tests/conftest.py."""

import os
import signal
import subprocess
import sys

import pytest
from django.db import connection

from tests.utils.procs import REPO, free_port, wait_http


@pytest.fixture
def second_instance(live, settings, tmp_path):
    """Another Tollgate process on its own port, same PostgreSQL and Redis, its own var
    directory (its usage journal is its own test's)."""
    port = free_port()
    db = settings.DATABASES["default"]
    env = {
        **os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true", "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                        f"/{connection.settings_dict['NAME']}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=env, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
