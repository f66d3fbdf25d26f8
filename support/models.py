"""The support app's one model: a holder for the platform-wide permission, without a table."""

from django.db import models


class SupportAccess(models.Model):  # noqa: DJ008 -- never has rows, so nothing to show
    """Holds platform-wide permissions only (no table): ``support.view_all_tenants`` is what
    makes a Django staff user support staff (tenants/access.py). It used to be
    ``billing.view_all_tenants`` (``billing.BillingAccess``): migration support/0002 moved the
    permission row itself, so the users and groups that held it keep it."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_all_tenants", "Can read every tenant's usage, costs and settings")]
