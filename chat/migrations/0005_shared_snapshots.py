"""The snapshots behind public share links (`chat.models.SharedChat`)."""

import django.db.models.deletion
import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0004_message_search_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='SharedChat',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('token_hash', models.CharField(max_length=64, unique=True)),
                ('title', models.CharField(blank=True, default='', max_length=200)),
                ('messages', models.JSONField(default=list)),
                ('hide_tool_internals', models.BooleanField(default=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('session', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='shares', to='chat.chatsession')),
            ],
            options={
                'indexes': [models.Index(fields=['session', '-created_at'], name='shared_chat_session_created')],
            },
        ),
    ]
