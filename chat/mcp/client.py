"""Opening one MCP client session with the official SDK, over either transport.

`session_open(config)` yields an initialised `mcp.ClientSession` and a
`closed` event that is set when the transport's read side ends (a stdio server
exited, an HTTP transport failed): the pool's cue to reconnect. Operator-configured
URLs may point at private or loopback addresses (the operator's own network): the
SDK's own httpx client is used, never web_fetch's public-address filter, and no
user input ever reaches a server's URL or command.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TextIO

import anyio
import httpx
from django.conf import settings
from mcp import ClientSession, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from .config import ServerConfig

MessageHandler = Callable[[Any], Awaitable[None]]


@dataclass
class OpenSession:
    session: ClientSession
    closed: anyio.Event
    server_info: types.Implementation


def _stdio_errlog() -> TextIO:
    """Where a stdio server's stderr goes: the worker's own stderr when it is a real file."""
    stream = sys.__stderr__
    try:
        if stream is not None:
            stream.fileno()
            return stream
    except (OSError, ValueError):
        pass
    return open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)


@contextlib.asynccontextmanager
async def _transport(config: ServerConfig) -> AsyncIterator[tuple[Any, Any]]:
    if config.is_stdio:
        if not config.command:
            raise ValueError("this stdio server has no command")
        # The SDK starts the process with a minimal environment (HOME, PATH, …) plus `env`.
        params = StdioServerParameters(
            command=config.command[0],
            args=list(config.command[1:]),
            cwd=str(settings.BASE_DIR),
            env=dict(config.env) or None,
        )
        async with stdio_client(params, errlog=_stdio_errlog()) as (read, write):
            yield read, write
        return
    timeout = httpx.Timeout(config.timeout_s, read=max(config.timeout_s, 300.0))
    async with (
        httpx.AsyncClient(headers=dict(config.headers), timeout=timeout) as http,
        streamable_http_client(config.url, http_client=http) as (read, write, _),
    ):
        yield read, write


@contextlib.asynccontextmanager
async def session_open(
    config: ServerConfig, *, message_handler: MessageHandler | None = None
) -> AsyncIterator[OpenSession]:
    """An initialised session; ``initialize`` is bounded by the server's timeout."""
    async with contextlib.AsyncExitStack() as stack:
        read, write = await stack.enter_async_context(_transport(config))
        relay_send, relay_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        closed = anyio.Event()

        async def relay() -> None:
            # Forward the transport's messages and notice when its read side ends.
            try:
                async with relay_send:
                    async for item in read:
                        await relay_send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            finally:
                closed.set()

        group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(group.cancel_scope.cancel)
        group.start_soon(relay)

        async def on_message(message: Any) -> None:
            if message_handler is not None:
                await message_handler(message)

        session = await stack.enter_async_context(
            ClientSession(
                relay_receive,
                write,
                read_timeout_seconds=timedelta(seconds=config.timeout_s),
                message_handler=on_message,
            )
        )
        with anyio.fail_after(config.timeout_s):
            result = await session.initialize()
        yield OpenSession(session=session, closed=closed, server_info=result.serverInfo)
