"""SupportAccess, the holder of ``support.view_all_tenants`` (no table: managed=False). It takes
over from billing.BillingAccess (billing/0011); support/0002 moves the permission row."""

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='SupportAccess',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
            ],
            options={
                'permissions': [('view_all_tenants', "Can read every tenant's usage, costs and settings")],
                'managed': False,
                'default_permissions': (),
            },
        ),
    ]
