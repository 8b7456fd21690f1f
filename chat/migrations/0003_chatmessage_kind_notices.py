"""ChatMessage.kind, and the old notice rows converted to it.

Before this field, a notice row was an assistant row whose content began with the
marker ``[__COPILOT_SYSTEM__]``: ``… Execution stopped by user`` for a stop,
``… Error: <text>`` for a failure. Those rows become kind ``stopped`` (content
``Stopped``) and kind ``error_notice`` (content: the error text alone).
"""

from typing import Any

from django.db import migrations, models

OLD_MARKER = "[__COPILOT_SYSTEM__]"
OLD_STOPPED = f"{OLD_MARKER} Execution stopped by user"
OLD_ERROR = f"{OLD_MARKER} Error: "


def notices_to_kind(apps: Any, schema_editor: Any) -> None:
    ChatMessage = apps.get_model("chat", "ChatMessage")
    rows = ChatMessage.objects.filter(role="assistant", content__startswith=OLD_MARKER)
    for row in rows.iterator():
        content = row.content or ""
        if content == OLD_STOPPED:
            row.kind, row.content = "stopped", "Stopped"
        elif content.startswith(OLD_ERROR):
            row.kind, row.content = "error_notice", content[len(OLD_ERROR) :]
        else:
            row.kind, row.content = "error_notice", content[len(OLD_MARKER) :].strip()
        row.save(update_fields=["kind", "content"])


def kind_to_notices(apps: Any, schema_editor: Any) -> None:
    ChatMessage = apps.get_model("chat", "ChatMessage")
    ChatMessage.objects.filter(kind="stopped").update(content=OLD_STOPPED)
    for row in ChatMessage.objects.filter(kind="error_notice").iterator():
        row.content = OLD_ERROR + (row.content or "")
        row.save(update_fields=["content"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0002_context_snapshot_and_memory"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatmessage",
            name="kind",
            field=models.CharField(
                choices=[("message", "Message"), ("stopped", "Stopped"), ("error_notice", "Error Notice")],
                default="message",
                max_length=20,
            ),
        ),
        migrations.RunPython(notices_to_kind, kind_to_notices),
    ]
