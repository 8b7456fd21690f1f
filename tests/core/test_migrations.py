from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

SEED_CHECK = """
import django, json
django.setup()
from ratelimits.models import TierLimit
print(json.dumps({t.tier: [t.daily_limit_microdollars, t.weekly_limit_microdollars] for t in TierLimit.objects.all()}))
"""
EXPECTED_SEED = (
    '{"FREE": [1000000, 5000000], "PRO": [5000000, 25000000], '
    '"BUSINESS": [20000000, 100000000], "ENTERPRISE": [60000000, 300000000]}'
)


def _run(args: list[str], database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "copilot_site.settings.local",
        "DATABASE_URL": database_url,
        "COPILOT_VAR_DIR": str(tmp_path / "var"),
    }
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300)


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _migrate_and_check_seed(database_url: str, tmp_path: Path) -> None:
    migrated = _run(["manage.py", "migrate", "--noinput"], database_url, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    seeded = _run(["-c", SEED_CHECK], database_url, tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert seeded.stdout.strip() == EXPECTED_SEED
    # Every migration is reversible down to zero for the seed data.
    unapplied = _run(["manage.py", "migrate", "ratelimits", "zero", "--noinput"], database_url, tmp_path)
    assert unapplied.returncode == 0, unapplied.stderr


def test_migrations_apply_on_sqlite(tmp_path: Path) -> None:
    _migrate_and_check_seed(f"sqlite:///{tmp_path / 'fresh.sqlite3'}", tmp_path)


@pytest.mark.skipif(not _postgres_reachable(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_migrations_apply_on_postgresql(tmp_path: Path) -> None:
    import psycopg

    name = f"copilot_migrate_{uuid.uuid4().hex[:8]}"
    admin_url = os.environ.get("COPILOT_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        _migrate_and_check_seed(
            admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + f"/{name}", tmp_path
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_no_missing_migrations(tmp_path: Path) -> None:
    result = _run(
        ["manage.py", "makemigrations", "--check", "--dry-run"], f"sqlite:///{tmp_path / 'x.sqlite3'}", tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
