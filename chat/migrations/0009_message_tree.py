"""The transcript as a tree: each message names its parent, each session its current leaf.

Edited messages and regenerated answers are new rows under the same parent as the
version they replace, so earlier versions are kept. Rows written before this
migration form one branch: each row's parent is the row before it (by sequence),
and the session's leaf is its last row. The backfill goes one session at a time
and is re-runnable (it only fills rows whose parent is still empty).
"""

from typing import Any

from django.db import migrations, models

BATCH = 500


def link_rows_linearly(apps: Any, schema_editor: Any) -> None:
    ChatSession = apps.get_model("chat", "ChatSession")
    ChatMessage = apps.get_model("chat", "ChatMessage")
    for session_id in ChatSession.objects.values_list("pk", flat=True).iterator():
        rows = list(ChatMessage.objects.filter(session_id=session_id).order_by("sequence").only("pk", "sequence"))
        if not rows:
            continue
        changed = []
        for previous, row in zip([None, *rows[:-1]], rows, strict=True):
            parent = previous.sequence if previous is not None else None
            if row.parent_sequence != parent:
                row.parent_sequence = parent
                changed.append(row)
        ChatMessage.objects.bulk_update(changed, ["parent_sequence"], batch_size=BATCH)
        ChatSession.objects.filter(pk=session_id, leaf_sequence__isnull=True).update(leaf_sequence=rows[-1].sequence)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_attachments"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatmessage",
            name="parent_sequence",
            field=models.PositiveIntegerField(
                blank=True, help_text="The sequence of the row this one follows; None for a first row.", null=True
            ),
        ),
        migrations.AddField(
            model_name="chatsession",
            name="leaf_sequence",
            field=models.PositiveIntegerField(
                blank=True, help_text="The last message of the current branch (its sequence).", null=True
            ),
        ),
        migrations.AddField(
            model_name="contextsnapshot",
            name="last_sequence",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="The last row the snapshot covers; it is used only while that row is on the current branch.",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="contextsnapshot",
            name="message_count",
            field=models.PositiveIntegerField(
                default=0, help_text="Watermark: the snapshot covers the branch's rows with a lower sequence."
            ),
        ),
        migrations.RunPython(link_rows_linearly, migrations.RunPython.noop),
    ]
