from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        # The tasks module listens to the services' signals (the title task); import it
        # in every process, web and worker alike.
        from chat import tasks  # noqa: F401
