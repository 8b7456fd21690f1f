"""`python manage.py runstack`: the whole site in one supervised command.

Migrates, makes sure the demo user exists, then starts and owns its children:
the embedded redis-server (unless REDIS_URL is set), the offline demo LLM
server (when no LLM key is configured), one Celery worker, and daphne. Ctrl-C
(SIGINT) or SIGTERM stops every child, web first and Redis last, and nothing is
left running. If a child dies, the others are stopped and the command exits 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from copilot_site.core.embedded_redis import start_redis, stop_process, wait_for_redis
from copilot_site.core.metrics import multiprocess_dir_clear


def worker_command(*, concurrency: int) -> list[str]:
    """The Celery worker command of production (the README documents it; runstack runs it).

    The `threads` pool: a turn mostly waits on the network, so one process holds many
    live turns on its one event loop. Celery's default (prefork) would run only as many
    turns at a time as the machine has cores.
    """
    return [
        "celery", "-A", "copilot_site", "worker", "--loglevel=INFO", "--pool=threads",
        f"--concurrency={concurrency}", "--hostname=copilot@%h",
    ]  # fmt: skip


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


@dataclass
class Stack:
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        # Own session: a terminal Ctrl-C reaches only the supervisor, which then
        # stops the children in order, and each child's process group can be
        # killed as a whole (Celery pool processes included).
        process = subprocess.Popen(command, env=env, start_new_session=True)  # noqa: S603
        child = Child(name, process)
        self.children.append(child)
        return child

    def adopt(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.children.append(Child(name, process))

    def stop_all(self, write: Any) -> None:
        for child in reversed(self.children):
            write(f"stopping {child.name} (pid {child.process.pid})")
            stop_process(child.process)
        self.children.clear()

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


class Command(BaseCommand):
    help = "Run redis (embedded), the demo LLM (if no key), a Celery worker and daphne; Ctrl-C stops them all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-migrate", action="store_true")
        parser.add_argument("--no-demo-user", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        python = sys.executable
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        env = dict(os.environ)
        env.setdefault(
            "DJANGO_SETTINGS_MODULE", os.environ.get("DJANGO_SETTINGS_MODULE", "copilot_site.settings.local")
        )
        stack = Stack()
        signal.signal(signal.SIGINT, _raise_stop)
        signal.signal(signal.SIGTERM, _raise_stop)
        exit_code = 0
        try:
            if not os.environ.get("REDIS_URL"):
                redis_port = settings.EMBEDDED_REDIS_PORT
                self.stdout.write(f"starting embedded redis on 127.0.0.1:{redis_port}")
                stack.adopt("redis", start_redis(redis_port, Path(settings.VAR_DIR) / "redis"))
                env["REDIS_URL"] = settings.REDIS_URL
            else:
                wait_for_redis(settings.REDIS_URL)
            if not options["no_migrate"]:
                call_command("migrate", interactive=False, verbosity=0)
            if not options["no_demo_user"]:
                call_command("ensure_demo_user", stdout=self.stdout)
            multiprocess_dir_clear()  # the metric files of a previous run's processes
            if settings.COPILOT_DEMO_MODEL:
                stack.start(
                    "demo-llm",
                    [python, manage, "demo_llm", "--host", "127.0.0.1", "--port", str(settings.COPILOT_DEMO_LLM_PORT)],
                    env,
                )
            stack.start("worker", [python, "-m", *worker_command(concurrency=settings.COPILOT_WORKER_CONCURRENCY)], env)
            stack.start(
                "web", [python, "-m", "daphne", "-b", host, "-p", str(port), "copilot_site.asgi:application"], env
            )
            for child in stack.children:
                self.stdout.write(f"started {child.name} pid={child.process.pid}")
            model = "the offline demo model" if settings.COPILOT_DEMO_MODEL else settings.COPILOT_MODEL
            self.stdout.write(
                self.style.SUCCESS(f"Copilot is running at http://{host}:{port}/ (answering with {model})")
            )
            self.stdout.write("Press Ctrl-C to stop.")
            self.stdout.flush()
            while True:
                exited = stack.first_exited()
                if exited is not None:
                    self.stderr.write(f"{exited.name} exited with code {exited.process.returncode}; stopping")
                    exit_code = 1
                    break
                time.sleep(0.5)
        except _Stop:
            self.stdout.write("shutting down")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stack.stop_all(self.stdout.write)
            self.stdout.write("all processes stopped")
            self.stdout.flush()
        if exit_code:
            sys.exit(exit_code)
