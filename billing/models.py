from django.db import models


class BillingAccess(models.Model):
    """Holds platform-wide permissions only (no table): ``billing.view_all_tenants`` is what
    makes a Django staff user support staff."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_all_tenants", "Can read every tenant's usage, costs and settings")]
