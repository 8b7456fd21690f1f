from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        # The tasks module listens to the services' signals (the title task); import it
        # in every process, web and worker alike.
        from chat import tasks  # noqa: F401
        from chat.models import Attachment
        from chat.services.attachments import attachment_bytes_remove

        # A row deleted for good (the purge, an admin delete, a cascade from a deleted user)
        # takes its bytes in the attachments storage with it.
        post_delete.connect(attachment_bytes_remove, sender=Attachment, dispatch_uid="chat_attachment_bytes_remove")
