"""The storage contract both attachment backends pass: the local folder (the default) and an
S3-compatible bucket through django-storages (moto's S3 server on loopback)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from chat.files.storage import attachments_storage
from chat.models import Attachment
from chat.services.attachments import attachment_create, attachment_purge
from tests.chat.files.conftest import files_on_disk

pytestmark = pytest.mark.django_db(transaction=True)


def _filesystem(request: pytest.FixtureRequest) -> Callable[[str], bool]:
    root = request.getfixturevalue("clean_attachments_root")
    return lambda key: (Path(root) / key).is_file()


def _s3(request: pytest.FixtureRequest) -> Callable[[str], bool]:
    bucket = request.getfixturevalue("s3_storage_settings")
    return lambda key: any(obj.key == f"attachments/{key}" for obj in bucket.objects.all())


@pytest.fixture(params=["filesystem", "s3"])
def backend(request: pytest.FixtureRequest) -> Callable[[str], bool]:
    """Switches the attachments storage to one backend; returns "is this key stored there?"."""
    return _filesystem(request) if request.param == "filesystem" else _s3(request)


def test_save_read_size_delete(backend: Callable[[str], bool]) -> None:
    storage = attachments_storage()
    data = b"hello \xe2\x9c\x93 storage\n" * 100
    key = storage.save("7/contract-object", ContentFile(data))
    assert key == "7/contract-object"
    assert backend(key)
    assert storage.exists(key)
    assert storage.size(key) == len(data)
    with storage.open(key, "rb") as handle:
        assert handle.read() == data
    storage.delete(key)
    assert not backend(key)
    assert not storage.exists(key)


def test_upload_is_stored_and_purge_removes_the_bytes(backend: Callable[[str], bool], alice: Any) -> None:
    data = b"name,amount\nalice,3\nbob,4\n"
    attachment = attachment_create(owner=alice, name="totals.csv", stream=io.BytesIO(data))
    assert (attachment.mime_type, attachment.size_bytes) == ("text/csv", len(data))
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    assert attachment.storage_key == f"{alice.pk}/{attachment.pk}"
    assert backend(attachment.storage_key)
    with attachments_storage().open(attachment.storage_key, "rb") as handle:
        assert handle.read() == data
    attachment_purge(attachment=attachment)
    assert not Attachment.objects.filter(pk=attachment.pk).exists()
    assert not backend(attachment.storage_key)


def test_a_deleted_user_takes_their_bytes_along(backend: Callable[[str], bool], alice: Any) -> None:
    attachment = attachment_create(owner=alice, name="notes.txt", stream=io.BytesIO(b"remember the milk"))
    assert backend(attachment.storage_key)
    alice.delete()
    assert not Attachment.objects.exists()
    assert not backend(attachment.storage_key)


def test_the_default_folder_is_outside_static(settings: Any) -> None:
    root = Path(settings.COPILOT_ATTACHMENTS_ROOT).resolve()
    for static_dir in [*settings.STATICFILES_DIRS, settings.STATIC_ROOT]:
        assert not root.is_relative_to(Path(static_dir).resolve())
    assert files_on_disk() == [] or all(p.is_relative_to(root) for p in files_on_disk())
