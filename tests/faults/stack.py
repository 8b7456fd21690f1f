"""The production-like layout of the fault suite, on one machine as separate processes.

A PostgreSQL cluster of the suite's own (`pg_createcluster` on a free port, dropped at
the end; the machine's own clusters are never touched), a redis-server of its own that
a test may stop and start again on the same port, the scripted LLM upstream, two
daphne processes and two Celery workers started with production's worker command, all
on the production settings profile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from copilot_site.core.embedded_redis import free_port, start_redis, stop_process, wait_for_redis
from copilot_site.core.management.commands.runstack import worker_command
from copilot_site.testing.processes import BASE_DIR, ManagedProcess, wait_for_port

PG_VERSION = "15"


def poll(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """The predicate's first truthy value, or AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(interval)


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, check=False, capture_output=True, text=True, **kwargs)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(
            f"{command[:3]} exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def _spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> ManagedProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603
            command, env=env, cwd=BASE_DIR, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ManagedProcess(name, process, log_path)


@dataclass
class PostgresCluster:
    """A cluster of the suite's own, trust auth on loopback, created and dropped here."""

    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/copilot"

    def create(self) -> None:
        _run([
            "pg_createcluster", "--start", "-p", str(self.port),
            "-o", "fsync=off", "-o", "max_connections=200",
            PG_VERSION, self.name, "--", "--auth=trust",
        ])  # fmt: skip
        poll(self.ready, timeout=30, what="the suite's PostgreSQL accepting connections")
        _run(["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "copilot"])

    def ready(self) -> bool:
        probe = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False).returncode == 0  # noqa: S603

    def stop(self) -> None:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, self.name, "stop", "-m", "fast"])

    def start(self) -> None:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, self.name, "start"])
        poll(self.ready, timeout=30, what="PostgreSQL back")

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, self.name], check=False)  # noqa: S603, S607

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_redis(self.port, self.workdir)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
        wait_for_redis(f"{self.url}/0", process=self.process)


@dataclass
class FaultStack:
    log_dir: Path
    pg: PostgresCluster
    redis: RedisServer
    env: dict[str, str]
    webs: list[tuple[ManagedProcess, str]] = field(default_factory=list)
    workers: list[tuple[ManagedProcess, str]] = field(default_factory=list)
    others: list[ManagedProcess] = field(default_factory=list)
    _worker_serial: int = 0

    @property
    def web_urls(self) -> list[str]:
        return [url for _, url in self.webs]

    def manage(self, *args: str, stdin: str | None = None) -> str:
        return _run([sys.executable, "manage.py", *args], env=self.env, cwd=BASE_DIR, input=stdin).stdout

    def web_start(self) -> str:
        port = free_port()
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot_site.asgi:application"]
        managed = _spawn(f"web{len(self.webs) + 1}", command, self.env, self.log_dir)
        wait_for_port(managed, port, timeout_s=60)
        self.webs.append((managed, f"http://127.0.0.1:{port}"))
        return f"http://127.0.0.1:{port}"

    def worker_start(self) -> ManagedProcess:
        """A worker with production's command; its own node name (the last --hostname wins), so
        the two workers on this one host are told apart."""
        self._worker_serial += 1
        node = f"faults{self._worker_serial}-{os.getpid()}"
        command = [sys.executable, "-m", *worker_command(concurrency=4), f"--hostname={node}@%h"]
        managed = _spawn(f"worker{self._worker_serial}", command, self.env, self.log_dir)

        def ready() -> bool:
            managed.assert_alive()
            log = managed.log()
            return f"{node}@" in log and " ready." in log

        poll(ready, timeout=90, what=f"worker {node} ready")
        self.workers.append((managed, node))
        return managed

    def worker_running(self, turns_before: dict[str, int]) -> ManagedProcess | None:
        """The live worker whose log shows one more turn task received than in `turns_before`."""
        for managed, node in self.workers:
            if managed.process.poll() is None and self.turns_received(managed) > turns_before.get(node, 0):
                return managed
        return None

    def turns_received_all(self) -> dict[str, int]:
        return {node: self.turns_received(managed) for managed, node in self.workers}

    @staticmethod
    def turns_received(managed: ManagedProcess) -> int:
        return managed.log().count("Task chat.run_turn[")  # one "received" line per task

    def worker_kill(self, managed: ManagedProcess) -> None:
        os.killpg(managed.process.pid, signal.SIGKILL)
        managed.process.wait(timeout=10)
        self.workers = [(m, n) for m, n in self.workers if m is not managed]

    def persons_create(self, count: int) -> list[Person]:
        """`count` users, each with an API key and one chat session (through the ORM of the
        production profile, in a `manage.py shell`)."""
        script = (
            "import json, uuid\n"
            "from django.contrib.auth import get_user_model\n"
            "from copilot_site.accounts.services import api_key_create\n"
            "from chat.models import ChatSession\n"
            "out = []\n"
            f"for _ in range({count}):\n"
            "    user = get_user_model().objects.create_user(username='f' + uuid.uuid4().hex[:12], password=None)\n"
            "    _, key = api_key_create(user=user, name='faults')\n"
            "    out.append({'key': key, 'session': str(ChatSession.objects.create(user=user).id)})\n"
            "print('PERSONS ' + json.dumps(out))\n"
        )
        output = self.manage("shell", stdin=script)
        line = next(line for line in output.splitlines() if line.startswith("PERSONS "))
        return [Person(p["key"], p["session"]) for p in json.loads(line.removeprefix("PERSONS "))]

    def transcript(self, session_id: str) -> list[tuple[str, str, str | None]]:
        rows = self.pg.query(
            "SELECT role, kind, content FROM chat_chatmessage WHERE session_id = %s ORDER BY sequence", session_id
        )
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]

    def outcomes(self, session_id: str) -> list[str]:
        rows = self.pg.query("SELECT outcome FROM chat_turnusage WHERE session_id = %s ORDER BY started_at", session_id)
        return [str(r[0]) for r in rows]

    def stop_all(self) -> None:
        for managed, _ in [*self.webs, *self.workers]:
            managed.stop()
        for managed in self.others:
            managed.stop()


