"""Budget alerts carry when their delivery is due (None once done), so the budget check can queue
again a delivery the broker never took. Alerts made before this migration count as done: an
upgrade does not send old alerts again."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0015_scopes_end_users'),
        ('tenants', '0008_apikey_project_restrict'),
    ]

    operations = [
        migrations.AddField(
            model_name='budgetalert',
            name='delivery_due_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='budgetalert',
            index=models.Index(condition=models.Q(('delivery_due_at__isnull', False)), fields=['delivery_due_at'], name='alert_delivery_due'),
        ),
    ]
