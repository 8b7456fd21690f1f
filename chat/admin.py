from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import ChatMessage, ChatSession, ContextSnapshot, Memory, SharedChat, ToolApproval, TurnUsage


class ChatMessageInline(admin.TabularInline[ChatMessage, ChatSession]):
    model = ChatMessage
    extra = 0
    fields = ("sequence", "role", "content", "tool_call_id", "created_at")
    readonly_fields = fields
    ordering = ("sequence",)
    can_delete = False
    show_change_link = True


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin[ChatSession]):
    list_display = ("id", "title", "user", "updated_at", "total_prompt_tokens", "total_completion_tokens")
    list_select_related = ("user",)
    search_fields = ("id", "title", "user__username", "user__email")
    raw_id_fields = ("user",)
    readonly_fields = (
        "created_at", "updated_at", "total_prompt_tokens", "total_completion_tokens",
        "total_cache_read_tokens", "total_cache_creation_tokens", "total_cost_microdollars",
    )  # fmt: skip
    inlines = [ChatMessageInline]


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin[ChatMessage]):
    list_display = ("session", "sequence", "role", "created_at")
    list_select_related = ("session",)
    list_filter = ("role",)
    raw_id_fields = ("session",)
    search_fields = ("content", "session__id")


@admin.register(TurnUsage)
class TurnUsageAdmin(admin.ModelAdmin[TurnUsage]):
    list_display = (
        "turn_id",
        "user",
        "model",
        "outcome",
        "total_tokens",
        "cost_microdollars",
        "cost_source",
        "started_at",
    )
    list_select_related = ("user",)
    list_filter = ("outcome", "cost_source", "provider")
    raw_id_fields = ("session", "user")
    search_fields = ("turn_id", "user__username", "model")


@admin.register(ContextSnapshot)
class ContextSnapshotAdmin(admin.ModelAdmin[ContextSnapshot]):
    list_display = ("session", "message_count", "updated_at")
    list_select_related = ("session",)
    raw_id_fields = ("session",)
    readonly_fields = ("message_count", "updated_at")
    search_fields = ("session__id",)


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin[Memory]):
    list_display = ("id", "user", "short_content", "created_at")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    search_fields = ("content", "user__username", "user__email")

    @admin.display(description="content")
    def short_content(self, obj: Memory) -> str:
        return obj.content[:80]


@admin.register(SharedChat)
class SharedChatAdmin(admin.ModelAdmin[SharedChat]):
    """Public share links: staff can see and delete one (which revokes it), never make one
    (only the owner sees a link's token, once)."""

    list_display = ("id", "title", "owner", "hide_tool_internals", "created_at")
    list_select_related = ("session__user",)
    list_filter = ("hide_tool_internals",)
    search_fields = ("id", "title", "session__id", "session__user__username")
    raw_id_fields = ("session",)
    readonly_fields = ("id", "session", "token_hash", "title", "messages", "hide_tool_internals", "created_at")

    @admin.display(description="owner")
    def owner(self, obj: SharedChat) -> str:
        return obj.session.user.get_username()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ToolApproval)
class ToolApprovalAdmin(admin.ModelAdmin[ToolApproval]):
    """Read-only: an approval changes only through the user's decision, its deadline or a stop."""

    list_display = ("id", "tool_name", "status", "reason", "cost_cents", "session", "created_at", "decided_at")
    list_select_related = ("session",)
    list_filter = ("status", "reason", "tool_name")
    search_fields = ("id", "tool_name", "tool_call_id", "session__id")
    raw_id_fields = ("session",)
    readonly_fields = (
        "id", "session", "turn_id", "tool_call_id", "tool_name", "input", "reason", "cost_cents", "status",
        "decision_reason", "created_at", "expires_at", "decided_at",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


from . import admin_mcp  # noqa: E402,F401  (the MCP servers' admin)