@dataclass
class Person:
    key: str
    session: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def stream_url(self, base: str) -> str:
        return f"{base}/api/chat/sessions/{self.session}/stream"


def fault_stack_start() -> FaultStack:
    root = Path(tempfile.mkdtemp(prefix="copilot-faults-"))
    log_dir = BASE_DIR / "test-artifacts" / "faults"
    if log_dir.exists():
        shutil.rmtree(log_dir)
    log_dir.mkdir(parents=True)
    pg = PostgresCluster(f"faults_{os.getpid()}", free_port())
    redis = RedisServer(free_port(), root / "redis")
    stack: FaultStack | None = None
    try:
        pg.create()
        redis.start()
        llm_port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("COPILOT_", "DJANGO_", "CELERY_"))},
            "DJANGO_SETTINGS_MODULE": "copilot_site.settings.production",
            "DJANGO_SECRET_KEY": "faults-" + os.urandom(24).hex(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_SECURE_COOKIES": "false",
            "DATABASE_URL": pg.url,
            "REDIS_URL": f"{redis.url}/0",
            "CELERY_BROKER_URL": f"{redis.url}/1",
            "OPENAI_API_KEY": "sk-faults",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "COPILOT_LLM_PROVIDER": "openai_compat",
            "COPILOT_SSE_HEARTBEAT_S": "1",
            "COPILOT_VAR_DIR": str(root / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
            "PYTHONUNBUFFERED": "1",
        }
        (root / "metrics").mkdir()
        stack = FaultStack(log_dir, pg, redis, env)
        llm = _spawn(
            "llm", [sys.executable, "-m", "copilot_site.testing.llm_script", "--port", str(llm_port)], env, log_dir
        )
        stack.others.append(llm)
        wait_for_port(llm, llm_port)
        stack.manage("migrate", "--noinput")
        stack.web_start()
        stack.web_start()
        stack.worker_start()
        stack.worker_start()
        return stack
    except BaseException:
        if stack is not None:
            stack.stop_all()
        redis.stop()
        pg.drop()
        raise


def fault_stack_stop(stack: FaultStack) -> None:
    stack.stop_all()
    stack.redis.stop()
    stack.pg.drop()
