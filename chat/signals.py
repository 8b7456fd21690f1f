"""Signals chat's lower layers send for the layers above them to act on.

The services save rows; what follows a save that belongs to a higher layer (a Celery
task) listens here instead of being imported by the service, so the import arrows
keep pointing down.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent once the transaction that saved an untitled session's first user message has
# committed; `session_id` (str). `chat.tasks` enqueues the title task on it.
session_first_message_saved = Signal()

# Sent once the transaction of a user's file delete has committed. `chat.tasks` then
# enqueues `chat.attachments_purge`, which removes the files deleted more than
# COPILOT_ATTACHMENT_PURGE_AFTER_DAYS ago (so the purge needs no scheduler; a worker's
# start and `manage.py attachments_purge` run it too).
attachment_deleted = Signal()
