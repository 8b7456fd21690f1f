"""One pooled MCP session per server per worker process, shared by every turn of its loop.

Each server gets a `Connection`: an owner task on the worker's shared event loop
(`chat.turns.loop`) that opens the session (`client.session_open`), lists the tools,
then holds the session open until it breaks, and reconnects. The SDK's transports
are anyio task groups that must be entered and left by one task, so only the owner
opens and closes; turns call ``session.call_tool`` from their own tasks, which the
SDK multiplexes by request id. Consequences:

- connections stay bounded: one session per server per worker process, however many
  turns and users (a stdio server is one child process per worker, started once);
- a session that closes (a stdio server that exited, a call that found the server
  gone or restarted) is reopened at once; a failed attempt, or a session that closed
  within a second having answered nothing, is retried with exponential back-off (1 s, 2 s, … up to
  ``COPILOT_MCP_RECONNECT_MAX_S``);
  while it is down its tools are left out of turns, and nothing else waits on it;
- at a turn's start, a server not heard from within ``COPILOT_MCP_HEALTH_TTL_S`` is
  pinged (bounded by ``COPILOT_MCP_CONNECT_WAIT_S``), so a server that went away
  between turns is noticed before its tools are offered;
- a ``notifications/tools/list_changed`` re-lists the tools (cache and rows).

Status (reachable, latency, tool count, last error) is written to the server's row
after every connection attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio
from django.conf import settings
from mcp import ClientSession, types
from mcp.shared.exceptions import McpError

from .client import session_open
from .config import ServerConfig

logger = logging.getLogger(__name__)

# JSON-RPC codes the SDK uses for a session that is gone: the transport closed
# (CONNECTION_CLOSED) or the server no longer knows the session ("Session terminated").
_GONE_CODES = {types.CONNECTION_CLOSED, 32600, -32600}
# A session that ends sooner than this after opening, having answered nothing, counts as a
# failed attempt (back-off), so a server that exits right after starting is not restarted in a loop.
SHORT_SESSION_S = 1.0

ToolsListed = Callable[[ServerConfig, list[types.Tool]], Awaitable[None]]
StatusChanged = Callable[..., Awaitable[None]]


class ServerUnavailable(Exception):
    """The server has no open session right now (down, or reconnecting)."""


def error_text(exc: BaseException) -> str:
    """A short, plain description of a connection failure (for the admin's last error)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "The server did not answer in time."
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def is_connection_gone(exc: BaseException) -> bool:
    if isinstance(exc, McpError):
        return exc.error.code in _GONE_CODES
    return isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | OSError | BaseExceptionGroup)


