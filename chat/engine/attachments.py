"""Attachments in what the model sees: the ``[Attached files]`` note and image parts.

The model's copy of a user message that carried files (``ChatMessage.file_ids``) ends with

    [Attached files]
    - {name} ({mime}, {size_kb:.1f} KB), file_id={id}
    Use read_workspace_file with the file_id to access file contents.

(the stored row keeps only what the user wrote). Files deleted since are left out of the
note. While the context is built, such a message carries its images' ids under the internal
key ``image_file_ids`` (plain JSON, so compaction and the snapshot keep it); right before
each round ``attach_image_parts`` turns the key into image parts — OpenAI content parts
``{"type": "image_url", "image_url": {"url": "data:<mime>;base64,…"}}``, which the Anthropic
provider turns into ``image`` blocks — for a model that takes images
(``COPILOT_VISION_MODELS``), newest first and at most ``COPILOT_MAX_IMAGES_PER_REQUEST``
of them; other models keep the note only. Images larger than the provider accepts are
resized with Pillow (``image_for_model``).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any, Protocol, TypeVar

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from .providers.base import LLMMessage, is_anthropic_route

logger = logging.getLogger(__name__)

IMAGE_IDS_KEY = "image_file_ids"
ATTACHED_FILES_HEADER = "[Attached files]"
ATTACHED_FILES_FOOTER = "Use read_workspace_file with the file_id to access file contents."
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class AttachmentLike(Protocol):
    @property
    def pk(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def deleted_at(self) -> Any: ...


def attachments_block(attachments: Sequence[AttachmentLike]) -> str:
    """The ``[Attached files]`` note of these files ('' for none)."""
    if not attachments:
        return ""
    lines = [ATTACHED_FILES_HEADER]
    lines.extend(f"- {a.name} ({a.mime_type}, {a.size_bytes / 1024:.1f} KB), file_id={a.pk}" for a in attachments)
    lines.append(ATTACHED_FILES_FOOTER)
    return "\n".join(lines)


A = TypeVar("A", bound=AttachmentLike)


def carried(file_ids: object, found: Mapping[str, A]) -> list[A]:
    """The files a message carried that still exist and are not deleted, in its order."""
    ids = file_ids if isinstance(file_ids, list | tuple) else []
    out: list[A] = []
    for file_id in ids:
        attachment = found.get(str(file_id).lower())
        if attachment is not None and attachment.deleted_at is None:
            out.append(attachment)
    return out


def user_llm_message(text: str, attachments: Sequence[AttachmentLike]) -> LLMMessage:
    """A user message as the model gets it: the text, the note, and the images' ids (a marker)."""
    block = attachments_block(attachments)
    content = f"{text}\n\n{block}" if text and block else (text or block)
    message: LLMMessage = {"role": "user", "content": content}
    images = [str(a.pk) for a in attachments if a.mime_type in IMAGE_TYPES]
    if images:
        message[IMAGE_IDS_KEY] = images
    return message


def takes_images(model: str) -> bool:
    """Whether ``model`` matches one of ``COPILOT_VISION_MODELS`` (fnmatch patterns)."""
    patterns: list[str] = list(settings.COPILOT_VISION_MODELS or [])
    lowered = model.lower()
    return any(fnmatch(lowered, pattern.lower()) for pattern in patterns)


# ---------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageLimits:
    max_side: int  # longest edge, pixels
    max_bytes: int  # of the encoded image (before base64)


# Anthropic: images over 1568 px on the long edge are scaled down by the API anyway, and
# a base64 image may have 5 MB; OpenAI: high detail works on at most 2048 px, 20 MB a file.
ANTHROPIC_IMAGE_LIMITS = ImageLimits(max_side=1568, max_bytes=(5 * 1024 * 1024 * 3) // 4)
OPENAI_IMAGE_LIMITS = ImageLimits(max_side=2048, max_bytes=(20 * 1024 * 1024 * 3) // 4)


def image_limits(*, provider: str, model: str) -> ImageLimits:
    if provider == "anthropic" or is_anthropic_route(model):
        return ANTHROPIC_IMAGE_LIMITS
    return OPENAI_IMAGE_LIMITS


def image_for_model(data: bytes, mime_type: str, limits: ImageLimits) -> tuple[str, bytes]:
    """The image as it goes to the model: as stored when within ``limits``, else scaled down to
    ``limits.max_side`` (PNG when it has transparency, else JPEG) and re-encoded smaller until it
    fits ``limits.max_bytes``. Raises ``ValueError`` for bytes Pillow cannot read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max(width, height) <= limits.max_side and len(data) <= limits.max_bytes:
                return mime_type, data
            image.seek(0)
            alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
            frame = image.convert("RGBA" if alpha else "RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ValueError(f"unreadable image: {exc}") from exc
    side = limits.max_side
    quality = 85
    for _ in range(8):
        scaled = frame.copy()
        scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if alpha:
            scaled.save(out, format="PNG", optimize=True)
            kind = "image/png"
        else:
            scaled.save(out, format="JPEG", quality=quality, optimize=True)
            kind = "image/jpeg"
        encoded = out.getvalue()
        if len(encoded) <= limits.max_bytes:
            return kind, encoded
        side = int(side * 0.75)
        quality = max(60, quality - 10)
    raise ValueError("image could not be made small enough")


def image_part(mime_type: str, data: bytes) -> dict[str, Any]:
    url = f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def image_token_estimate() -> int:
    return int(settings.COPILOT_IMAGE_TOKEN_ESTIMATE)


def attach_image_parts(messages: list[LLMMessage], *, model: str, provider: str) -> list[LLMMessage]:
    """``messages`` with every ``image_file_ids`` marker resolved (see the module docstring).

    New dicts replace the marked messages (the inputs, which compaction may keep, stay as
    they are). An image that is deleted, missing or unreadable is skipped (logged); its
    note stays in the text.
    """
    marked = [index for index, message in enumerate(messages) if message.get(IMAGE_IDS_KEY)]
    if not marked:
        return messages
    out = list(messages)
    if not takes_images(model):
        for index in marked:
            out[index] = {k: v for k, v in messages[index].items() if k != IMAGE_IDS_KEY}
        return out
    from chat.files.storage import attachments_storage
    from chat.selectors import attachments_by_id

    limits = image_limits(provider=provider, model=model)
    all_ids = [str(i) for index in marked for i in messages[index][IMAGE_IDS_KEY]]
    found = attachments_by_id(file_ids=all_ids, include_deleted=False)
    remaining = int(settings.COPILOT_MAX_IMAGES_PER_REQUEST)
    for index in reversed(marked):  # the newest turn's images first
        message = messages[index]
        parts: list[dict[str, Any]] = []
        for file_id in message[IMAGE_IDS_KEY]:
            attachment = found.get(str(file_id))
            if attachment is None or remaining <= 0 or attachment.mime_type not in IMAGE_TYPES:
                continue
            try:
                with attachments_storage().open(attachment.storage_key, "rb") as handle:
                    data = handle.read()
                kind, sent = image_for_model(data, attachment.mime_type, limits)
            except Exception:
                logger.warning("Image %s could not be given to the model", file_id, exc_info=True)
                continue
            parts.append(image_part(kind, sent))
            remaining -= 1
        rest = {k: v for k, v in message.items() if k not in (IMAGE_IDS_KEY, "content")}
        text = message.get("content")
        if parts:
            text_parts = [{"type": "text", "text": text}] if isinstance(text, str) and text else []
            out[index] = {**rest, "content": [*text_parts, *parts]}
        else:
            out[index] = {**rest, "content": text}
    return out
