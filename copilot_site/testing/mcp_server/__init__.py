"""A real MCP server for the tests (``server.py``) and a handle to run it as a subprocess.

    with McpTestServer(token="s3cret") as server:   # streamable HTTP on a free loopback port
        server.url                                   # http://127.0.0.1:PORT/mcp
        server.stop(); server.start()                # down between turns, then back on the same port

``stdio_command()`` is the command line of the same server over stdio.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

SERVER_SCRIPT = Path(__file__).resolve().parent / "server.py"
# The ``image`` tool's PNG (kept in step with server.py, which imports nothing of the project).
PNG_1X1_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def stdio_command() -> list[str]:
    return [sys.executable, str(SERVER_SCRIPT), "stdio"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class McpTestServer:
    """The test server over streamable HTTP, in its own process on 127.0.0.1."""

    def __init__(self, *, token: str = "", port: int | None = None, log_path: Path | None = None) -> None:
        self.token = token
        self.port = port or _free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout_s: float = 20.0) -> Self:
        command = [sys.executable, str(SERVER_SCRIPT), "http", "--port", str(self.port)]
        if self.token:
            command += ["--token", self.token]
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the MCP test server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the MCP test server did not listen on {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
