"""Reads of the MCP integration: which servers and tools a user's turn may offer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from billing.selectors import tier_get_for_user
from chat.models import McpServer, McpTool
from copilot_site.core.caching import cache_get, is_missing

from .config import SecretUnreadable, ServerConfig, server_config
from .services import ListedTool, tools_cache_key

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolRow:
    name: str
    exposed_name: str
    cost_cents: int
    approval_policy: str


@dataclass
class CatalogServer:
    config: ServerConfig
    tools: dict[str, ToolRow] = field(default_factory=dict)  # by the server's own tool name
    listed: list[ListedTool] | None = None  # the cached tools/list; None: not cached (list it)


@dataclass
class TurnCatalog:
    enabled_server_ids: set[int]
    servers: list[CatalogServer]  # the ones this user's tier may use


def server_allows_tier(server: McpServer, tier: str) -> bool:
    return not server.allowed_tiers or tier in server.allowed_tiers


def mcp_tool_rows(*, server_ids: list[int]) -> dict[int, dict[str, ToolRow]]:
    """The enabled, listed, accepted tools of these servers, by server id and the server's tool name."""
    rows: dict[int, dict[str, ToolRow]] = {server_id: {} for server_id in server_ids}
    tools = McpTool.objects.filter(server_id__in=server_ids, enabled=True, is_listed=True, refused_reason="")
    for tool in tools.only("server_id", "name", "exposed_name", "cost_cents", "approval_policy"):
        rows[tool.server_id][tool.name] = ToolRow(tool.name, tool.exposed_name, tool.cost_cents, tool.approval_policy)
    return rows


def mcp_turn_catalog(*, user: User) -> TurnCatalog:
    """The enabled servers the user's tier may use, each with its enabled, accepted tools
    and its cached tool list. Two queries (servers, tools) plus one cache read per server."""
    servers = list(McpServer.objects.filter(enabled=True).order_by("name"))
    if not servers:
        return TurnCatalog(enabled_server_ids=set(), servers=[])
    tier = tier_get_for_user(user=user)
    usable = [server for server in servers if server_allows_tier(server, tier)]
    rows = mcp_tool_rows(server_ids=[server.pk for server in usable])
    catalog = TurnCatalog(enabled_server_ids={server.pk for server in servers}, servers=[])
    for server in usable:
        try:
            config = server_config(server)
        except SecretUnreadable:
            logger.error("MCP server %s: its stored credentials cannot be decrypted (SECRET_KEY changed?)", server.name)
            continue
        cached: Any = cache_get(tools_cache_key(server.pk, config.fingerprint))
        listed = None if is_missing(cached) else [ListedTool.from_json(item) for item in cached]
        catalog.servers.append(CatalogServer(config=config, tools=rows[server.pk], listed=listed))
    return catalog


def mcp_enabled_configs() -> list[ServerConfig]:
    """The connection settings of every enabled server (unreadable credentials left out)."""
    configs: list[ServerConfig] = []
    for server in McpServer.objects.filter(enabled=True).order_by("name"):
        try:
            configs.append(server_config(server))
        except SecretUnreadable:
            logger.error("MCP server %s: its stored credentials cannot be decrypted (SECRET_KEY changed?)", server.name)
    return configs
