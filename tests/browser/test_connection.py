"""Connection loss: the web server goes away mid-turn and comes back.

This module runs its own daphne so it can stop and restart it; the turn keeps
running in the Celery worker meanwhile (a turn outlives its web connections).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import expect

from copilot_site.core.embedded_redis import free_port
from copilot_site.testing.processes import ManagedProcess, start_daphne
from tests.browser.conftest import Pages, fake, screenshot, worker_settled
from tests.conftest import ARTIFACTS
from tests.factories import UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@dataclass
class RestartableSite:
    env: dict[str, str]
    port: int
    process: ManagedProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process, _ = start_daphne(self.env, ARTIFACTS / "logs", port=self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def site(live_env: dict[str, str], celery_worker: Any, fake_llm: Any) -> Iterator[RestartableSite]:
    fake_llm.reset()
    restartable = RestartableSite(env=live_env, port=free_port())
    restartable.start()
    yield restartable
    restartable.stop()
    worker_settled()


def test_connection_loss_shows_a_banner_then_reconnects_and_finishes_the_turn(
    site: RestartableSite, pages_factory: Callable[[str], Pages]
) -> None:
    # given: a slow turn streaming
    pages = pages_factory(site.base_url)
    page = pages.open("/copilot", UserFactory(username="alice"))
    text = " ".join(f"part{i}" for i in range(60))
    page.get_by_test_id("composer-input").fill("Go " + fake({"text": text, "chunk_size": 6, "delay_ms": 90}))
    page.get_by_test_id("composer-input").press("Enter")
    answer = page.get_by_test_id("assistant-text").last
    expect(answer).to_contain_text("part2", timeout=30_000)
    # when: the server goes away
    site.stop()
    # then: the page says so and keeps what it has
    banner = page.get_by_test_id("connection-banner")
    expect(banner).to_contain_text("Connection lost.", timeout=15_000)
    expect(answer).to_contain_text("part2")
    screenshot(page, "chat-connection-lost")
    # when: it comes back
    site.start()
    # then: the page reconnects by itself, the turn finishes, and nothing is shown twice
    expect(banner).to_be_hidden(timeout=40_000)
    expect(answer).to_have_text(text, timeout=40_000)
    expect(page.get_by_test_id("stop")).to_be_hidden(timeout=30_000)
    expect(page.get_by_test_id("assistant-text")).to_have_text([text])
