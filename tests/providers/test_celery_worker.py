"""A real Celery worker and beat (Redis broker, the test database) sync a due provider with
nobody asking: the schedule in the database fires, the worker runs the task."""

import os
import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from providers.models import Provider
from providers.services import provider_create
from tests.fakes import FakeOpenAI
from tests.utils.procs import REPO

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start(args, env, log):
    return subprocess.Popen(
        [os.path.join(REPO, ".venv", "bin", "celery"), "-A", "config", *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def test_beat_and_worker_sync_a_due_provider(world, tmp_path, settings):
    # Transactional tests empty every table afterwards, so the migration's schedule may be
    # gone when this runs after another one; put the same row back.
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    task, _ = PeriodicTask.objects.get_or_create(name="Sync due provider catalogs",
                                                 defaults={"task": "providers.sync_due", "interval": every_minute})
    # As if the last run was two minutes ago, so beat fires at once instead of in a minute.
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=timezone.now() - timedelta(minutes=2))
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                        f"/{connection.settings_dict['NAME']}",
        "ENV_FILE": "/dev/null",
        "DEBUG": "true",
    }
    with FakeOpenAI(models=["alpha", "beta", "gamma"]) as fake:
        provider = provider_create(owner=world.tenant, data={"name": "scheduled", "base_url": fake.base_url})
        with open(tmp_path / "worker.log", "wb") as wlog, open(tmp_path / "beat.log", "wb") as blog:
            worker = start(["worker", "-P", "solo", "--loglevel=INFO", "--without-gossip", "--without-mingle"],
                           env, wlog)
            beat = start(["beat", "--loglevel=INFO", "-s", str(tmp_path / "beat-schedule")], env, blog)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    provider.refresh_from_db()
                    if provider.sync_status == "ok":
                        break
                    time.sleep(0.5)
            finally:
                for proc in (beat, worker):
                    os.killpg(proc.pid, signal.SIGTERM)
                for proc in (beat, worker):
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
        logs = ((tmp_path / "worker.log").read_text(errors="replace")[-2000:]
                + (tmp_path / "beat.log").read_text(errors="replace")[-2000:])
        assert provider.sync_status == "ok", logs
        synced = Provider.objects.get(pk=provider.pk).models.values_list("model_id", flat=True)
        assert set(synced) == {"alpha", "beta", "gamma"}
        assert fake.requests_to("/v1/models")
