# Projects (issue #16): every tenant gets a "default" project and every existing key joins it;
# 0006 then makes a key's project required.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def default_projects(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    Project = apps.get_model("tenants", "Project")
    ApiKey = apps.get_model("tenants", "ApiKey")
    for tenant_id in Tenant.objects.order_by("pk").values_list("pk", flat=True).iterator():
        project, _ = Project.objects.get_or_create(
            tenant_id=tenant_id, slug="default", defaults={"name": "Default"}
        )
        ApiKey.objects.filter(tenant_id=tenant_id, project__isnull=True).update(project=project)


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0004_seed_default_embedding_model'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Project',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('slug', models.SlugField()),
                ('name', models.CharField(max_length=200)),
                ('default_model', models.CharField(blank=True, default='', max_length=255)),
                ('requests_per_minute', models.PositiveIntegerField(blank=True, null=True)),
                ('tokens_per_day', models.PositiveBigIntegerField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='projects', to='tenants.tenant')),
            ],
            options={
                'ordering': ['tenant_id', 'slug'],
            },
        ),
        migrations.AddField(
            model_name='apikey',
            name='project',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='api_keys', to='tenants.project'),
        ),
        migrations.CreateModel(
            name='ProjectMembership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('admin', 'Admin'), ('viewer', 'Viewer')], default='viewer', max_length=10)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='tenants.project')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='project_memberships', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['project_id', 'user_id'],
            },
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.UniqueConstraint(fields=('tenant', 'slug'), name='project_unique_slug'),
        ),
        migrations.AddConstraint(
            model_name='projectmembership',
            constraint=models.UniqueConstraint(fields=('project', 'user'), name='projectmembership_unique_user'),
        ),
        migrations.RunPython(default_projects, migrations.RunPython.noop),
    ]
