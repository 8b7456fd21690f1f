"""MCP tools inside a turn: the tool list a turn offers, and the `Tool` that calls one.

`mcp_turn_tools(user=…)` is what the engine adds to the built-ins at a turn's start:
for every enabled server the user's tier may use and that answers now (see
`pool.Connection.ready`), its enabled, accepted tools as `Tool` classes named
``<server>__<tool>``. It never raises and never waits longer than
``COPILOT_MCP_CONNECT_WAIT_S`` (servers are checked concurrently): a server that is
down only loses its own tools for that turn.

A call runs through the built-ins' path (`chat.tools.execute_tool`: credit check
before, one charge after with ``tool:{turn_id}:{tool_call_id}``, none on failure,
``COPILOT_MAX_TOOL_WAIT_S``, output truncated at ``COPILOT_TOOL_OUTPUT_MAX_CHARS``).
Inside it, the server's own timeout bounds the wait, and every failure is a
`ToolError` with a plain reason, so the turn goes on. A tool whose approval policy is
``always`` sets ``requires_approval``, so each call waits for the user's Approve / Deny
like any tool that asks first (`chat.tools.approval`; the user's cost threshold and
``COPILOT_TOOLS_REQUIRING_APPROVAL`` apply to MCP tools too).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from mcp import types
from mcp.shared.exceptions import McpError

from chat.tools import Tool, ToolContext, ToolError, ToolOutput, ToolResultWithImages, tool_cost_cents
from copilot_site.core.sql import connection_released

from . import services
from .config import ServerConfig
from .content import result_error_text, result_images, result_output
from .pool import Connection, McpPool, ServerUnavailable, error_text, is_connection_gone, pool_for_loop
from .selectors import CatalogServer, mcp_enabled_configs, mcp_tool_rows, mcp_turn_catalog

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 408  # the SDK's code for a request that waited past its read timeout


async def _tools_listed(config: ServerConfig, tools: list[types.Tool]) -> None:
    listed = [
        services.ListedTool(name=tool.name, description=tool.description or "", input_schema=dict(tool.inputSchema))
        for tool in tools
    ]
    try:
        refusals = await sync_to_async(connection_released(services.mcp_tools_sync))(
            server_id=config.id, fingerprint=config.fingerprint, listed=listed
        )
    except Exception:
        logger.exception("MCP server %s: could not store its tool list", config.name)
        return
    for refusal in refusals:
        logger.error("MCP server %s: %s", config.name, refusal)


async def _status_changed(config: ServerConfig, **status: Any) -> None:
    try:
        await sync_to_async(connection_released(services.mcp_server_status_record))(server_id=config.id, **status)
    except Exception:
        logger.warning("MCP server %s: could not record its status", config.name, exc_info=True)


def _new_pool() -> McpPool:
    return McpPool(tools_listed=_tools_listed, status_changed=_status_changed)


def turn_pool() -> McpPool:
    """The MCP pool of the running event loop (the worker's shared turn loop)."""
    return pool_for_loop(_new_pool)


class McpToolBase(Tool):
    """A tool of an MCP server; `mcp_tool_class` makes one subclass per exposed tool."""

    server: ClassVar[ServerConfig]
    remote_name: ClassVar[str]
    approval_policy: ClassVar[str] = "never"

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        server = self.server
        pool = turn_pool()
        # The pool's current connection of this server, even if the row was edited since the
        # turn began (re-creating one from this turn's older settings would thrash the pool).
        connection = pool.connections.get(server.id) or pool.connection(server)
        if connection.session is None:
            # Reconnecting since the turn started (e.g. a stdio server that exited): wait briefly.
            await connection.ready(min(float(settings.COPILOT_MCP_CONNECT_WAIT_S), server.timeout_s))
        try:
            result = await connection.call_tool(self.remote_name, arguments)
        except ServerUnavailable:
            raise ToolError(f"The MCP server '{server.name}' is not reachable right now.") from None
        except McpError as exc:
            if exc.error.code == _REQUEST_TIMEOUT:
                raise ToolError(
                    f"The MCP server '{server.name}' did not answer within {server.timeout_s:g} s; the call was "
                    "abandoned."
                ) from None
            if is_connection_gone(exc):
                raise ToolError(f"The MCP server '{server.name}' closed the connection during the call.") from None
            raise ToolError(f"The MCP server '{server.name}' refused the call: {exc.error.message}") from None
        except Exception as exc:
            if is_connection_gone(exc):
                raise ToolError(f"The MCP server '{server.name}' is not reachable right now.") from None
            raise ToolError(f"The MCP server '{server.name}' failed: {error_text(exc)}") from None
        if result.isError:
            raise ToolError(f"The MCP server '{server.name}' reported an error: {result_error_text(result)}")
        images = result_images(result)
        return ToolResultWithImages(result_output(result), images) if images else result_output(result)


_CLASSES: dict[tuple[Any, ...], type[McpToolBase]] = {}


def mcp_tool_class(
    *, server: ServerConfig, remote_name: str, exposed_name: str, description: str, schema: dict[str, Any],
    cost_cents: int, approval_policy: str,
) -> type[McpToolBase]:  # fmt: skip
    """A `Tool` subclass for one MCP tool (cached: the same definition gives the same class)."""
    key = (server, remote_name, exposed_name, description, repr(schema), cost_cents, approval_policy)
    tool_class = _CLASSES.get(key)
    if tool_class is None:
        if len(_CLASSES) > 4096:  # definitions change rarely; never let edits grow this without bound
            _CLASSES.clear()
        attributes = {
            "name": exposed_name,
            "description": f"[MCP server: {server.name}] {description}".strip(),
            "parameters": schema or {"type": "object", "properties": {}},
            "cost_cents": cost_cents,
            "requires_auth": True,
            "server": server,
            "remote_name": remote_name,
            "approval_policy": approval_policy,
            # "always": every call waits for the user's Approve / Deny (chat/tools/approval.py).
            "requires_approval": approval_policy == "always",
        }
        tool_class = _CLASSES[key] = cast(
            type[McpToolBase], type(f"McpTool_{exposed_name}", (McpToolBase,), attributes)
        )
    return tool_class


async def _server_tools(connection: Connection, entry: CatalogServer) -> list[Tool]:
    wait_s = min(float(settings.COPILOT_MCP_CONNECT_WAIT_S), entry.config.timeout_s)
    if not await connection.ready(wait_s):
        return []
    listed, rows = entry.listed, entry.tools
    if listed is None:
        # Not cached (a new server, or the list expired): list now, store it, and read
        # the rows again so tools the listing just added are offered in this turn.
        tools = await asyncio.wait_for(connection.list_tools(), wait_s)
        await _tools_listed(entry.config, tools)
        listed = [
            services.ListedTool(name=t.name, description=t.description or "", input_schema=dict(t.inputSchema))
            for t in tools
        ]
        fresh = await sync_to_async(connection_released(mcp_tool_rows))(server_ids=[entry.config.id])
        rows = fresh[entry.config.id]
    max_description = int(settings.COPILOT_MCP_DESCRIPTION_MAX_CHARS)
    result: list[Tool] = []
    for tool in listed:
        row = rows.get(tool.name)
        if row is None:
            continue  # disabled, refused, or new since the rows were read (offered from the next turn)
        tool_class = mcp_tool_class(
            server=entry.config,
            remote_name=tool.name,
            exposed_name=row.exposed_name,
            description=tool.description[:max_description],
            schema=tool.input_schema,
            cost_cents=row.cost_cents,
            approval_policy=row.approval_policy,
        )
        result.append(tool_class())
    return result


async def mcp_turn_tools(*, user: User | None) -> list[Tool]:
    """The MCP tools this user's turn offers now (see the module docstring). Never raises."""
    if user is None:
        return []
    try:
        catalog = await sync_to_async(connection_released(mcp_turn_catalog))(user=user)
        pool = turn_pool()
        await pool.keep_only(catalog.enabled_server_ids)
        if not catalog.servers:
            return []
        entries = [(pool.connection(entry.config), entry) for entry in catalog.servers]
        results = await asyncio.gather(*(_server_tools(c, e) for c, e in entries), return_exceptions=True)
    except Exception:
        logger.exception("MCP tools could not be prepared for this turn; offering none")
        return []
    tools: list[Tool] = []
    credit_off = not settings.ENABLE_CREDIT
    disabled = set(settings.COPILOT_DISABLED_TOOLS or [])
    for (_, entry), outcome in zip(entries, results, strict=True):
        if isinstance(outcome, BaseException):
            logger.warning("MCP server %s left out of this turn: %s", entry.config.name, error_text(outcome))
            continue
        for tool in outcome:
            if tool.name in disabled or (credit_off and tool_cost_cents(tool) > 0):
                continue  # the same switches as the built-ins (`chat.tools.enabled_tools`)
            tools.append(tool)
    return tools


async def mcp_connections_warm() -> int:
    """Start connecting to every enabled server (called when a worker starts, so the first
    turn finds slow starters, such as an ``npx`` stdio server, already up); how many."""
    try:
        configs = await sync_to_async(connection_released(mcp_enabled_configs))()
    except Exception:
        logger.warning("MCP warm-up could not read the servers; turns will connect on demand", exc_info=True)
        return 0
    pool = turn_pool()
    for config in configs:
        pool.connection(config)
    return len(configs)
