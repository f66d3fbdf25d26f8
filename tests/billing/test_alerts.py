"""The scheduled budget check and alert delivery: one alert per crossing however many workers
look, email to owners and admins, webhooks retried with backoff on a real loopback server."""

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django_celery_beat.models import PeriodicTask

from billing import alerts
from billing.alerts import (
    alert_deliver_email,
    alert_deliver_once,
    alert_webhook_attempt,
    alerts_check,
)
from billing.models import Budget, BudgetAlert
from billing.periods import local_today
from billing.tasks import alert_deliver, budgets_check, retry_countdown
from tenants.models import ApiKey, Membership, Role
from tests.billing.conftest import add_spend, make_alias, make_budget

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # a Wednesday
TODAY = NOW.date()


def alerts_of(budget) -> list[tuple[date, int]]:
    return sorted(BudgetAlert.objects.filter(budget=budget).values_list("period_start", "threshold"))


# --- creating alerts --------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_crossing_alerts_once(world, django_capture_on_commit_callbacks):
    budget = make_budget(world.tenant, amount=Decimal("100"))
    add_spend(world.tenant, TODAY - timedelta(days=3), "45")
    assert alerts_check(now=NOW) == []

    add_spend(world.tenant, TODAY, "10")  # 55 %
    with django_capture_on_commit_callbacks() as queued:
        first = alerts_check(now=NOW)
    assert len(first) == 1 and len(queued) == 1  # delivery queued after commit, once per alert
    assert alerts_of(budget) == [(date(2026, 11, 1), 50)]
    alert = BudgetAlert.objects.get(pk=first[0])
    assert (alert.kind, alert.spent, alert.limit, alert.tenant_id) == ("budget", Decimal("55"), Decimal("100"),
                                                                        world.tenant.pk)

    with django_capture_on_commit_callbacks() as queued:
        assert alerts_check(now=NOW) == []  # the same crossing: nothing new
        assert alerts_check(now=NOW + timedelta(minutes=2)) == []
    assert queued == []

    add_spend(world.tenant, TODAY, "30")  # 85 %
    second = alerts_check(now=NOW)
    assert [BudgetAlert.objects.get(pk=i).threshold for i in second] == [80]
    assert alerts_of(budget) == [(date(2026, 11, 1), 50), (date(2026, 11, 1), 80)]


@pytest.mark.django_db
def test_crossing_several_thresholds_at_once_creates_one_alert_each(world):
    budget = make_budget(world.tenant, amount=Decimal("10"), action="block")
    add_spend(world.tenant, TODAY, "12.5")
    created = alerts_check(now=NOW)
    assert len(created) == 3
    assert [t for _, t in alerts_of(budget)] == [50, 80, 100]
    assert all(a.spent == Decimal("12.5") for a in BudgetAlert.objects.filter(pk__in=created))


@pytest.mark.django_db
def test_a_new_period_alerts_again(world):
    budget = make_budget(world.tenant, amount=Decimal("10"), period="week", thresholds=[100])
    add_spend(world.tenant, TODAY, "11")
    assert len(alerts_check(now=NOW)) == 1
    next_week = NOW + timedelta(days=7)
    assert alerts_check(now=next_week) == []  # nothing spent yet in the new week
    add_spend(world.tenant, next_week.date(), "10")
    assert len(alerts_check(now=next_week)) == 1
    assert alerts_of(budget) == [(date(2026, 11, 16), 100), (date(2026, 11, 23), 100)]


@pytest.mark.django_db
def test_rolling_budget_alerts_once_per_threshold_per_30_days(world):
    budget = make_budget(world.tenant, amount=Decimal("10"), period="rolling_30d", thresholds=[100])
    add_spend(world.tenant, TODAY, "20")
    assert len(alerts_check(now=NOW)) == 1
    # Still over the next days: the window moved, but this is the same crossing.
    for days in (1, 10, 29):
        assert alerts_check(now=NOW + timedelta(days=days)) == []
    # Thirty days on, the old spend has dropped out; new spend crosses again.
    later = NOW + timedelta(days=30)
    add_spend(world.tenant, later.date(), "15")
    assert len(alerts_check(now=later)) == 1
    assert len(alerts_of(budget)) == 2


