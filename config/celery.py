"""The Celery app. Tasks live in each app's ``tasks.py``; schedules live in the database
(django-celery-beat), so exactly one ``celery beat`` process runs them."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tollgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_success.connect
def _task_succeeded(sender=None, **kwargs):
    _count(sender, "success")


@signals.task_failure.connect
def _task_failed(sender=None, **kwargs):
    _count(sender, "failure")


@signals.task_retry.connect
def _task_retried(sender=None, **kwargs):
    _count(sender, "retry")


@signals.worker_process_shutdown.connect
def _worker_process_gone(pid=None, **kwargs):
    from config.metrics import mark_process_dead

    mark_process_dead(pid)


def _count(task, outcome: str) -> None:
    from config.metrics import celery_tasks

    celery_tasks.labels(getattr(task, "name", "unknown"), outcome).inc()
