from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from .models import (
    Attachment,
    ChatMessage,
    ChatSession,
    ContextSnapshot,
    Memory,
    SharedChat,
    ToolApproval,
    TurnUsage,
)
from .selectors import attachment_totals_per_owner
from .services.attachments import attachment_purge, attachments_mark_deleted


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


def _size(size_bytes: int | None) -> str:
    value = int(size_bytes or 0)
    if value < 1024 * 1024:
        return f"{value / 1024:.1f} KB"
    return f"{value / (1024 * 1024):.1f} MB"


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin[Attachment]):
    """Uploaded files. Read-only rows; every delete goes through the service: "Mark deleted"
    as the owner's delete, "Delete for good" (and the delete button) removes rows and bytes.
    `per-user/` lists each user's files with their size totals."""

    list_display = ("name", "owner", "mime_type", "size", "created_at", "deleted_at")
    list_select_related = ("owner",)
    list_filter = ("mime_type", ("deleted_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("=id", "name", "sha256", "owner__username", "owner__email")
    raw_id_fields = ("owner",)
    readonly_fields = (
        "id", "owner", "name", "mime_type", "size_bytes", "sha256", "storage_key", "created_at", "deleted_at",
    )  # fmt: skip
    actions = ["mark_deleted", "purge"]
    change_list_template = "admin/chat/attachment/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: Attachment) -> str:
        return _size(obj.size_bytes)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "Delete for good" is the one delete action
        return actions

    @admin.action(description="Mark deleted (as the owner's delete; purged later)", permissions=["delete"])
    def mark_deleted(self, request: HttpRequest, queryset: QuerySet[Attachment]) -> None:
        count = attachments_mark_deleted(attachments=list(queryset))
        self.message_user(request, f"{count} file(s) marked deleted.", messages.SUCCESS)

    @admin.action(description="Delete for good (rows and bytes)", permissions=["delete"])
    def purge(self, request: HttpRequest, queryset: QuerySet[Attachment]) -> None:
        rows = list(queryset)
        for row in rows:
            attachment_purge(attachment=row)
        self.message_user(request, f"{len(rows)} file(s) deleted for good.", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: Attachment) -> None:
        attachment_purge(attachment=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Attachment]) -> None:
        for row in list(queryset):
            attachment_purge(attachment=row)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [path("per-user/", wrap(self.per_user_view), name="chat_attachment_per_user"), *super().get_urls()]

    def per_user_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:chat_attachment_changelist")
        rows = [
            {
                "totals": totals,
                "stored": _size(totals.stored_bytes),
                "deleted": _size(totals.deleted_bytes),
                "url": f"{changelist}?owner__id__exact={totals.owner_id}",
            }
            for totals in attachment_totals_per_owner()
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Files per user",
            "opts": self.model._meta,
            "rows": rows,
        }
        return TemplateResponse(request, "admin/chat/attachment/per_user.html", context)