@pytest.mark.django_db
def test_scopes_time_zones_and_what_is_skipped(world):
    tenant = world.tenant
    tenant.timezone = "Pacific/Auckland"  # NOW is 04:00 on 19 November there
    tenant.save()
    key = ApiKey.objects.get(tenant=tenant, scope="chat")
    day_budget = make_budget(tenant, name="today", amount=Decimal("10"), period="day", thresholds=[100])
    key_budget = make_budget(tenant, name="key", amount=Decimal("10"), api_key=key.pk, thresholds=[100])
    disabled = make_budget(tenant, name="off", amount=Decimal("1"), thresholds=[100], enabled=False)
    add_spend(tenant, date(2026, 11, 18), "50", key=None)  # yesterday in Auckland
    add_spend(tenant, date(2026, 11, 19), "11")  # today in Auckland, no key
    add_spend(tenant, date(2026, 11, 19), "4", key=key)

    suspended = make_budget(world.other, amount=Decimal("1"), thresholds=[100])
    add_spend(world.other, TODAY, "5")
    world.other.is_active = False
    world.other.save()

    alerts_check(now=NOW)
    assert alerts_of(day_budget) == [(date(2026, 11, 19), 100)]  # 15 today, not yesterday's 50
    assert alerts_of(key_budget) == []  # the key spent 4 of 10
    assert alerts_of(disabled) == [] and alerts_of(suspended) == []


@pytest.mark.django_db
def test_daily_cost_threshold_alerts_without_a_budget(world, settings):
    settings.COST_ALERT_THRESHOLD = Decimal("50")
    world.other.timezone = "America/Los_Angeles"  # NOW is 07:00 on 18 November there
    world.other.save()
    add_spend(world.tenant, TODAY, "30")
    add_spend(world.tenant, TODAY, "25")
    add_spend(world.other, TODAY - timedelta(days=1), "500")  # yesterday
    add_spend(world.other, TODAY, "49.99")

    created = alerts_check(now=NOW)
    assert len(created) == 1
    alert = BudgetAlert.objects.get(pk=created[0])
    assert (alert.kind, alert.budget, alert.tenant, alert.threshold) == ("daily_cost", None, world.tenant, 100)
    assert (alert.spent, alert.limit, alert.period_start) == (Decimal("55"), Decimal("50"), TODAY)
    assert alerts_check(now=NOW) == []  # once per tenant per day
    add_spend(world.tenant, TODAY + timedelta(days=1), "60")
    assert len(alerts_check(now=NOW + timedelta(days=1))) == 1

    settings.COST_ALERT_THRESHOLD = None
    add_spend(world.tenant, TODAY + timedelta(days=2), "60")
    assert alerts_check(now=NOW + timedelta(days=2)) == []
    settings.COST_ALERT_THRESHOLD = Decimal("0")
    assert alerts_check(now=NOW + timedelta(days=2)) == []


@pytest.mark.django_db
def test_the_check_makes_a_bounded_number_of_queries(world, django_assert_max_num_queries):
    from tenants.services import tenant_create

    for i in range(30):
        tenant = tenant_create(slug=f"t{i}", name=f"T{i}").tenant
        tenant.timezone = ["UTC", "Pacific/Auckland", "America/Los_Angeles"][i % 3]
        tenant.save()
        make_budget(tenant, amount=Decimal("10"), period=["day", "week", "month", "rolling_30d"][i % 4])
        add_spend(tenant, local_today(tenant.timezone, NOW), "9")
    with django_assert_max_num_queries(20):
        created = alerts_check(now=NOW)
    assert len(created) == 60  # 50 % and 80 % of every budget


@pytest.mark.django_db
def test_beat_runs_the_check_every_two_minutes(world, celery_eager):
    task = PeriodicTask.objects.get(name="Check budgets and send alerts")
    assert task.task == "billing.budgets_check" and task.enabled
    assert (task.interval.every, task.interval.period) == (2, "minutes")
    make_budget(world.tenant, amount=Decimal("1"), thresholds=[100])
    add_spend(world.tenant, datetime.now(UTC).date(), "2")
    assert len(budgets_check.delay().get()) == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_checkers_create_one_alert_per_crossing(world, celery_eager, mailoutbox):
    budgets = [make_budget(world.tenant, name=f"b{i}", amount=Decimal("10")) for i in range(20)]
    add_spend(world.tenant, TODAY, "10")  # every budget crosses 50, 80 and 100
    start = threading.Barrier(2)
    results: dict[str, list[int]] = {}
    errors = []

    def worker(name: str) -> None:
        try:
            start.wait()
            results[name] = alerts_check(now=NOW)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert BudgetAlert.objects.count() == 60
    assert sorted(results["a"] + results["b"]) == sorted(BudgetAlert.objects.values_list("pk", flat=True))
    assert set(results["a"]).isdisjoint(results["b"])
    assert all(len(alerts_of(b)) == 3 for b in budgets)
    # Delivery was queued by whoever created each alert: one email per alert.
    assert len(mailoutbox) == 60


