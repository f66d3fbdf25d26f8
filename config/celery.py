"""The Celery app. Tasks live in each app's ``tasks.py``; schedules live in the database
(django-celery-beat), so exactly one ``celery beat`` process runs them."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tollgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
