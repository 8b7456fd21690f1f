from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

# The text of the row a stopped turn ends with (its kind is `stopped`).
STOPPED_TEXT = "Stopped"


class ChatSession(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    title = models.CharField(max_length=200, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Sums over the session's TurnUsage rows, kept here so lists need no aggregate.
    total_prompt_tokens = models.BigIntegerField(default=0)
    total_completion_tokens = models.BigIntegerField(default=0)
    total_cache_read_tokens = models.BigIntegerField(default=0)
    total_cache_creation_tokens = models.BigIntegerField(default=0)
    total_cost_microdollars = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["user", "-updated_at"], name="chat_session_user_updated")]

    def __str__(self) -> str:
        return self.title or str(self.id)


class ChatMessage(models.Model):
    """One row of a conversation. Append-only: rows are never rewritten or deleted.

    `role` is an open string (user, assistant, tool, system, reasoning, …), so a
    new role needs no migration; `reasoning` rows are shown in the UI and never
    sent to the model.
    """

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"
        SYSTEM = "system"
        REASONING = "reasoning"

    class Kind(models.TextChoices):
        """What an assistant row is: the model's message, or a notice the platform wrote
        (the turn was stopped; the turn failed). Notices are shown, never sent to the model."""

        MESSAGE = "message"
        STOPPED = "stopped"
        ERROR_NOTICE = "error_notice"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    sequence = models.PositiveIntegerField(help_text="0-based position in the session; unique per session.")
    role = models.CharField(max_length=20)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MESSAGE)
    content = models.TextField(null=True, blank=True)
    name = models.CharField(max_length=100, blank=True, default="")
    tool_call_id = models.CharField(max_length=100, blank=True, default="")
    tool_calls = models.JSONField(default=list, blank=True)
    refusal = models.TextField(null=True, blank=True)
    client_message_id = models.CharField(max_length=100, null=True, blank=True)
    turn_id = models.UUIDField(null=True, blank=True, help_text="The turn that wrote this row.")
    file_ids = models.JSONField(
        default=list, blank=True, help_text="User rows: the ids of the attachments the message carried, in order."
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the index for "messages of a session by sequence".
            models.UniqueConstraint(fields=["session", "sequence"], name="chat_message_session_sequence_unique"),
            models.UniqueConstraint(
                fields=["session", "client_message_id"],
                condition=models.Q(client_message_id__isnull=False),
                name="chat_message_client_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.sequence} {self.role}"

    @property
    def is_system_notice(self) -> bool:
        return self.kind != self.Kind.MESSAGE


class TurnUsage(models.Model):
    """The durable record of one turn: who, which model, tokens, cost, outcome.

    Created when the turn starts (outcome `running`) and completed by the
    engine's final step.
    """

    class CostSource(models.TextChoices):
        REPORTED = "reported", "Reported by the provider"
        ESTIMATED = "estimated", "Estimated from the price table"
        MISSING = "missing", "Unknown"

    class Outcome(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    turn_id = models.UUIDField(unique=True, default=uuid.uuid4)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="turns")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="turns")
    model = models.CharField(max_length=200, blank=True, default="")
    provider = models.CharField(max_length=50, blank=True, default="")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0, help_text="prompt + completion; cache tokens excluded.")
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_creation_tokens = models.BigIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False, help_text="The provider reported no usage; tiktoken counted.")
    cost_microdollars = models.BigIntegerField(null=True, blank=True)
    cost_source = models.CharField(max_length=16, choices=CostSource.choices, default=CostSource.MISSING)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["session", "-started_at"], name="turn_session_started"),
            models.Index(fields=["user", "-started_at"], name="turn_user_started"),
        ]

    def __str__(self) -> str:
        return f"turn {self.turn_id} ({self.outcome})"


class ContextSnapshot(models.Model):
    """The compacted LLM context of a session (one per session).

    `messages` are LLM-format dicts (`role`, `content`, `tool_calls?`,
    `tool_call_id?`, `is_compact_summary?`) standing in for the session's first
    `message_count` DB rows; rows after that watermark are added verbatim.
    """

    session = models.OneToOneField(ChatSession, on_delete=models.CASCADE, related_name="context_snapshot")
    messages = models.JSONField(default=list)
    message_count = models.PositiveIntegerField(default=0, help_text="Number of DB messages the snapshot covers.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"snapshot of {self.session_id} ({self.message_count} messages)"


class Memory(models.Model):
    """Something a user asked the copilot to remember (the remember/recall/forget tools)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="copilot_memories")
    content = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="memory_user_created")]
        verbose_name_plural = "memories"

    def __str__(self) -> str:
        return self.content[:60]


class Attachment(models.Model):
    """A file a user uploaded, to attach to messages and for the model to read.

    ``mime_type`` is sniffed from the bytes (``chat.files.sniff``), never taken from the
    client. The bytes live in the attachments storage under ``storage_key``
    (``chat.files.storage``). A user's delete sets ``deleted_at`` (the file disappears from
    the API, from new messages and from the model's tool at once); the row and its bytes are
    removed for good later (``chat.services.attachments.attachment_purge``), and the bytes of
    any row deleted for good, a cascade included, are removed from the storage.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_attachments")
    name = models.CharField(max_length=255)
    mime_type = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=255, help_text="Where the bytes are in the attachments storage.")
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Set when the owner deleted it.")

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="attachment_owner_created")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None