class Connection:
    def __init__(self, config: ServerConfig, pool: McpPool) -> None:
        self.config = config
        self.pool = pool
        self.session: ClientSession | None = None
        self.last_ok = 0.0
        self.last_error = ""
        self.failures = 0
        self.retry_at = 0.0
        self.served = 0  # requests answered on the current session
        self._broken = asyncio.Event()
        self._settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._relist: asyncio.Task[None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._own(), name=f"mcp-{config.name}")

    # ------------------------------------------------------------------ the owner task

    async def _own(self) -> None:
        while True:
            started = time.monotonic()
            try:
                async with session_open(self.config, message_handler=self._on_message) as opened:
                    listed = await opened.session.list_tools()
                    latency_ms = int((time.monotonic() - started) * 1000)
                    self._broken.clear()  # a failure noticed on an earlier session is not this one's
                    failures_before, connected_at = self.failures, time.monotonic()
                    self.session, self.failures, self.last_error = opened.session, 0, ""
                    self.served = 0
                    self.last_ok = connected_at
                    self._settle(True)
                    await self.pool.tools_listed(self.config, listed.tools)
                    await self.pool.status_changed(
                        self.config, reachable=True, latency_ms=latency_ms, tool_count=len(listed.tools)
                    )
                    closed_wait = asyncio.ensure_future(opened.closed.wait())
                    broken_wait = asyncio.ensure_future(self._broken.wait())
                    try:
                        await asyncio.wait({closed_wait, broken_wait}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        closed_wait.cancel()
                        broken_wait.cancel()
                    self._went_down()
                    if self.served == 0 and time.monotonic() - connected_at < SHORT_SESSION_S:
                        # A server that exits right after starting must not be restarted in a tight loop.
                        self.failures = failures_before + 1
                    logger.info("MCP server %s: session ended; reconnecting", self.config.name)
            except asyncio.CancelledError:
                self.session = None
                self._settle(False)
                raise
            except Exception as exc:
                self.session = None
                self.failures += 1
                self.last_error = error_text(exc)
                logger.warning("MCP server %s unreachable: %s", self.config.name, self.last_error)
                self._settle(False)
                await self.pool.status_changed(self.config, reachable=False, error=self.last_error)
            self._broken.clear()
            delay = (
                0.0
                if self.failures == 0
                else min(float(settings.COPILOT_MCP_RECONNECT_MAX_S), 2.0 ** (self.failures - 1))
            )
            self.retry_at = time.monotonic() + delay
            if self._settled.done():
                self._settled = asyncio.get_running_loop().create_future()
            if delay:
                await asyncio.sleep(delay)

    def _went_down(self) -> None:
        """No session from now on; whoever waits in `ready` waits for the next attempt."""
        self.session = None
        if self._settled.done():
            self._settled = asyncio.get_running_loop().create_future()

    def _settle(self, up: bool) -> None:
        if not self._settled.done():
            self._settled.set_result(up)

    async def _on_message(self, message: Any) -> None:
        is_list_changed = isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ToolListChangedNotification
        )
        if is_list_changed and (self._relist is None or self._relist.done()):
            self._relist = asyncio.ensure_future(self._list_again())

    async def _list_again(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            listed = await session.list_tools()
        except Exception as exc:
            logger.warning("MCP server %s: re-listing tools failed: %s", self.config.name, error_text(exc))
            return
        await self.pool.tools_listed(self.config, listed.tools)

    # ------------------------------------------------------------------ for turns

    def mark_broken(self, session: ClientSession) -> None:
        """A call on ``session`` found it gone: the owner reopens it (if it is still the current one)."""
        if self.session is session:
            self._went_down()
            self._broken.set()

    async def ready(self, wait_s: float) -> bool:
        """Whether the server answers now: a recent contact, a ping, or a (re)connection within ``wait_s``."""
        deadline = time.monotonic() + wait_s
        session = self.session
        if session is not None:
            if time.monotonic() - self.last_ok < float(settings.COPILOT_MCP_HEALTH_TTL_S):
                return True
            try:
                with anyio.fail_after(wait_s):
                    await session.send_ping()
            except Exception as exc:
                logger.info("MCP server %s did not answer a ping: %s", self.config.name, error_text(exc))
                self.mark_broken(session)
            else:
                self.last_ok = time.monotonic()
                self.served += 1
                return True
            await asyncio.sleep(0)  # let the owner notice and start reconnecting
        if self.session is None and time.monotonic() < self.retry_at:
            return False  # backing off after a failed attempt: leave the server out without waiting
        try:
            remaining = max(0.0, deadline - time.monotonic())
            return bool(await asyncio.wait_for(asyncio.shield(self._settled), remaining)) and self.session is not None
        except TimeoutError:
            return False

    async def list_tools(self) -> list[types.Tool]:
        session = self.session
        if session is None:
            raise ServerUnavailable
        listed = await session.list_tools()
        self.last_ok = time.monotonic()
        self.served += 1
        return listed.tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        session = self.session
        if session is None:
            raise ServerUnavailable
        try:
            result = await session.call_tool(
                name, arguments, read_timeout_seconds=timedelta(seconds=self.config.timeout_s)
            )
        except Exception as exc:
            if is_connection_gone(exc):
                self.mark_broken(session)
            raise
        self.last_ok = time.monotonic()
        self.served += 1
        return result

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class McpPool:
    """The connections of one event loop, keyed by server id (replaced when the row changes)."""

    def __init__(self, *, tools_listed: ToolsListed, status_changed: StatusChanged) -> None:
        self.connections: dict[int, Connection] = {}
        self.tools_listed = tools_listed
        self.status_changed = status_changed

    def connection(self, config: ServerConfig) -> Connection:
        current = self.connections.get(config.id)
        if current is not None and current.config == config:
            return current
        if current is not None:
            asyncio.ensure_future(current.close())
        connection = self.connections[config.id] = Connection(config, self)
        return connection

    async def keep_only(self, server_ids: set[int]) -> None:
        """Close the connections of servers that are gone or disabled."""
        for server_id in [sid for sid in self.connections if sid not in server_ids]:
            await self.connections.pop(server_id).close()

    async def close(self) -> None:
        await self.keep_only(set())


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, McpPool] = weakref.WeakKeyDictionary()


def pool_for_loop(factory: Callable[[], McpPool]) -> McpPool:
    """The running loop's pool (the worker's shared turn loop has one for its lifetime)."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = factory()
    return pool
