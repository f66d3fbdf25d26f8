"""The ledger records the /v1 door each request came through (``UsageLog.api``: chat, messages,
responses or embeddings). Rows written before it were all Chat Completions or embeddings
requests; they read as ``chat``, the default."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0011_billingaccess_moves_to_support'),
    ]

    operations = [
        migrations.AddField(
            model_name='usagelog',
            name='api',
            field=models.CharField(choices=[('chat', 'Chat Completions'), ('messages', 'Anthropic Messages'), ('responses', 'OpenAI Responses'), ('embeddings', 'Embeddings')], db_default='chat', default='chat', max_length=10),
        ),
    ]
