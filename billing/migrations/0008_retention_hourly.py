"""Ledger retention runs hourly (bounded batches each time) instead of nightly."""

from django.db import migrations


def hourly(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_hour, _ = CrontabSchedule.objects.get_or_create(
        minute="17", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.filter(task="billing.usage_retention").update(crontab=every_hour)


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_retention_schedule")]
    operations = [migrations.RunPython(hourly, migrations.RunPython.noop)]
