"""The storage attachments' bytes live in, through Django's storage API.

``COPILOT_ATTACHMENTS_STORAGE`` is ``{"BACKEND": <dotted path>, "OPTIONS": {...}}`` (the shape
of a ``STORAGES`` entry); the settings build it from environment variables:

* default: ``django.core.files.storage.FileSystemStorage`` under ``COPILOT_ATTACHMENTS_ROOT``
  (``var/attachments``), outside ``static/``; no URL serves that folder, the bytes go out only
  through ``GET /api/chat/files/{id}/content`` after the owner check;
* ``COPILOT_ATTACHMENTS_S3_BUCKET`` set: ``storages.backends.s3.S3Storage`` (django-storages)
  on any S3-compatible service (endpoint, region, keys and prefix from the
  ``COPILOT_ATTACHMENTS_S3_*`` variables).

Keys are ``{owner_id}/{attachment_id}``: the client's file name never reaches a path.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.files.storage import Storage
from django.utils.module_loading import import_string


@functools.cache
def _build(backend: str, options: tuple[tuple[str, Any], ...]) -> Storage:
    storage_class = import_string(backend)
    storage: Storage = storage_class(**dict(options))
    return storage


def attachments_storage() -> Storage:
    """The configured storage (one instance per configuration and process)."""
    config: dict[str, Any] = settings.COPILOT_ATTACHMENTS_STORAGE
    options = tuple(sorted((str(k), v) for k, v in (config.get("OPTIONS") or {}).items()))
    return _build(str(config["BACKEND"]), options)


def storage_key(*, owner_id: object, attachment_id: object) -> str:
    return f"{owner_id}/{attachment_id}"
