"""`/api/chat/files`: upload, list, metadata, content, delete; every refusal leaves no row and no bytes."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from chat.models import Attachment
from tests.chat.files.conftest import files_on_disk

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_attachments_root")]

URL = "/api/chat/files"


def png_bytes(size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client: APIClient, name: str, data: bytes, content_type: str = "application/octet-stream") -> Any:
    return client.post(URL, {"file": SimpleUploadedFile(name, data, content_type=content_type)}, format="multipart")


def assert_nothing_stored() -> None:
    assert Attachment.objects.count() == 0
    assert files_on_disk() == []


def test_upload_answers_the_sniffed_metadata(alice_client: APIClient, alice: Any) -> None:
    data = png_bytes()
    response = upload(alice_client, "photo.txt", data, content_type="text/plain")  # the client's type is ignored
    assert response.status_code == 201, response.content
    body = response.json()
    row = Attachment.objects.get()
    assert body == {
        "id": str(row.pk),
        "name": "photo.txt",
        "mime_type": "image/png",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "created_at": body["created_at"],
    }
    assert row.owner == alice
    assert [p.name for p in files_on_disk()] == [str(row.pk)]


@pytest.mark.parametrize(
    ("name", "data", "mime_type"),
    [
        ("notes.txt", b"plain words\n", "text/plain"),
        ("README.md", b"# Title\n\n- item\n", "text/markdown"),
        ("table.csv", b"a,b\n1,2\n", "text/csv"),
        ("data.json", b'{"a": [1, 2]}', "application/json"),
        ("broken.json", b'{"a": ', "text/plain"),
        ("main.py", b"print('hi')\n", "text/x-python"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, d\u00e9j\u00e0 vu".encode("latin-1"), "text/plain"),
        ("doc.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        ("pic.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),
        ("pic.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8 ", "image/webp"),
        ("pic.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    ],
)
def test_types_are_sniffed_from_the_content(alice_client: APIClient, name: str, data: bytes, mime_type: str) -> None:
    response = upload(alice_client, name, data)
    assert response.status_code == 201, response.content
    assert response.json()["mime_type"] == mime_type


def test_list_is_newest_first_and_paginated(alice_client: APIClient) -> None:
    ids = [upload(alice_client, f"f{i}.txt", f"file {i}".encode()).json()["id"] for i in range(3)]
    page = alice_client.get(URL, {"limit": 2}).json()
    assert page["total"] == 3
    assert (page["used_bytes"], page["quota_bytes"]) == (18, 200 * 1024 * 1024)
    assert [f["id"] for f in page["files"]] == [ids[2], ids[1]]
    rest = alice_client.get(URL, {"limit": 2, "offset": 2}).json()
    assert [f["id"] for f in rest["files"]] == [ids[0]]


def test_get_content_and_delete(alice_client: APIClient) -> None:
    data = b"id,name\n1,<script>alert(1)</script>\n"
    file_id = upload(alice_client, "../../etc/evil\x07 name.csv", data).json()["id"]
    meta = alice_client.get(f"{URL}/{file_id}")
    assert meta.status_code == 200
    assert meta.json()["name"] == "evil name.csv"
    content = alice_client.get(f"{URL}/{file_id}/content")
    assert content.status_code == 200
    assert b"".join(content.streaming_content) == data
    assert content["Content-Type"] == "text/csv"
    assert content["Content-Disposition"] == 'attachment; filename="evil name.csv"'
    assert content["X-Content-Type-Options"] == "nosniff"
    assert alice_client.get(f"{URL}/{file_id.upper()}").status_code == 200  # ids are case-insensitive
    assert alice_client.delete(f"{URL}/{file_id}").status_code == 204
    assert alice_client.get(f"{URL}/{file_id}").status_code == 404
    assert alice_client.get(f"{URL}/{file_id}/content").status_code == 404
    assert alice_client.delete(f"{URL}/{file_id}").status_code == 404
    assert alice_client.get(URL).json() == {"files": [], "total": 0, "used_bytes": 0, "quota_bytes": 209715200}
    assert Attachment.objects.get().deleted_at is not None  # soft: purged later


def test_another_users_file_is_not_found(alice_client: APIClient, charlie_client: APIClient) -> None:
    file_id = upload(alice_client, "secret.txt", b"alice only").json()["id"]
    for response in (
        charlie_client.get(f"{URL}/{file_id}"),
        charlie_client.get(f"{URL}/{file_id}/content"),
        charlie_client.delete(f"{URL}/{file_id}"),
        charlie_client.get(f"{URL}/not-a-uuid"),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": response.json()["detail"]}
    assert charlie_client.get(URL).json()["total"] == 0
    assert Attachment.objects.get().deleted_at is None


def test_too_large_is_413_and_stores_nothing(alice_client: APIClient, settings: Any) -> None:
    settings.COPILOT_MAX_UPLOAD_BYTES = 1000
    response = upload(alice_client, "big.txt", b"x" * 1001)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "This file is 0.0 MB; files can be at most 0.0 MB.",
        "code": "file_too_large",
        "max_bytes": 1000,
    }
    assert_nothing_stored()
    assert upload(alice_client, "fits.txt", b"x" * 1000).status_code == 201


def test_a_refused_type_is_415_and_stores_nothing(alice_client: APIClient) -> None:
    for name, data in [("app.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00"), ("zip.txt", b"PK\x03\x04\x00\x00\x00")]:
        response = upload(alice_client, name, data, content_type="text/plain")
        assert response.status_code == 415, response.content
        assert response.json()["code"] == "unsupported_type"
        assert response.json()["mime_type"] == "application/octet-stream"
        assert response.json()["detail"].startswith("This type of file is not supported.")
    assert_nothing_stored()


def test_the_quota_scales_with_the_tier(
    alice_client: APIClient, alice: Any, staff: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from ratelimits.services import user_tier_set

    settings.COPILOT_ATTACHMENT_QUOTA_BYTES = 100
    assert upload(alice_client, "a.txt", b"a" * 60).status_code == 201
    response = upload(alice_client, "b.txt", b"b" * 60)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "Your files would take 0.0 MB, over your plan's storage of 0.0 MB (0.0 MB used). "
        "Delete some files or upgrade your plan.",
        "code": "quota_exceeded",
        "quota_bytes": 100,
        "used_bytes": 60,
    }
    assert Attachment.objects.count() == 1
    assert len(files_on_disk()) == 1
    with django_capture_on_commit_callbacks(execute=True):
        user_tier_set(user=alice, tier="PRO", actor=staff, reason="test")
    assert upload(alice_client, "b.txt", b"b" * 60).status_code == 201  # PRO: ×5


def test_uploads_per_minute_are_capped(alice_client: APIClient, settings: Any) -> None:
    settings.COPILOT_UPLOADS_PER_MINUTE = 2
    assert upload(alice_client, "1.txt", b"one").status_code == 201
    assert upload(alice_client, "2.txt", b"two").status_code == 201
    response = upload(alice_client, "3.txt", b"three")
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_uploads"
    assert int(response["Retry-After"]) in range(1, 61)
    assert Attachment.objects.count() == 2
    assert len(files_on_disk()) == 2


def test_a_json_body_or_no_file_is_refused(alice_client: APIClient) -> None:
    assert alice_client.post(URL, {"file": "x"}, format="json").status_code == 415
    response = alice_client.post(URL, {}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"file": ["No file was submitted."]}
    assert_nothing_stored()


def test_a_queued_follow_up_keeps_its_files() -> None:
    from chat.turns.pending import PendingMessage

    file_id = "0b9f6f1e-3a57-4b8e-9a4e-8f6c1d2e3f40"
    message = PendingMessage(content="", file_ids=(file_id,), client_message_id="c1")
    again = PendingMessage.from_raw(message.to_json())
    assert again is not None
    assert (again.content, again.file_ids, again.client_message_id) == ("", (file_id,), "c1")
    assert PendingMessage.from_raw('{"content": "", "file_ids": []}') is None  # neither text nor files
    old = PendingMessage.from_raw('{"content": "queued before this release"}')
    assert old is not None
    assert old.file_ids == ()


def test_a_failed_write_leaves_no_bytes(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import DatabaseError

    from chat.services.attachments import attachment_create

    def broken_save(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(Attachment, "save", broken_save)
    with pytest.raises(DatabaseError):
        attachment_create(owner=alice, name="notes.txt", stream=io.BytesIO(b"lost"))
    assert_nothing_stored()
