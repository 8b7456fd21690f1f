"""An MCP ``tools/call`` result as a tool output (untrusted text and JSON, never instructions).

- one text part → that text; a text that is a JSON object or array → that JSON value;
- several parts, or any image → ``{"content": [...]}`` with text parts as text and
  images, audio and binary resources described by media type and size (the tool row,
  the page and the OpenAI-compatible route get the description only);
- images (PNG, JPEG, GIF, WebP up to ``MAX_IMAGE_BYTES``) also go to the model as image
  parts of the tool result on the Anthropic route, in the turn that produced them
  (`result_images`);
- no content → ``structuredContent`` when the server gave it, else an empty text.

Control characters other than newline and tab are removed: the output reaches the
page (rendered as text) and the model (as a tool result, data rather than a prompt).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from mcp import types

from chat.tools import ToolImage

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str) -> str:
    return _CONTROL.sub("", text)


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data)


def _part(block: types.ContentBlock) -> dict[str, Any]:
    if isinstance(block, types.TextContent):
        return {"type": "text", "text": clean_text(block.text)}
    if isinstance(block, types.ImageContent):
        return {"type": "image", "media_type": block.mimeType, "size_bytes": _size(block.data)}
    if isinstance(block, types.AudioContent):
        return {"type": "audio", "media_type": block.mimeType, "size_bytes": _size(block.data)}
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return {"type": "text", "text": clean_text(resource.text), "uri": str(resource.uri)}
        return {
            "type": "resource",
            "uri": str(resource.uri),
            "media_type": resource.mimeType,
            "size_bytes": _size(resource.blob),
        }
    if isinstance(block, types.ResourceLink):
        return {"type": "resource_link", "uri": str(block.uri), "name": clean_text(block.name)}
    return {"type": "unsupported"}


def _json_or_text(text: str) -> str | dict[str, Any] | list[Any]:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except ValueError:
            return text
        if isinstance(value, dict | list):
            return value
    return text


def result_output(result: types.CallToolResult) -> str | dict[str, Any] | list[Any]:
    """The output of a successful call (see the module docstring)."""
    parts = [_part(block) for block in result.content]
    if len(parts) == 1 and parts[0]["type"] == "text" and "uri" not in parts[0]:
        return _json_or_text(str(parts[0]["text"]))
    if parts:
        return {"content": parts}
    if result.structuredContent is not None:
        return dict(result.structuredContent)
    return ""


MAX_IMAGE_BYTES = 3_750_000  # Anthropic's limit is 5 MB of base64 per image
MAX_IMAGES = 8
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def result_images(result: types.CallToolResult) -> tuple[ToolImage, ...]:
    """The result's images a model may be shown (supported type, within the size cap)."""
    images = [
        ToolImage(media_type=block.mimeType, data=block.data)
        for block in result.content
        if isinstance(block, types.ImageContent)
        and block.mimeType in IMAGE_TYPES
        and _size(block.data) <= MAX_IMAGE_BYTES
    ]
    return tuple(images[:MAX_IMAGES])


def result_error_text(result: types.CallToolResult) -> str:
    """The plain reason of a result the server marked ``isError``."""
    texts = [clean_text(block.text) for block in result.content if isinstance(block, types.TextContent)]
    return " ".join(text.strip() for text in texts if text.strip()) or "the tool reported an error"
