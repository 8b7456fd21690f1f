"""The production worker command: the one runstack runs is the one the README documents."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from copilot_site.core.management.commands.runstack import worker_command

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_worker_runs_the_threads_pool_at_the_configured_concurrency() -> None:
    command = worker_command(concurrency=settings.COPILOT_WORKER_CONCURRENCY)
    assert command == [
        "celery", "-A", "copilot_site", "worker", "--loglevel=INFO", "--pool=threads",
        f"--concurrency={settings.COPILOT_WORKER_CONCURRENCY}", "--hostname=copilot@%h",
    ]  # fmt: skip
    assert settings.COPILOT_WORKER_CONCURRENCY == 20


@pytest.mark.xfail(strict=True, reason="the README's production worker command is updated with this change")
def test_the_readme_documents_the_worker_command_runstack_runs() -> None:
    documented = [
        line.split("#", 1)[0].strip()
        for line in README.read_text().splitlines()
        if line.lstrip().startswith("celery -A copilot_site worker")
    ]
    expected = " ".join(worker_command(concurrency=settings.COPILOT_WORKER_CONCURRENCY))
    assert documented == [expected]
