"""The support app's configuration: after every ``migrate``, the support group is brought up
to date (support/groups.py)."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SupportConfig(AppConfig):
    name = "support"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from support.groups import support_group_ensure

        # Listed last in INSTALLED_APPS, so by the time this app's post_migrate is sent every
        # app's permissions exist (auth's create_permissions runs first for each app).
        post_migrate.connect(support_group_ensure, sender=self)
