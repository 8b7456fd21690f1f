"""read_workspace_file: the model reads a file the user uploaded, by its ``file_id``.

Text files (text, Markdown, CSV, JSON, source code) are decoded with the charset detected
from their bytes; a PDF gives its text page by page after ``--- Page N of M ---`` markers;
an image is described (name, type, size) with a note that images attached to a message are
given to models that take images as images. ``offset``/``limit`` pick characters of the
text; a piece never exceeds the tool output cap (COPILOT_TOOL_OUTPUT_MAX_CHARS, less room
for its header), and when more follows the output says which ``offset`` reads on. Another
user's id, a deleted file or content that cannot be read is a failed output with a plain
reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.conf import settings

from chat.errors import AttachmentNotFound
from chat.files.extract import UnreadableFile, image_size, readable_text
from chat.files.sniff import is_image
from chat.models import Attachment
from chat.selectors import attachment_get_for_user
from chat.services.attachments import attachment_read
from chat.tools.base import Tool, ToolContext, ToolError, ToolOutput
from chat.tools.registry import register
from copilot_site.core.sql import connection_released

# Room the header and the "read on" note take beside the text, within the output cap.
FRAME_CHARS = 600


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1024:.1f} KB"


def _image_note(attachment: Attachment, data: bytes) -> str:
    dimensions = image_size(data)
    shape = f", {dimensions[0]}×{dimensions[1]} px" if dimensions else ""
    return (
        f"{attachment.name} is an image ({attachment.mime_type}{shape}, {_size(attachment.size_bytes)}). "
        "Images attached to a message are given to you as images with that message when this model "
        "takes images; look at it there. It has no text to read here."
    )


def _read(user: Any, file_id: str, offset: int, limit: int | None) -> str:
    try:
        attachment = attachment_get_for_user(attachment_id=file_id, user=user)
    except AttachmentNotFound as exc:
        raise ToolError(f"No file with id {file_id} among the user's files (it may have been deleted).") from exc
    try:
        data = attachment_read(attachment)
    except OSError as exc:
        raise ToolError(f"The file {attachment.name} could not be read from storage.") from exc
    if is_image(attachment.mime_type):
        return _image_note(attachment, data)
    try:
        text = readable_text(data, attachment.mime_type)
    except UnreadableFile as exc:
        raise ToolError(f"{attachment.name}: {exc}") from exc
    total = len(text)
    room = max(1, int(settings.COPILOT_TOOL_OUTPUT_MAX_CHARS) - FRAME_CHARS)
    take = min(limit, room) if limit is not None else room
    start = min(offset, total)
    end = min(total, start + take)
    header = (
        f"File {attachment.name} ({attachment.mime_type}, {_size(attachment.size_bytes)}), "
        f"characters {start}–{end} of {total}:\n\n"
    )
    note = ""
    if end < total:
        note = (
            f"\n\n[Truncated: showing characters {start}–{end} of {total}. "
            f"Call read_workspace_file with offset={end} to read on.]"
        )
    elif start >= total and total > 0:
        note = f"[offset {offset} is past the end of the file ({total} characters).]"
    return header + text[start:end] + note


@register
class ReadWorkspaceFile(Tool):
    name = "read_workspace_file"
    description = (
        "Read a file the user uploaded, by the file_id from an [Attached files] note: text, Markdown, CSV, "
        "JSON and code as text, PDFs as text per page. Use offset to continue a long file."
    )
    requires_auth = True
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "file_id": {"type": "string", "minLength": 1, "maxLength": 100},
            "offset": {"type": "integer", "minimum": 0, "default": 0, "description": "First character to read."},
            "limit": {"type": "integer", "minimum": 1, "description": "How many characters to read."},
        },
        "required": ["file_id"],
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        if ctx.user is None:
            raise ToolError("Authentication required")
        limit = arguments.get("limit")
        return await sync_to_async(connection_released(_read))(
            ctx.user, str(arguments["file_id"]), int(arguments.get("offset", 0)), int(limit) if limit else None
        )
