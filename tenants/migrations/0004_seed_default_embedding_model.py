from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0003_redis_outage'),
    ]

    operations = [
        migrations.AddField(
            model_name='tenant',
            name='default_embedding_model',
            field=models.CharField(blank=True, default='', max_length=255),
        ),
    ]
