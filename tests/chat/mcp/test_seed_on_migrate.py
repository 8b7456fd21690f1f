"""A first boot seeds the MCP servers of COPILOT_MCP_SERVERS on `migrate` (post_migrate), once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[3]

CHECK = """
import django, json
django.setup()
from chat.models import McpServer
print(json.dumps([[s.name, s.transport, s.url, s.timeout_s] for s in McpServer.objects.order_by("name")]))
"""


def test_migrate_seeds_servers_and_a_second_migrate_changes_nothing(tmp_path: Path) -> None:
    # given: a fresh SQLite file and two configured servers
    servers = [
        {"name": "docs", "transport": "streamable-http", "url": "http://127.0.0.1:9000/mcp", "headers": {}},
        {"name": "files", "command": ["python", "server.py"], "timeout_s": 12},
    ]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "copilot_site.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        "COPILOT_VAR_DIR": str(tmp_path / "var"),
        "COPILOT_MCP_SERVERS": json.dumps(servers),
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300
        )  # noqa: S603
        assert done.returncode == 0, done.stderr
        return done.stdout

    # when
    run("manage.py", "migrate", "--noinput")
    run("manage.py", "migrate", "--noinput")
    # then
    assert json.loads(run("-c", CHECK)) == [
        ["docs", "streamable-http", "http://127.0.0.1:9000/mcp", 30.0],
        ["files", "stdio", "", 12.0],
    ]
