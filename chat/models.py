from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

# The text of the row a stopped turn ends with (its kind is `stopped`).
STOPPED_TEXT = "Stopped"


class ModelChoice(models.TextChoices):
    """Which model answers: `standard` (COPILOT_MODEL) or `advanced` (COPILOT_ADVANCED_MODEL)."""

    STANDARD = "standard"
    ADVANCED = "advanced"


class ModeChoice(models.TextChoices):
    """How it answers: `fast` (no thinking) or `extended_thinking` (reasoning, where the model has it)."""

    FAST = "fast"
    EXTENDED_THINKING = "extended_thinking"


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
    # The transcript is a tree (each row names its parent, `ChatMessage.parent_sequence`);
    # this is the last row of the branch the user sees, the one the model is given and the
    # one new rows are appended under. None: no row yet.
    leaf_sequence = models.PositiveIntegerField(
        null=True, blank=True, help_text="The last message of the current branch (its sequence)."
    )
    # The composer's picker, remembered per chat: the last model and mode a message of this
    # chat asked for ("" until one did; the user's defaults from the account page apply).
    model = models.CharField(max_length=20, choices=ModelChoice.choices, blank=True, default="")
    mode = models.CharField(max_length=20, choices=ModeChoice.choices, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["user", "-updated_at"], name="chat_session_user_updated")]

    def __str__(self) -> str:
        return self.title or str(self.id)


class ChatMessage(models.Model):
    """One row of a conversation. Append-only: rows are never rewritten or deleted.

    The rows form a tree: `parent_sequence` is the row this one follows (None for a
    first row). Editing a message or regenerating an answer adds a sibling under the
    same parent, so every earlier version is kept; the session's `leaf_sequence` names
    the branch shown and sent to the model. The parent is referenced by its sequence
    (unique per session, known before the insert), so a batch of rows that follow one
    another is still one INSERT. A child always has a higher sequence than its parent.

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
    parent_sequence = models.PositiveIntegerField(
        null=True, blank=True, help_text="The sequence of the row this one follows; None for a first row."
    )
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
    # On assistant rows: the model and mode the turn ran with ("" on other rows and on rows
    # written before they were recorded).
    model = models.CharField(max_length=20, choices=ModelChoice.choices, blank=True, default="")
    mode = models.CharField(max_length=20, choices=ModeChoice.choices, blank=True, default="")
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
    `message_count` DB rows; rows after that watermark are added verbatim. With edited
    and regenerated messages the transcript is a tree: the snapshot stands only for the
    branch it was made on (`last_sequence` must be on the current branch).
    """

    session = models.OneToOneField(ChatSession, on_delete=models.CASCADE, related_name="context_snapshot")
    messages = models.JSONField(default=list)
    message_count = models.PositiveIntegerField(
        default=0, help_text="Watermark: the snapshot covers the branch's rows with a lower sequence."
    )
    last_sequence = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The last row the snapshot covers; it is used only while that row is on the current branch.",
    )
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


class SharedChat(models.Model):
    """A read-only public link to a snapshot of a chat, served at `/share/<token>`.

    The token is 256 random bits (`secrets.token_urlsafe(32)`), shown to the owner once,
    when the link is made; only its SHA-256 is stored (`token_hash`), so the database
    never holds a working link. `messages` is the snapshot: the chat's rows at that moment
    (the chat API's message fields), without tool calls and outputs when
    `hide_tool_internals`; later messages never reach it. Revoking deletes the row (the
    link then answers 404), and so does deleting the chat.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="shares")
    token_hash = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=200, blank=True, default="")
    messages = models.JSONField(default=list)
    hide_tool_internals = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["session", "-created_at"], name="shared_chat_session_created")]

    def __str__(self) -> str:
        return f"share of {self.session_id} ({self.created_at:%Y-%m-%d})"


class ToolApproval(models.Model):
    """A tool call that waits for the user's approval before it runs (human in the loop).

    The engine creates the row (status `pending`) before it streams the
    `tool-approval-request` chunk, then waits for the row to leave `pending`: the
    user's decision (`POST …/approvals/{id}` or the WebSocket `approval` frame),
    the deadline (`expired`) or a stop of the turn (`cancelled`). Every change is
    a conditional update from `pending`, so the first one wins and a second
    decision is refused (409). Only `approved` runs the tool; every other end is
    streamed as `tool-output-denied` and told to the model.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DENIED = "denied"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    class Reason(models.TextChoices):
        """Why the call needs approval (see `chat.tools.approval`)."""

        LISTED = "listed", "The tool is in COPILOT_TOOLS_REQUIRING_APPROVAL"
        TOOL_POLICY = "tool_policy", "The tool's own policy asks first"
        COST_OVER_THRESHOLD = "cost_over_threshold", "The tool costs more than the user's threshold"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="tool_approvals")
    turn_id = models.UUIDField()
    tool_call_id = models.CharField(max_length=100)
    tool_name = models.CharField(max_length=100)
    input = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    cost_cents = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decision_reason = models.TextField(blank=True, default="", help_text="The user's reason, on a denial.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["turn_id", "tool_call_id"], name="chat_tool_approval_call_unique"),
        ]
        indexes = [models.Index(fields=["session", "status"], name="chat_tool_approval_pending")]

    def __str__(self) -> str:
        return f"approval {self.id} of {self.tool_name} ({self.status})"

    @property
    def is_approved(self) -> bool:
        return self.status == self.Status.APPROVED


