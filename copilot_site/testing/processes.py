"""Real processes for end-to-end tests and benchmarks: Celery workers and daphne.

Each is started on loopback with the test settings and the test database,
waited for with a bound, and stopped by PID (its whole process group).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from copilot_site.core.embedded_redis import free_port, stop_process

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """A DATABASE_URL for the database described by a Django settings dict."""
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        return f"sqlite:///{name}"
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "localhost"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{name}"


def process_env(database: str, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "copilot_site.settings.test",
            "DATABASE_URL": database,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-4000:]}")


def _spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> ManagedProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603
        command, env=env, cwd=BASE_DIR, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    log_file.close()
    return ManagedProcess(name, process, log_path)


def start_celery_worker(
    env: dict[str, str],
    log_dir: Path,
    *,
    concurrency: int = 8,
    pool: str = "threads",
    name: str = "worker",
    extra_args: list[str] | None = None,
) -> ManagedProcess:
    node = f"{name}-{os.getpid()}-{free_port()}"
    command = [
        sys.executable, "-m", "celery", "-A", "copilot_site", "worker", "--loglevel=INFO",
        f"--pool={pool}", f"--concurrency={concurrency}", f"--hostname={node}@%h",
        "--without-gossip", "--without-mingle", *(extra_args or []),
    ]  # fmt: skip
    managed = _spawn(name, command, env, log_dir)
    wait_for_worker(managed, node)
    return managed


def wait_for_worker(managed: ManagedProcess, node: str, *, timeout_s: float = 60.0) -> None:
    """Bounded wait until the worker named `node` has connected to its broker and is ready.

    Read from its log rather than pinged: `app.control.ping` publishes through the
    app's default broker even when given another connection.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        managed.assert_alive()
        if f"{node}@" in (log := managed.log()) and " ready." in log:
            return
        time.sleep(0.1)
    managed.stop()
    raise RuntimeError(f"celery worker was not ready within {timeout_s}s:\n{managed.log()[-4000:]}")


def start_daphne(env: dict[str, str], log_dir: Path, *, port: int | None = None) -> tuple[ManagedProcess, int]:
    port = port or free_port()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot_site.asgi:application"]
    managed = _spawn("daphne", command, env, log_dir)
    wait_for_port(managed, port)
    return managed, port


def wait_for_port(managed: ManagedProcess, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        managed.assert_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    managed.stop()
    raise RuntimeError(f"{managed.name} did not listen on {port} within {timeout_s}s:\n{managed.log()[-4000:]}")


def start_s3_server(log_dir: Path, *, port: int | None = None) -> tuple[ManagedProcess, str]:
    """moto's S3-compatible server (`moto_server`, a dev dependency) on 127.0.0.1; (process, endpoint URL)."""
    port = port or free_port()
    binary = Path(sys.executable).with_name("moto_server")
    command = [str(binary) if binary.exists() else "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    managed = _spawn("moto-s3", command, dict(os.environ), log_dir)
    wait_for_port(managed, port)
    return managed, f"http://127.0.0.1:{port}"
