from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "redis": settings.REDIS_URL,
    "broker": settings.CELERY_BROKER_URL,
    "debug": settings.DEBUG,
    "tz": settings.TIME_ZONE,
    "use_tz": settings.USE_TZ,
    "demo": settings.COPILOT_DEMO_MODEL,
    "llm_base": settings.COPILOT_LLM_BASE_URL,
    "secret_len": len(settings.SECRET_KEY),
    "secret": settings.SECRET_KEY,
}))
"""


def _bare_env(tmp_path: Path, module: str, **extra: str) -> dict[str, str]:
    """An environment with nothing of ours in it: just enough to run Python."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": module,
        "COPILOT_VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


def _probe(tmp_path: Path, module: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=BASE_DIR,
        env=_bare_env(tmp_path, module, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_local_settings_boot_with_an_empty_environment(tmp_path: Path) -> None:
    # when
    first = _probe(tmp_path, "copilot_site.settings.local")
    second = _probe(tmp_path, "copilot_site.settings.local")
    # then
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["engine"] == "django.db.backends.sqlite3"
    assert report["db_name"] == str(tmp_path / "var" / "db.sqlite3")
    assert report["redis"] == "redis://127.0.0.1:6389/0"
    assert report["broker"] == "redis://127.0.0.1:6389/0"
    assert report["debug"] is True
    assert (report["tz"], report["use_tz"]) == ("UTC", True)
    assert report["demo"] is True
    assert report["llm_base"] == "http://127.0.0.1:8391/v1"
    # the generated key is kept under var/, private, and stable across boots
    key_file = tmp_path / "var" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert report["secret"] == key_file.read_text().strip()
    assert json.loads(second.stdout)["secret"] == report["secret"]
    assert report["secret_len"] >= 50


def test_environment_switches_database_redis_and_model(tmp_path: Path) -> None:
    result = _probe(
        tmp_path,
        "copilot_site.settings.local",
        DATABASE_URL="postgres://u:p@db.example.com:5432/copilot",
        REDIS_URL="redis://cache.example.com:6379/2",
        CELERY_BROKER_URL="amqp://guest:guest@mq.example.com:5672//",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL="https://llm.example.com/v1",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["engine"] == "copilot_site.core.postgresql"
    assert report["db_name"] == "copilot"
    assert report["redis"] == "redis://cache.example.com:6379/2"
    assert report["broker"] == "amqp://guest:guest@mq.example.com:5672//"
    assert report["demo"] is False
    assert report["llm_base"] == "https://llm.example.com/v1"


def test_production_settings_refuse_to_boot_without_a_secret_key(tmp_path: Path) -> None:
    result = _probe(tmp_path, "copilot_site.settings.production")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_settings_are_not_debug(tmp_path: Path) -> None:
    result = _probe(tmp_path, "copilot_site.settings.production", DJANGO_SECRET_KEY="x" * 60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["debug"] is False
    assert report["secret"] == "x" * 60


DB_PROBE = """
import json, django
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "pool": db.get("OPTIONS", {}).get("pool"),
    "conn_max_age": db["CONN_MAX_AGE"],
    "server_side_cursors_off": db.get("DISABLE_SERVER_SIDE_CURSORS", False),
}))
"""


def _db_probe(tmp_path: Path, **extra: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", DB_PROBE],
        cwd=BASE_DIR,
        env=_bare_env(tmp_path, "copilot_site.settings.local", **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_postgresql_gets_one_bounded_pool_per_process(tmp_path: Path) -> None:
    url = "postgres://u:p@db.example.com:5432/copilot"
    assert _db_probe(tmp_path, DATABASE_URL=url) == {
        "pool": {"min_size": 2, "max_size": 8, "timeout": 3.0},
        "conn_max_age": 0,
        "server_side_cursors_off": False,
    }
    assert _db_probe(tmp_path, DATABASE_URL=url, COPILOT_DB_POOL_MIN="1", COPILOT_DB_POOL_MAX="4")["pool"] == {
        "min_size": 1,
        "max_size": 4,
        "timeout": 3.0,
    }


def test_pool_off_for_pgbouncer_keeps_connections_and_drops_server_side_cursors(tmp_path: Path) -> None:
    url = "postgres://u:p@pgbouncer.example.com:6432/copilot"
    assert _db_probe(tmp_path, DATABASE_URL=url, COPILOT_DB_POOL="0") == {
        "pool": None,
        "conn_max_age": 60,
        "server_side_cursors_off": True,
    }


def test_sqlite_has_no_pool(tmp_path: Path) -> None:
    assert _db_probe(tmp_path)["pool"] is None
