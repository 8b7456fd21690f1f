from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _seed_mcp_servers(sender: Any, **kwargs: Any) -> None:
    """After every ``migrate``: create the COPILOT_MCP_SERVERS rows that do not exist yet."""
    from django.conf import settings

    if not settings.COPILOT_MCP_SERVERS:
        return
    from chat.mcp.services import mcp_servers_seed

    mcp_servers_seed()


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        # The tasks module listens to the services' signals (the title task); import it
        # in every process, web and worker alike.
        from chat import tasks  # noqa: F401

        post_migrate.connect(_seed_mcp_servers, sender=self, dispatch_uid="chat.seed_mcp_servers")
