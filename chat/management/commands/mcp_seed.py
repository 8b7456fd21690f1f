"""``manage.py mcp_seed``: create the MCP servers of COPILOT_MCP_SERVERS that do not exist yet."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chat.mcp.services import mcp_servers_seed


class Command(BaseCommand):
    help = "Create the MCP servers of COPILOT_MCP_SERVERS that do not exist yet (existing ones are left as they are)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = mcp_servers_seed()
        names = ", ".join(server.name for server in created) or "none"
        self.stdout.write(f"MCP servers created: {names}")
