"""The admin's "test connection": one short-lived session, outside the worker's pool.

`mcp_server_test(server)` connects with the row's current settings, initialises,
lists the tools, records the status (reachable, latency, tool count, last error)
and syncs the tool rows, exactly as the worker does on connect. It runs the SDK on
a private event loop in a helper thread, so it works from any request thread
(under daphne or the test client) and never touches the worker's connections.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from chat.models import McpServer

from . import services
from .client import session_open
from .config import SecretUnreadable, server_config
from .pool import error_text


@dataclass(frozen=True)
class ProbeResult:
    reachable: bool
    latency_ms: int | None = None
    tool_names: list[str] = field(default_factory=list)
    error: str = ""
    refusals: list[str] = field(default_factory=list)
    server_version: str = ""


async def _probe(server: McpServer) -> tuple[ProbeResult, list[services.ListedTool]]:
    config = server_config(server)
    started = time.monotonic()
    try:
        async with session_open(config) as opened:
            listed = await opened.session.list_tools()
            latency_ms = int((time.monotonic() - started) * 1000)
            info = opened.server_info
    except Exception as exc:
        return ProbeResult(reachable=False, error=error_text(exc)), []
    tools = [
        services.ListedTool(name=t.name, description=t.description or "", input_schema=dict(t.inputSchema))
        for t in listed.tools
    ]
    version = f"{info.name} {info.version}".strip()
    return ProbeResult(True, latency_ms, [t.name for t in tools], server_version=version), tools


def _run_in_thread(server: McpServer) -> tuple[ProbeResult, list[services.ListedTool]]:
    box: dict[str, tuple[ProbeResult, list[services.ListedTool]]] = {}
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box["result"] = asyncio.run(_probe(server))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"mcp-probe-{server.name}", daemon=True)
    thread.start()
    thread.join(timeout=server.timeout_s * 3 + 10)
    if failure:
        raise failure[0]
    if "result" not in box:
        return ProbeResult(reachable=False, error="The test did not finish in time."), []
    return box["result"]


def mcp_server_test(*, server: McpServer) -> ProbeResult:
    """Connect, list the tools, record the status and sync the tool rows (see the module docstring)."""
    try:
        result, tools = _run_in_thread(server)
    except SecretUnreadable:
        result, tools = (
            ProbeResult(reachable=False, error="The stored credentials cannot be decrypted; enter them again."),
            [],
        )
    if not result.reachable:
        services.mcp_server_status_record(server_id=server.pk, reachable=False, error=result.error)
        return result
    config = server_config(server)
    services.mcp_server_status_record(
        server_id=server.pk, reachable=True, latency_ms=result.latency_ms, tool_count=len(tools)
    )
    refusals = services.mcp_tools_sync(server_id=server.pk, fingerprint=config.fingerprint, listed=tools)
    return ProbeResult(
        reachable=True,
        latency_ms=result.latency_ms,
        tool_names=result.tool_names,
        refusals=refusals,
        server_version=result.server_version,
    )