# --- delivery: email ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_email_goes_to_owners_and_admins_once(world, mailoutbox):
    User = get_user_model()
    no_email = User.objects.create_user("noemail", "", "pw")
    Membership.objects.create(tenant=world.tenant, user=no_email, role=Role.ADMIN)
    make_alias(world.tenant, "cheap")
    budget = make_budget(world.tenant, name="Team budget", amount=Decimal("200"), action="downgrade",
                         downgrade_alias="cheap")
    add_spend(world.tenant, TODAY, "165.25")
    ids = alerts_check(now=NOW)
    alert = BudgetAlert.objects.get(pk=max(ids))  # the 80 % alert
    assert alert.threshold == 80

    assert alert_deliver_email(alert) is True
    assert alert_deliver_email(BudgetAlert.objects.get(pk=alert.pk)) is False  # never twice
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert sorted(mail.to) == ["admin@acme.test", "owner@acme.test"]  # not the viewer, not other tenants
    assert "Acme" in mail.subject and "Team budget" in mail.subject and "80%" in mail.subject
    assert "$165.25 of $200.00" in mail.body
    assert "calendar month, 2026-11-01 to 2026-11-30 (UTC)" in mail.body
    assert "routed to the cheaper alias 'cheap'" in mail.body
    alert.refresh_from_db()
    assert alert.email_sent_at is not None
    assert budget.pk == alert.budget_id


