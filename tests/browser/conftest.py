"""Browser tests: Playwright on Debian's Chromium against the real stack.

daphne, a Celery worker, Redis and the scripted LLM server come from the suite's
session fixtures (tests/conftest.py); users log in through Django's session cookie.
Chromium is started once per test module, so no event loop outlives the module
(Django refuses ORM calls while one runs; each module sets DJANGO_ALLOW_ASYNC_UNSAFE).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.conftest import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 760}


def fake(*rounds: dict[str, Any]) -> str:
    """A scripted-LLM marker for a user message (copilot_site/testing/llm_script/script.py)."""
    return "<<fake " + json.dumps({"rounds": list(rounds)}) + ">>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def worker_settled(timeout: float = 20) -> None:
    """Wait (bounded) until the Celery worker runs nothing: a turn's tail or a title being
    written while the test database is flushed can deadlock the flush."""
    from copilot_site.celery_app import app

    def idle() -> bool:
        inspect = app.control.inspect(timeout=0.5)
        replies = [inspect.active(), inspect.reserved()]
        return all(not reply or not any(reply.values()) for reply in replies)  # None: no worker at all

    with contextlib.suppress(AssertionError):  # the flush may still succeed; never fail a test on this
        wait_until(idle, timeout=timeout, interval=0.2)


@pytest.fixture
def stack(daphne_server: str, celery_worker: Any, fake_llm: Any) -> Iterator[str]:
    """The live site (daphne + worker + scripted LLM); yields its base URL."""
    fake_llm.reset()
    yield daphne_server
    worker_settled()


@dataclass
class Pages:
    """Opens logged-in pages and records every uncaught page error and dialog."""

    browser: Any
    base_url: str
    contexts: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def context(
        self, user: Any | None = None, *, viewport: dict[str, int] | None = None, color_scheme: str = "light"
    ) -> Any:
        context = self.browser.new_context(
            base_url=self.base_url, viewport=viewport or DESKTOP, color_scheme=color_scheme, reduced_motion="reduce"
        )
        if user is not None:
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(user), "url": self.base_url}]
            )
        self.contexts.append(context)
        return context

    def open(self, path: str, user: Any | None = None, *, context: Any | None = None, **options: Any) -> Any:
        page = (context or self.context(user, **options)).new_page()
        self.watch(page)
        page.goto(path)
        return page

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.errors.append(str(error)))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            if dialog.type == "confirm":
                dialog.accept()
            else:
                dialog.dismiss()

        page.on("dialog", on_dialog)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.fixture
def pages_factory(browser: Any) -> Iterator[Callable[[str], Pages]]:
    made: list[Pages] = []

    def make(base_url: str) -> Pages:
        pages = Pages(browser, base_url)
        made.append(pages)
        return pages

    yield make
    for pages in made:
        pages.close()
    errors = [error for pages in made for error in pages.errors]
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def pages(stack: str, pages_factory: Callable[[str], Pages]) -> Pages:
    return pages_factory(stack)


def wait_until(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1) -> Any:
    """Bounded poll of a condition outside the page (the database, a process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
