"""BillingAccess leaves billing: the ``view_all_tenants`` permission it held now belongs to
``support.SupportAccess`` (support/migrations/0001 and 0002). The model never had a table
(managed=False), so only the migration state changes; the permission row, and every user and
group holding it, is moved by support/0002."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0010_usage_dead_letters_and_wider_sums'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='BillingAccess')],
            database_operations=[],
        ),
    ]
