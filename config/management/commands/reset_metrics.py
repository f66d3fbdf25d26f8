"""``manage.py reset_metrics``: empty PROMETHEUS_MULTIPROC_DIR once before a deployment's workers
start (the release step of the Procfile; ``make run`` does it too)."""

from django.core.management.base import BaseCommand

from config.metrics import reset_multiproc_dir


class Command(BaseCommand):
    help = "Empty PROMETHEUS_MULTIPROC_DIR. Run once before starting a deployment's workers."

    def handle(self, *args, **options):
        reset_multiproc_dir()
        self.stdout.write("metrics folder emptied")
