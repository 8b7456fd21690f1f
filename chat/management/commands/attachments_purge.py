"""`manage.py attachments_purge`: remove the files deleted more than COPILOT_ATTACHMENT_PURGE_AFTER_DAYS ago.

Deletes already enqueue the purge (and a worker's start does); this is for a cron job or
an operator who wants it now.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chat.services.attachments import attachments_purge_deleted


class Command(BaseCommand):
    help = "Remove the rows and bytes of files deleted more than COPILOT_ATTACHMENT_PURGE_AFTER_DAYS ago."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        while True:
            went = attachments_purge_deleted(batch_size=500)
            total += went
            if went < 500:
                break
        self.stdout.write(f"Purged {total} deleted file(s).")
