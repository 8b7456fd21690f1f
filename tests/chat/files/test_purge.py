"""Deleted files are purged without a scheduler: each delete (and a worker's start)
enqueues the purge, which removes what was deleted long enough ago; cron can run it too."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from chat import tasks
from chat.models import Attachment
from chat.services.attachments import attachment_create, attachment_delete
from tests.chat.files.conftest import files_on_disk

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_attachments_root")]


def test_a_delete_enqueues_the_purge_once_it_has_committed(alice: Any) -> None:
    kept = attachment_create(owner=alice, name="a.txt", stream=io.BytesIO(b"hello"))
    with mock.patch.object(tasks.attachments_purge, "delay") as delay:
        with transaction.atomic():
            attachment_delete(attachment_id=kept.pk, user=alice)
            assert delay.call_count == 0  # not before the commit
        assert delay.call_count == 1


def test_the_purge_command_removes_only_files_deleted_long_enough_ago(alice: Any, settings: Any) -> None:
    settings.COPILOT_ATTACHMENT_PURGE_AFTER_DAYS = 7
    old = attachment_create(owner=alice, name="old.txt", stream=io.BytesIO(b"old"))
    recent = attachment_create(owner=alice, name="recent.txt", stream=io.BytesIO(b"recent"))
    live = attachment_create(owner=alice, name="live.txt", stream=io.BytesIO(b"live"))
    Attachment.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=8))
    Attachment.objects.filter(pk=recent.pk).update(deleted_at=timezone.now() - timedelta(days=6))
    out = io.StringIO()
    call_command("attachments_purge", stdout=out)
    assert out.getvalue().strip() == "Purged 1 deleted file(s)."
    assert set(Attachment.objects.values_list("name", flat=True)) == {"recent.txt", "live.txt"}
    assert sorted(path.name for path in files_on_disk()) == sorted(Path(a.storage_key).name for a in (recent, live))
