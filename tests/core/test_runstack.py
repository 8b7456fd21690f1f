from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from copilot_site.core.embedded_redis import free_port

BASE_DIR = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _pids_in_groups(groups: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, pgid = fields[0], int(fields[2])
        if pgid in groups and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.e2e
def test_runstack_serves_and_sigint_stops_every_child(tmp_path: Path) -> None:
    # given: an environment with nothing configured (embedded Redis, demo model, SQLite)
    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="copilot_site.settings.local",
        COPILOT_VAR_DIR=str(tmp_path / "var"),
        COPILOT_EMBEDDED_REDIS_PORT=str(free_port()),
        COPILOT_DEMO_LLM_PORT=str(free_port()),
        COPILOT_WORKER_CONCURRENCY="1",
        PORT=str(web_port),
        PYTHONUNBUFFERED="1",
    )
    env.pop("OPENAI_API_KEY", None)
    env.pop("ANTHROPIC_API_KEY", None)
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "runstack"],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(supervisor.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        # when: it comes up
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and supervisor.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=5) as response:  # noqa: S310
                    health = (response.status, json.loads(response.read()))
                    break
            except OSError:
                time.sleep(0.5)
        # then
        assert health == (200, {"database": "ok", "redis": "ok", "worker": "ok"}), "".join(lines)
        output = "".join(lines)
        children = {m.group(1): int(m.group(2)) for m in re.finditer(r"started (\S+) pid=(\d+)", output)}
        assert sorted(children) == ["demo-llm", "redis", "web", "worker"]
        assert re.search(r"Demo login: demo / \S+ {2}\(shown once\)", output)
        assert f"Copilot is running at http://127.0.0.1:{web_port}/ (answering with the offline demo model)" in output
        assert all(_alive(pid) for pid in children.values())
        # the threads pool: one worker process, nothing forked beside it
        assert _pids_in_groups({children["worker"]}) == [children["worker"]]
        # when: Ctrl-C
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(timeout=60)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    reader.join(timeout=5)
    # then: it exits cleanly and nothing it started survives
    assert supervisor.returncode == 0, "".join(lines)
    assert "all processes stopped" in "".join(lines)
    assert [pid for pid in children.values() if _alive(pid)] == []
    assert _pids_in_groups(set(children.values())) == []
