"""Attachment writes: an upload (checked, stored, recorded), a delete, a purge.

An upload is refused, in this order, with nothing stored and no row written:

1. larger than ``COPILOT_MAX_UPLOAD_BYTES`` → 413 ``file_too_large``;
2. more than ``COPILOT_UPLOADS_PER_MINUTE`` uploads this clock minute → 429
   ``too_many_uploads`` with ``Retry-After`` (a Redis counter per user and minute, like the
   other per-user caps; when Redis is down the upload goes through, logged);
3. its sniffed type (``chat.files.sniff``) not in ``COPILOT_UPLOAD_ALLOWED_TYPES`` → 415
   ``unsupported_type``;
4. the user's stored bytes (files not deleted) plus this one over their quota →
   413 ``quota_exceeded`` with ``quota_bytes`` and ``used_bytes``. The quota is
   ``COPILOT_ATTACHMENT_QUOTA_BYTES`` × the tier multiplier of the user's plan (FREE ×1,
   PRO ×5, BUSINESS ×20, ENTERPRISE ×60; 0 = none), checked again under the user's row
   lock in the transaction that records the file, so two concurrent uploads cannot both
   pass it.

The bytes are written to the storage before the row; when recording the row fails or is
refused, the bytes are deleted again. Bytes of a row deleted for good are deleted when the
deleting transaction commits (``attachment_bytes_remove``, connected to the model's
``post_delete`` so that a cascade from a deleted user removes them too).
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
import uuid
from datetime import timedelta
from fnmatch import fnmatch
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO, TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from chat.errors import TooManyUploads, UploadQuotaExceeded, UploadTooLarge, UploadTypeRefused
from chat.files.sniff import TEXT_SNIFF_BYTES, sniff
from chat.files.storage import attachments_storage, storage_key
from chat.models import Attachment
from chat.selectors import attachment_get_for_user, attachment_usage_bytes
from chat.signals import attachment_deleted
from chat.turns import scripts as rs

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

NAME_MAX_CHARS = 255
# What a multipart body may carry besides the file itself (boundaries, headers, the name):
# a declared body longer than the file limit by more than this is refused before parsing.
UPLOAD_FRAMING_BYTES = 64 * 1024
_CHUNK = 64 * 1024


def _mebibytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def upload_name_clean(name: object) -> str:
    """The file name to keep: the last path part, control characters dropped, at most 255
    characters (the extension kept), ``file`` when nothing is left."""
    text = str(name or "")
    text = PureWindowsPath(PurePosixPath(text).name).name
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip().strip(".")
    if len(text) > NAME_MAX_CHARS:
        stem, dot, suffix = text.rpartition(".")
        if dot and 0 < len(suffix) <= 16:
            text = stem[: NAME_MAX_CHARS - len(suffix) - 1] + "." + suffix
        else:
            text = text[:NAME_MAX_CHARS]
    return text or "file"


def upload_type_allowed(mime_type: str) -> bool:
    patterns: list[str] = list(settings.COPILOT_UPLOAD_ALLOWED_TYPES or [])
    return any(fnmatch(mime_type, pattern) for pattern in patterns)


def attachment_quota_bytes(*, user: User) -> int:
    """The user's storage quota in bytes (0: none): the FREE base × their tier's multiplier."""
    from ratelimits.user_caps import user_cap

    return user_cap(user, "COPILOT_ATTACHMENT_QUOTA_BYTES")


def _upload_window_hit(user_id: int) -> tuple[int, int]:
    """(uploads this minute including this one, seconds until the minute ends); fails open."""
    now = time.time()
    minute = int(now // 60)
    retry_after = max(1, 60 - int(now % 60))
    try:
        return rs.incr_with_ttl(f"copilot:uploads:{user_id}:{minute}", 61), retry_after
    except redis.RedisError:
        logger.warning("Redis unavailable for the upload rate check of user %s; failing open", user_id)
        return 0, retry_after


def _check_rate(user: User) -> None:
    limit = int(settings.COPILOT_UPLOADS_PER_MINUTE)
    if limit <= 0:
        return
    count, retry_after = _upload_window_hit(user.pk)
    if count > limit:
        raise TooManyUploads(
            f"Too many uploads: at most {limit} a minute. Try again in {retry_after} s.",
            extra={"code": TooManyUploads.code, "limit_per_minute": limit},
            headers={"Retry-After": str(retry_after)},
        )


def _too_large(size: int) -> UploadTooLarge:
    limit = int(settings.COPILOT_MAX_UPLOAD_BYTES)
    return UploadTooLarge(
        f"This file is {_mebibytes(size)}; files can be at most {_mebibytes(limit)}.",
        extra={"code": UploadTooLarge.code, "max_bytes": limit},
    )


def upload_size_check(size: int) -> None:
    """413 for a declared or measured size over ``COPILOT_MAX_UPLOAD_BYTES``."""
    if size > int(settings.COPILOT_MAX_UPLOAD_BYTES):
        raise _too_large(size)


def _quota_check(user: User, size: int) -> None:
    quota = attachment_quota_bytes(user=user)
    if quota <= 0:
        return
    used = attachment_usage_bytes(user_id=user.pk)
    if used + size > quota:
        raise UploadQuotaExceeded(
            f"Your files would take {_mebibytes(used + size)}, over your plan's storage of "
            f"{_mebibytes(quota)} ({_mebibytes(used)} used). Delete some files or upgrade your plan.",
            extra={"code": UploadQuotaExceeded.code, "quota_bytes": quota, "used_bytes": used},
        )


def _measure(stream: IO[bytes]) -> tuple[int, str, bytes]:
    """(size, sha256 hex, the first TEXT_SNIFF_BYTES) of the stream, read once from its start."""
    stream.seek(0)
    digest = hashlib.sha256()
    size = 0
    head = b""
    limit = int(settings.COPILOT_MAX_UPLOAD_BYTES)
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(size)
        digest.update(chunk)
        if len(head) < TEXT_SNIFF_BYTES:
            head += chunk[: TEXT_SNIFF_BYTES - len(head)]
    stream.seek(0)
    return size, digest.hexdigest(), head


def attachment_create(*, owner: User, name: str, stream: IO[bytes]) -> Attachment:
    """Check, store and record one upload (the module docstring has the order of the checks)."""
    upload_size_check(getattr(stream, "size", 0) or 0)
    _check_rate(owner)
    size, sha256, head = _measure(stream)
    clean_name = upload_name_clean(name)
    sniffed = sniff(name=clean_name, head=head, complete=size <= TEXT_SNIFF_BYTES)
    if not upload_type_allowed(sniffed.mime_type):
        raise UploadTypeRefused(
            "This type of file is not supported. Upload text, Markdown, CSV, JSON, source code, PDF, "
            "PNG, JPEG, WebP or GIF files.",
            extra={"code": UploadTypeRefused.code, "mime_type": sniffed.mime_type},
        )
    _quota_check(owner, size)
    attachment_id = uuid.uuid4()
    storage = attachments_storage()
    key = storage.save(storage_key(owner_id=owner.pk, attachment_id=attachment_id), File(stream))
    try:
        with transaction.atomic():
            # One upload of a user at a time past this point (the user row's lock).
            get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
            _quota_check(owner, size)
            attachment = Attachment(
                id=attachment_id,
                owner=owner,
                name=clean_name,
                mime_type=sniffed.mime_type,
                size_bytes=size,
                sha256=sha256,
                storage_key=key,
            )
            attachment.full_clean()
            attachment.save(force_insert=True)
    except BaseException:
        _bytes_delete(key)
        raise
    logger.info("Attachment %s stored for user %s (%s, %d bytes)", attachment.pk, owner.pk, attachment.mime_type, size)
    return attachment


def attachment_open(attachment: Attachment) -> IO[bytes]:
    """The stored bytes of an attachment, as a binary file the caller closes."""
    handle: IO[bytes] = attachments_storage().open(attachment.storage_key, "rb")
    return handle


def attachment_read(attachment: Attachment) -> bytes:
    with attachment_open(attachment) as handle:
        return handle.read()


def attachment_delete(*, attachment_id: object, user: User) -> Attachment:
    """The owner's delete: the file is gone from the API, new messages and the model's tool at
    once (``deleted_at``); its row and bytes are purged later (``attachments_purge_deleted``)."""
    attachment = attachment_get_for_user(attachment_id=attachment_id, user=user)
    Attachment.objects.filter(pk=attachment.pk, deleted_at__isnull=True).update(deleted_at=timezone.now())
    attachment.refresh_from_db()
    transaction.on_commit(lambda: attachment_deleted.send(sender=Attachment), robust=True)
    return attachment


def attachments_mark_deleted(*, attachments: list[Attachment]) -> int:
    """Staff's delete as the owner's would be (``deleted_at`` now); how many were not deleted yet."""
    ids = [a.pk for a in attachments]
    return Attachment.objects.filter(pk__in=ids, deleted_at__isnull=True).update(deleted_at=timezone.now())


def attachment_purge(*, attachment: Attachment) -> None:
    """Delete the row for good; its bytes go once the transaction commits."""
    with transaction.atomic():
        attachment.delete()


def attachments_purge_deleted(*, older_than_days: int | None = None, batch_size: int = 500) -> int:
    """Purge up to ``batch_size`` files deleted more than ``COPILOT_ATTACHMENT_PURGE_AFTER_DAYS``
    days ago; how many went."""
    days = int(settings.COPILOT_ATTACHMENT_PURGE_AFTER_DAYS if older_than_days is None else older_than_days)
    cutoff = timezone.now() - timedelta(days=days)
    rows = list(Attachment.objects.filter(deleted_at__lt=cutoff).order_by("deleted_at")[:batch_size])
    for row in rows:
        attachment_purge(attachment=row)
    return len(rows)


def _bytes_delete(key: str) -> None:
    try:
        attachments_storage().delete(key)
    except Exception:
        logger.exception("Could not delete attachment bytes %s from the storage", key)


def attachment_bytes_remove(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """``post_delete`` of ``Attachment``: the row is gone for good, so are its bytes (after commit)."""
    key = instance.storage_key
    if key:
        transaction.on_commit(lambda: _bytes_delete(key), robust=True)
