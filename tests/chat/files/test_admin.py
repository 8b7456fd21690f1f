"""The attachments admin: per-user size totals, and every delete through the service."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.test import Client

from chat.models import Attachment
from chat.services.attachments import attachment_create, attachment_delete
from tests.chat.files.conftest import files_on_disk

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_attachments_root")]

CHANGELIST = "/admin/chat/attachment/"


def _store(user: Any, name: str, size: int) -> Attachment:
    return attachment_create(owner=user, name=name, stream=io.BytesIO(b"x" * size))


@pytest.fixture
def staff_client(staff: Any) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_files_per_user_with_size_totals(staff_client: Client, alice: Any, bob: Any) -> None:
    _store(alice, "a.txt", 2048)
    _store(alice, "b.txt", 1024)
    gone = _store(alice, "c.txt", 512)
    attachment_delete(attachment_id=gone.pk, user=alice)
    _store(bob, "d.txt", 100)
    page = staff_client.get(f"{CHANGELIST}per-user/")
    assert page.status_code == 200
    rows = [
        (r["totals"].username, r["totals"].files, r["stored"], r["totals"].deleted_files) for r in page.context["rows"]
    ]
    assert rows == [("alice", 2, "3.0 KB", 1), ("bob", 1, "0.1 KB", 0)]
    assert b"Files per user" in staff_client.get(CHANGELIST).content


def test_deletes_go_through_the_service(staff_client: Client, alice: Any) -> None:
    one, two, three = (_store(alice, f"{n}.txt", 10) for n in ("one", "two", "three"))
    response = staff_client.post(CHANGELIST, {"action": "mark_deleted", "_selected_action": [str(one.pk)]}, follow=True)
    assert response.status_code == 200
    one.refresh_from_db()
    assert one.deleted_at is not None
    assert len(files_on_disk()) == 3  # soft: the bytes stay until the purge
    staff_client.post(CHANGELIST, {"action": "purge", "_selected_action": [str(one.pk), str(two.pk)]})
    assert list(Attachment.objects.values_list("name", flat=True)) == ["three.txt"]
    assert [p.name for p in files_on_disk()] == [str(three.pk)]
    staff_client.post(f"{CHANGELIST}{three.pk}/delete/", {"post": "yes"})
    assert not Attachment.objects.exists()
    assert files_on_disk() == []
    assert (
        "delete_selected" not in staff_client.get(CHANGELIST).context["action_form"].fields["action"].choices.__str__()
    )