class ToolApprovalThreshold(models.Model):
    """The user's own rule: a priced tool whose run costs more than this many credit cents
    asks first. No row: no threshold (only the operator's list asks). 0: every priced tool asks."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tool_approval_threshold"
    )
    threshold_cents = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"approval threshold {self.threshold_cents}¢ for {self.user_id}"


class McpServer(models.Model):
    """An MCP server the operator connected (admin or ``COPILOT_MCP_SERVERS``); users never add one.

    ``transport`` is ``streamable-http`` (``url``) or ``stdio`` (``command``: a JSON list,
    program first, started on the worker's host). Credentials (extra HTTP headers and a
    bearer token) are kept only in ``secret_encrypted`` (Fernet, key derived from
    SECRET_KEY: `copilot_site.core.secret_box`) and are never shown again. An empty
    ``allowed_tiers`` lets every tier use the server. The ``last_*`` fields are the
    status the worker and the admin's "test connection" record.
    """

    class Transport(models.TextChoices):
        STREAMABLE_HTTP = "streamable-http", "Streamable HTTP"
        STDIO = "stdio", "stdio (a command on the worker's host)"

    name = models.CharField(
        max_length=32,
        unique=True,
        help_text="Short slug: lowercase letters, digits and single hyphens. Tools reach the model as <name>__<tool>.",
    )
    transport = models.CharField(max_length=20, choices=Transport.choices, default=Transport.STREAMABLE_HTTP)
    url = models.URLField(max_length=500, blank=True, default="", help_text="Streamable HTTP endpoint.")
    command = models.JSONField(
        default=list, blank=True, help_text='stdio: the command as a JSON list, e.g. ["npx", "server"].'
    )
    secret_encrypted = models.TextField(blank=True, default="", editable=False)
    enabled = models.BooleanField(default=True)
    timeout_s = models.FloatField(default=30.0, help_text="Seconds to wait for the server on one call.")
    allowed_tiers = models.JSONField(
        default=list, blank=True, help_text="Tiers whose users may use this server; empty: every tier."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_reachable = models.BooleanField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_tool_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name


class McpTool(models.Model):
    """One tool an MCP server listed; the operator's switches and price live here.

    ``name`` is the server's own name for it, ``exposed_name`` what the model sees
    (``<server>__<tool>`` sanitised). ``approval_policy`` ``always`` makes every call
    wait for the user's Approve / Deny (the tool's ``requires_approval``).
    ``is_listed`` is false when the server's latest list no longer has the tool.
    """

    class ApprovalPolicy(models.TextChoices):
        NEVER = "never", "Never ask"
        ALWAYS = "always", "Always ask the user"

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200)
    exposed_name = models.CharField(max_length=64)
    description = models.TextField(blank=True, default="")
    input_schema = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    cost_cents = models.PositiveIntegerField(default=0, help_text="Credits (cents) charged per successful run.")
    approval_policy = models.CharField(max_length=10, choices=ApprovalPolicy.choices, default=ApprovalPolicy.NEVER)
    is_listed = models.BooleanField(default=True)
    refused_reason = models.CharField(max_length=300, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "MCP tool"
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="chat_mcptool_server_name_unique")]
        ordering = ["server_id", "name"]

    def __str__(self) -> str:
        return self.exposed_name


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