@pytest.mark.django_db
def test_failed_email_is_given_back_and_retried(world, mailoutbox, monkeypatch):
    make_budget(world.tenant, amount=Decimal("1"), thresholds=[100])
    add_spend(world.tenant, TODAY, "1")
    (alert_id,) = alerts_check(now=NOW)

    def broken(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(alerts, "send_mail", broken)
    assert alert_deliver_once(alert_id) is False
    alert = BudgetAlert.objects.get(pk=alert_id)
    assert alert.email_sent_at is None and "smtp down" in alert.last_error
    monkeypatch.undo()
    assert alert_deliver_once(alert_id) is True
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_daily_cost_alert_email(world, settings, mailoutbox):
    settings.COST_ALERT_THRESHOLD = Decimal("20")
    add_spend(world.tenant, TODAY, "21")
    (alert_id,) = alerts_check(now=NOW)
    assert alert_deliver_once(alert_id) is True  # no webhook for the daily threshold
    (mail,) = mailoutbox
    assert "daily cost $21.00 is over $20.00" in mail.subject
    assert "2026-11-18" in mail.body and "COST_ALERT_THRESHOLD" in mail.body


# --- delivery: webhook --------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_fails_twice_then_is_delivered_by_the_task(world, mailoutbox, webhook_receiver, monkeypatch):
    receiver = webhook_receiver(script=(500, 503, 200))
    delays = []
    real_retry = alert_deliver.retry

    def retry(*args, **kwargs):
        delays.append(kwargs.get("countdown"))
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(alert_deliver, "retry", retry)
    budget = make_budget(world.tenant, name="Ops", amount=Decimal("10"), thresholds=[100], action="block",
                         webhook_url=receiver.url)
    add_spend(world.tenant, TODAY, "10.5")
    (alert_id,) = alerts_check(now=NOW)

    # apply() runs the task here, as a worker would, and runs each retry inline too (Celery
    # ignores the countdown when applying eagerly; the countdowns asked for are checked below).
    assert alert_deliver.apply(args=[alert_id]).get() is True

    alert = BudgetAlert.objects.get(pk=alert_id)
    assert alert.webhook_attempts == 3 and alert.webhook_sent_at is not None
    assert "webhook attempt 2: the webhook answered HTTP 503" in alert.last_error
    assert receiver.url not in alert.last_error
    assert len(mailoutbox) == 1  # the email went out once, not once per try
    assert len(receiver.bodies) == 3
    assert len(delays) == 2 and 30 <= delays[0] <= 33 and 60 <= delays[1] <= 66  # exponential backoff
    body = receiver.bodies[-1]
    assert body["text"].startswith("Tollgate: Acme budget 'Ops' reached 100%")
    assert "refused (HTTP 429)" in body["text"]
    assert {k: body[k] for k in ("tenant", "budget", "budget_id", "threshold", "spent", "limit", "period_start",
                                 "action")} == {
        "tenant": "acme", "budget": "Ops", "budget_id": budget.pk, "threshold": 100,
        "spent": "10.500000000000", "limit": "10.000000", "period_start": "2026-11-01", "action": "block",
    }
    # Done is done: running the task again sends nothing.
    assert alert_deliver.apply(args=[alert_id]).get() is True
    assert len(receiver.bodies) == 3 and len(mailoutbox) == 1


@pytest.mark.django_db
def test_webhook_attempts_one_at_a_time(world, webhook_receiver):
    receiver = webhook_receiver(script=(500, 500, 204))
    make_budget(world.tenant, amount=Decimal("1"), thresholds=[100], webhook_url=receiver.url)
    add_spend(world.tenant, TODAY, "1")
    (alert_id,) = alerts_check(now=NOW)
    outcomes = [alert_webhook_attempt(alert_id) for _ in range(4)]
    assert outcomes == [False, False, True, True]
    alert = BudgetAlert.objects.get(pk=alert_id)
    assert alert.webhook_attempts == 3 and alert.webhook_sent_at is not None and len(receiver.bodies) == 3


@pytest.mark.django_db
def test_unreachable_webhook_is_an_error_not_a_crash(world, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    make_budget(world.tenant, amount=Decimal("1"), thresholds=[100], webhook_url="http://127.0.0.1:9/hook")
    add_spend(world.tenant, TODAY, "1")
    (alert_id,) = alerts_check(now=NOW)
    assert alert_webhook_attempt(alert_id) is False
    assert "could not reach the webhook" in BudgetAlert.objects.get(pk=alert_id).last_error


@pytest.mark.django_db
def test_a_failing_webhook_does_not_hold_up_another_alert(world, mailoutbox, webhook_receiver):
    broken = webhook_receiver(script=(500,))
    working = webhook_receiver(script=(200,))
    bad = make_budget(world.tenant, name="bad", amount=Decimal("1"), thresholds=[100], webhook_url=broken.url)
    good = make_budget(world.tenant, name="good", amount=Decimal("1"), thresholds=[100], webhook_url=working.url)
    add_spend(world.tenant, TODAY, "1")
    ids = alerts_check(now=NOW)
    by_budget = {BudgetAlert.objects.get(pk=i).budget_id: i for i in ids}

    assert alert_deliver.apply(args=[by_budget[bad.pk]]).get() is False  # gave up after its tries
    assert alert_deliver.apply(args=[by_budget[good.pk]]).get() is True

    failed = BudgetAlert.objects.get(pk=by_budget[bad.pk])
    assert failed.webhook_attempts == alerts.WEBHOOK_MAX_TRIES == 6 and failed.webhook_sent_at is None
    assert failed.last_error.startswith("gave up after 6 tries")
    assert len(broken.bodies) == 6
    delivered = BudgetAlert.objects.get(pk=by_budget[good.pk])
    assert delivered.webhook_sent_at is not None and delivered.webhook_attempts == 1
    assert len(mailoutbox) == 2  # both emails went out


def test_backoff_grows_exponentially_and_is_capped():
    for tries, base in enumerate([30, 60, 120, 240, 480]):
        assert base <= retry_countdown(tries) <= base * 1.1
    assert 1800 <= retry_countdown(20) <= 1980


@pytest.mark.django_db
def test_deleted_budget_alert_is_not_delivered(world, mailoutbox):
    budget = make_budget(world.tenant, amount=Decimal("1"), thresholds=[100])
    add_spend(world.tenant, TODAY, "1")
    (alert_id,) = alerts_check(now=NOW)
    Budget.objects.filter(pk=budget.pk).delete()
    assert alert_deliver_once(alert_id) is True and mailoutbox == []
