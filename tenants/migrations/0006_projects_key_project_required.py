# Every key has a project now (0005 gave the existing ones their tenant's default project).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0005_projects_projects"),
    ]

    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="api_keys", to="tenants.project"
            ),
        ),
    ]
