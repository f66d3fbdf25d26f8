"""The billing app's configuration: a change to a budget or a limit rule replaces its tenant's
configuration version (tenants/config_version.py), since they are part of the data plane's
routing table."""

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from billing.models import Budget, EndUserBlock, LimitRule
        from tenants.config_version import changed_on_save

        # Budgets, limit rules and end-user blocks are part of the data plane's routing table
        # (tenants/config_version.py).
        for signal in (post_save, post_delete):
            signal.connect(changed_on_save, sender=Budget, dispatch_uid=f"cfgv-budget-{signal}")
            signal.connect(changed_on_save, sender=LimitRule, dispatch_uid=f"cfgv-limitrule-{signal}")
            signal.connect(changed_on_save, sender=EndUserBlock, dispatch_uid=f"cfgv-enduserblock-{signal}")
