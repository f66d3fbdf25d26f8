# Ledger rows carry their key's project (issue #16 projects).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0013_journals_sweep_schedule'),
        ('providers', '0009_bedrock_type'),
        ('tenants', '0006_projects_key_project_required'),
    ]

    operations = [
        migrations.AddField(
            model_name='usagelog',
            name='project_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='usagelog',
            index=models.Index(condition=models.Q(('project_id__isnull', False)), fields=['tenant', 'project_id', '-created_at'], name='usage_tenant_project'),
        ),
    ]
