"""A small, real MCP server built with the SDK's FastMCP, for the tests.

Run as a script (it imports nothing of the project, so a stdio child starts fast):

    python copilot_site/testing/mcp_server/server.py stdio
    python copilot_site/testing/mcp_server/server.py http --port 9000 [--token SECRET]

Tools: ``echo`` (text back), ``add`` (a JSON number), ``image`` (a 1×1 PNG),
``fail`` (raises: the SDK answers ``isError``), ``sleep`` (waits ``seconds``, to
pass a client's timeout), ``whoami`` (the process id: proves a stdio restart),
``getenv`` (the process's environment), ``session`` (which client session the call came on: proves pooling), ``big`` (a
long text), ``grow`` (adds a tool and sends ``tools/list_changed``).
With ``--exit-after-list`` the process exits right after answering its first ``tools/list``.
With ``--token`` every HTTP request must carry ``Authorization: Bearer <token>``
(401 otherwise), which proves the client sends the stored credential.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
from typing import Any

from mcp.server.fastmcp import Context, FastMCP, Image

# A valid 1×1 transparent PNG.
PNG_1X1_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PNG_1X1 = base64.b64decode(PNG_1X1_BASE64)


class _ExitsAfterListing(FastMCP):
    """A server that crashes right after its first ``tools/list`` (a crash-looping server)."""

    async def list_tools(self) -> Any:
        tools = await super().list_tools()
        asyncio.get_running_loop().call_later(0.05, os._exit, 3)
        return tools


def build(port: int = 0, *, exit_after_list: bool = False) -> FastMCP:
    server_class = _ExitsAfterListing if exit_after_list else FastMCP
    server = server_class("copilot-test", host="127.0.0.1", port=port, log_level="WARNING")

    @server.tool(description="Repeat the given text.")
    def echo(text: str) -> str:
        return f"echo: {text}"

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Return a tiny PNG image.")
    def image() -> Image:
        return Image(data=PNG_1X1, format="png")

    @server.tool(description="Always fails.")
    def fail() -> str:
        raise ValueError("the tool failed on purpose")

    @server.tool(description="Wait for the given number of seconds, then answer.")
    async def sleep(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool(description="The server's process id.")
    def whoami() -> str:
        return f"pid {os.getpid()}"

    sessions: list[object] = []  # every client session seen (kept, so identities are never reused)

    @server.tool(description="Which MCP session the call arrived on, numbered from 1 in order of first use.")
    def session(ctx: Context) -> str:  # type: ignore[type-arg]
        if not any(seen is ctx.session for seen in sessions):
            sessions.append(ctx.session)
        number = next(n for n, seen in enumerate(sessions, 1) if seen is ctx.session)
        return f"session {number} of {len(sessions)}"

    @server.tool(description="The value of one of the server process's environment variables.")
    def getenv(name: str) -> str:
        return os.environ.get(name, "(unset)")

    @server.tool(description="Return a text of the given number of characters.")
    def big(chars: int) -> str:
        return "x" * chars

    @server.tool(description="Add a tool with the given name, then notify that the tool list changed.")
    async def grow(name: str, ctx: Context) -> str:  # type: ignore[type-arg]
        def added() -> str:
            return f"I am {name}"

        server.add_tool(added, name=name, description=f"A tool added at run time ({name}).")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    return server


def _require_token(app: Any, token: str) -> Any:
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope.get("headers") or []).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    return guarded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="")
    parser.add_argument("--exit-after-list", action="store_true")
    args = parser.parse_args()
    server = build(args.port, exit_after_list=args.exit_after_list)
    if args.transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    app = server.streamable_http_app()
    if args.token:
        app = _require_token(app, args.token)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
