"""Budget alerts survive a broker outage: an alert whose delivery cannot be queued is saved and
the failure logged, and the budget check queues every overdue delivery again once the broker
answers; a real worker process on the Redis broker then delivers it, once."""

import logging
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from billing.alerts import QUEUED_GRACE, REQUEUE_AFTER, alert_deliver_once, alerts_check, alerts_requeue
from billing.models import BudgetAlert
from billing.periods import local_today
from billing.tasks import alert_deliver, budgets_check
from tests.billing.conftest import add_spend, make_budget
from tests.config.test_redis_down import broker_at
from tests.utils.procs import REPO, free_port


def due_of(alert_id: int):
    return BudgetAlert.objects.get(pk=alert_id).delivery_due_at


def wait_for(predicate, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@contextmanager
def celery_worker(tmp_path):
    """A real worker process on the Redis broker and the test database (DEBUG: mail goes to its
    console, loopback webhooks are allowed); yields its log file."""
    db = settings.DATABASES["default"]
    env = {**os.environ, "ENV_FILE": "/dev/null", "DEBUG": "true",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                           f"/{connection.settings_dict['NAME']}"}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [os.path.join(REPO, ".venv", "bin", "celery"), "-A", "config", "worker", "-P", "solo", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield log
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_alert_made_while_the_broker_is_down_is_delivered_once_it_is_back(world, webhook_receiver, caplog,
                                                                            tmp_path):
    receiver = webhook_receiver(script=(200,))
    make_budget(world.tenant, name="Ops", amount=Decimal("10"), thresholds=[100], webhook_url=receiver.url)
    make_budget(world.tenant, name="Mail", amount=Decimal("10"), thresholds=[100])  # email only
    add_spend(world.tenant, local_today(world.tenant.timezone), "12")

    with broker_at(f"redis://127.0.0.1:{free_port()}/0"), caplog.at_level(logging.WARNING, logger="billing.alerts"):
        ids = alerts_check()  # committed; queueing their deliveries after commit fails
        failures = [r.getMessage() for r in caplog.records if "could not queue its delivery" in r.getMessage()]
        assert len(ids) == 2 and len(failures) == 1  # the second is not tried once the broker failed
        assert all(due_of(i) <= timezone.now() for i in ids)  # due at once, for the next check
        # The next checks while the broker is still down: nothing raised, nothing lost.
        assert budgets_check.apply().get() == []
        later = timezone.now() + REQUEUE_AFTER + timedelta(seconds=5)
        overdue_since = {i: due_of(i) for i in ids}
        assert alerts_requeue(now=later) == []
        assert {i: due_of(i) for i in ids} == overdue_since  # still overdue: tried again next time

    assert not BudgetAlert.objects.filter(email_sent_at__isnull=False).exists() and receiver.bodies == []

    # The broker is back: the next check queues them, and a real worker delivers them.
    assert sorted(alerts_requeue(now=timezone.now() + REQUEUE_AFTER + timedelta(seconds=5))) == sorted(ids)
    with celery_worker(tmp_path) as worker_log:
        delivered = wait_for(lambda: all(due_of(i) is None for i in ids), timeout=60)
    assert delivered, worker_log.read_text(errors="replace")[-3000:]

    by_name = {a.budget.name: a for a in BudgetAlert.objects.filter(pk__in=ids).select_related("budget")}
    assert all(a.email_sent_at is not None for a in by_name.values())
    assert by_name["Ops"].webhook_sent_at is not None and by_name["Ops"].webhook_attempts == 1
    sent = worker_log.read_text()  # the console mail backend
    assert "Subject: [Tollgate] Acme: budget 'Ops' at 100%" in sent
    assert "Subject: [Tollgate] Acme: budget 'Mail' at 100%" in sent
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["alert_id"] == by_name["Ops"].pk
    assert alerts_requeue(now=timezone.now() + timedelta(hours=1)) == []  # delivered: never again


@pytest.mark.django_db
def test_only_overdue_deliveries_are_queued_again_oldest_first_in_a_bounded_batch(world):
    budgets = [make_budget(world.tenant, name=f"b{i}", amount=Decimal("10"), thresholds=[100]) for i in range(5)]
    add_spend(world.tenant, local_today(world.tenant.timezone), "10")
    now = timezone.now()
    ids = sorted(alerts_check(now=now))  # the deliveries queued after commit: never, in this test
    assert len(ids) == len(budgets)
    assert all(due_of(i) == now + QUEUED_GRACE for i in ids)  # a queued delivery has this long to run
    lost, oldest, in_progress, delivered, given_up = ids
    BudgetAlert.objects.filter(pk=lost).update(delivery_due_at=now - timedelta(minutes=5))
    BudgetAlert.objects.filter(pk=oldest).update(delivery_due_at=now - timedelta(minutes=30))
    BudgetAlert.objects.filter(pk=in_progress).update(delivery_due_at=now + timedelta(minutes=3))  # a retry waits
    BudgetAlert.objects.filter(pk__in=[delivered, given_up]).update(delivery_due_at=None)

    assert alerts_requeue(now=now, batch=1) == [oldest]  # published to the real broker (no worker here)
    assert due_of(oldest) == now + QUEUED_GRACE
    assert alerts_requeue(now=now) == [lost]
    assert alerts_requeue(now=now) == []  # both have QUEUED_GRACE to run now
    # Not run by then: lost again (the retry due first comes first; equal due times by id).
    assert alerts_requeue(now=now + QUEUED_GRACE + REQUEUE_AFTER + timedelta(seconds=1)) == [in_progress, lost,
                                                                                            oldest]


@pytest.mark.django_db
def test_a_delivered_or_given_up_alert_is_no_longer_due_and_a_retry_says_when(world, mailoutbox, webhook_receiver,
                                                                             monkeypatch):
    working = webhook_receiver(script=(500, 200))
    make_budget(world.tenant, name="w", amount=Decimal("1"), thresholds=[100], webhook_url=working.url)
    broken = webhook_receiver(script=(500,))
    make_budget(world.tenant, name="b", amount=Decimal("1"), thresholds=[100], webhook_url=broken.url)
    add_spend(world.tenant, local_today(world.tenant.timezone), "1")
    by_name = {BudgetAlert.objects.get(pk=i).budget.name: i for i in alerts_check()}
    dues = []
    real_retry = alert_deliver.retry

    def retry(*args, **kwargs):  # the due time each retry leaves behind, before it is queued
        dues.append((kwargs["countdown"], due_of(kwargs["args"][0] if "args" in kwargs else by_name["w"])))
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(alert_deliver, "retry", retry)
    started = timezone.now()
    assert alert_deliver.apply(args=[by_name["w"]]).get() is True
    countdown, due = dues[0]
    assert due >= started + timedelta(seconds=countdown) + QUEUED_GRACE
    assert due_of(by_name["w"]) is None  # delivered on the second try

    assert alert_deliver.apply(args=[by_name["b"]]).get() is False
    assert due_of(by_name["b"]) is None  # given up: not queued again either
    assert BudgetAlert.objects.get(pk=by_name["b"]).last_error.startswith("gave up after 6 tries")
    assert alert_deliver_once(by_name["w"]) is True and len(working.bodies) == 2
