"""The AI SDK's own `useChat` in Chromium against the real server.

The real npm packages (tests/js/package.json, `make js-tests`): ai 5 with @ai-sdk/react 2,
and ai 6 with @ai-sdk/react 3 (ai 7 needs node 22). tests/js/harness/app.jsx is a small React
app around `useChat`, bundled per SDK generation by esbuild (tests/js/harness/build.mjs) and
served by Playwright from the live daphne's own origin (`/__harness/…`, routed, never reaching
the server), so every API call is same-origin and authenticated with a Bearer key.

Two transports, both the SDK's own `DefaultChatTransport`:
- "stock": the plain fetch and only the request mapping a stock client needs (the API's
  `{message, client_message_id}` body; resume through `GET …/stream`);
- "copilot": the options of static/copilot/ai-sdk.js (`copilotTransportOptions`), whose only
  difference is `stop()`, which also cancels the server turn.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from chat.models import ChatMessage, TurnUsage
from tests.browser.conftest import CHROMIUM, screenshot, wait_until
from tests.chat.turns.helpers import Person, fake, person

# Sync Playwright keeps an event loop running in this thread; the tests' own ORM calls are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JS_DIR = Path(__file__).resolve().parents[1] / "js"
GENERATIONS = ["ai5", "ai6"]
TRANSPORTS = ["stock", "copilot"]
HARNESS = "/__harness"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>useChat harness</title></head>
<body><div id="root"></div><script type="module" src="{src}"></script></body></html>
"""
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The harness bundled once per SDK generation (skips without node or the npm packages)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the useChat browser tests need node 20+")
    for package in ("esbuild", "react", "react-dom", "ai5", "ai-react5", "ai6", "ai-react6"):
        if not (JS_DIR / "node_modules" / package).is_dir():
            pytest.skip(f"tests/js/node_modules/{package} is missing: run `make js-tests` (npm ci) to install it")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (make browser installs it)")
    out = tmp_path_factory.mktemp("harness")
    done = subprocess.run(
        [node, str(JS_DIR / "harness" / "build.mjs"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    versions = json.loads(done.stdout)
    assert versions == {"ai5": {"ai": "5.0.277", "react": "2.0.280"}, "ai6": {"ai": "6.0.325", "react": "3.0.328"}}
    return {name: (out / f"{name}.js").read_bytes() for name in GENERATIONS}


@dataclass
class Harness:
    """Opens the harness page in fresh browser contexts and records their page errors."""

    browser: Any
    base_url: str
    bundles: dict[str, bytes]
    contexts: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, p: Person, generation: str, transport: str, *, resume: bool = False, context: Any = None) -> Any:
        if context is None:
            context = self.browser.new_context(base_url=self.base_url)
            context.route(f"{self.base_url}{HARNESS}/**", self._fulfil)
            self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        query = f"session={p.session.id}&key={p.key}&transport={transport}&resume={int(resume)}"
        page.goto(f"{HARNESS}/{generation}.html?{query}")
        page.wait_for_function("() => window.__chat !== undefined || window.__bootError !== undefined")
        assert page.evaluate("window.__bootError ?? null") is None
        return page

    def _fulfil(self, route: Any) -> None:
        # A routed response is the test's own: no CSP, nothing from the server.
        name = route.request.url.split("?")[0].rsplit("/", 1)[-1]
        generation, _, ext = name.partition(".")
        if generation not in self.bundles:
            route.fulfill(status=404, body="not found")
        elif ext == "html":
            route.fulfill(status=200, content_type="text/html", body=PAGE.format(src=f"{HARNESS}/{generation}.js"))
        else:
            route.fulfill(status=200, content_type="text/javascript", body=self.bundles[generation])

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def harness(browser: Any, stack: str, bundles: dict[str, bytes]) -> Iterator[Harness]:
    made = Harness(browser, stack, bundles)
    yield made
    made.close()
    assert made.errors == [], f"uncaught errors in the page: {made.errors}"


# ---------------------------------------------------------------------------- helpers


def chat(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("window.__chat")
    return state


def wait_chat(page: Any, condition: str, timeout: float = WAIT_MS) -> dict[str, Any]:
    """Wait until `condition` (a JS expression over `c`, the chat state) holds; the state then."""
    page.wait_for_function(
        f"() => {{ const c = window.__chat; return c !== undefined && ({condition}); }}", timeout=timeout
    )
    return chat(page)


def settled(page: Any) -> dict[str, Any]:
    """The state once the chat is ready (or failed) with an assistant message after the last user one."""
    return wait_chat(page, "(c.status === 'ready' || c.status === 'error') && c.messages.at(-1)?.role === 'assistant'")


def send(page: Any, text: str) -> None:
    page.get_by_test_id("input").fill(text)
    page.get_by_test_id("send").click()


def parts(message: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A message's parts, each as a tuple of what the user sees."""
    out: list[tuple[Any, ...]] = []
    for part in message["parts"]:
        kind = part["type"]
        if kind in ("text", "reasoning"):
            out.append((kind, part["text"]))
        elif kind.startswith("tool-"):
            out.append((kind, part["state"], part.get("input"), part.get("output")))
        elif kind == "data-usage":
            out.append((kind,))  # token counts: the model's, not this test's
        elif kind.startswith("data-"):
            out.append((kind, part["data"]))
        else:
            out.append((kind,))
    return out


def shown(page: Any) -> list[tuple[str, str]]:
    """The rendered list: (role, text) of each message in the DOM (its text parts)."""
    found: list[tuple[str, str]] = page.eval_on_selector_all(
        "[data-testid=message]",
        """items => items.map(li => [li.dataset.role,
            [...li.querySelectorAll('[data-testid=part-text]')].map(s => s.textContent).join('')])""",
    )
    return [tuple(item) for item in found]  # type: ignore[misc]


def text_of(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def api(stack: str, p: Person, path: str = "") -> dict[str, Any]:
    response = httpx.get(f"{stack}/api/chat/sessions/{p.session.id}{path}", headers=p.headers, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def idle(stack: str, p: Person) -> bool:
    return api(stack, p)["active_turn"] is None


def turn_ids(p: Person) -> list[str]:
    return [
        str(t) for t in TurnUsage.objects.filter(session=p.session).order_by("id").values_list("turn_id", flat=True)
    ]


def outcomes(p: Person) -> list[str]:
    return list(TurnUsage.objects.filter(session=p.session).order_by("id").values_list("outcome", flat=True))


def requests(page: Any) -> list[tuple[str, str]]:
    return [
        (r["method"], r["url"].split("/api/chat/sessions/")[-1].split("/", 1)[-1])
        for r in page.evaluate("window.__requests")
    ]


def slow(text: str, *, chunk_size: int = 2, delay_ms: int = 40, **more: Any) -> dict[str, Any]:
    return {"text": text, "chunk_size": chunk_size, "delay_ms": delay_ms, **more}


CALC = {"name": "calculator", "arguments": {"expression": "2+3"}, "id": "call_calc"}

generations = pytest.mark.parametrize("generation", GENERATIONS)
transports = pytest.mark.parametrize("transport", TRANSPORTS)


# ---------------------------------------------------------------------------- tests


@generations
@transports
def test_a_plain_answer_streams_into_one_assistant_message(
    harness: Harness, stack: str, generation: str, transport: str
) -> None:
    # given
    alice = person("alice")
    page = harness.open(alice, generation, transport)
    message = "hello " + fake({"text": "Hello from the copilot.", "chunk_size": 4})
    # when
    send(page, message)
    state = settled(page)
    # then
    assert state["status"] == "ready" and state["error"] is None
    user, assistant = state["messages"]
    assert (user["role"], parts(user)) == ("user", [("text", message)])
    assert assistant["role"] == "assistant"
    assert parts(assistant) == [("step-start",), ("text", "Hello from the copilot."), ("data-usage",)]
    assert assistant["id"] == turn_ids(alice)[0]  # the `start` chunk's messageId is the turn id
    assert shown(page) == [("user", message), ("assistant", "Hello from the copilot.")]
    assert "streaming" in page.evaluate("window.__statuses")
    # the transcript agrees: the user message keeps the SDK's id, the assistant the turn's
    row = ChatMessage.objects.get(session=alice.session, role="user")
    assert row.client_message_id == user["id"]
    assert [m["id"] for m in api(stack, alice, "/ui-messages")["messages"]] == [user["id"], assistant["id"]]
    assert outcomes(alice) == ["completed"]
    assert requests(page) == [("POST", "stream")]
