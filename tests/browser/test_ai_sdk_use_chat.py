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

Each case runs for both generations; with both transports, except the tool call and reasoning
(parsing only: the shipped transport's fetch wrapper is covered by the other cases). The chats
have a title, so no title job runs the script again on the worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from chat.models import ChatMessage, TurnUsage
from tests.browser.conftest import CHROMIUM, wait_until
from tests.chat.turns.helpers import Person, fake
from tests.chat.turns.helpers import person as make_person

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
    """Wait until `condition` (a JS expression over `c`, the chat state) holds; the state then.
    On time-out the assertion shows what the page had instead."""
    try:
        page.wait_for_function(
            f"() => {{ const c = window.__chat; return c !== undefined && ({condition}); }}", timeout=timeout
        )
    except PlaywrightTimeoutError:
        seen = page.evaluate("({chat: window.__chat, statuses: window.__statuses, errors: window.__errors})")
        raise AssertionError(f"not within {timeout / 1000}s: {condition}\n{json.dumps(seen, indent=1)}") from None
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


def person(username: str) -> Person:
    """A user with an API key and a chat that already has a title: no title job (which would
    run the same script on the scripted LLM) keeps the worker busy after the test."""
    made = make_person(username)
    made.session.title = "useChat"
    made.session.save(update_fields=["title"])
    return made


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
    assert page.evaluate("window.__statuses") == ["ready", "submitted", "streaming", "ready"]
    # the transcript agrees: the user message keeps the SDK's id, the assistant the turn's
    row = ChatMessage.objects.get(session=alice.session, role="user")
    assert row.client_message_id == user["id"]
    assert [m["id"] for m in api(stack, alice, "/ui-messages")["messages"]] == [user["id"], assistant["id"]]
    assert outcomes(alice) == ["completed"]
    assert requests(page) == [("POST", "stream")]


@generations
def test_a_tool_call_is_one_tool_part_with_its_output(harness: Harness, stack: str, generation: str) -> None:
    # given
    alice = person("alice")
    page = harness.open(alice, generation, "stock")
    # when
    send(page, "add " + fake({"tool_calls": [CALC]}, {"text": "It is 5."}))
    state = settled(page)
    # then
    assert state["status"] == "ready" and state["error"] is None
    assistant = state["messages"][1]
    tool = next(p for p in assistant["parts"] if p["type"] == "tool-calculator")
    assert parts(assistant) == [
        ("step-start",),
        ("tool-calculator", "output-available", {"expression": "2+3"}, tool["output"]),
        ("step-start",),
        ("text", "It is 5."),
        ("data-usage",),
    ]
    assert tool["toolCallId"] == "call_calc"
    assert page.get_by_test_id("part-tool").count() == 1
    expect(page.get_by_test_id("part-tool")).to_have_attribute("data-state", "output-available")
    saved = [m for m in api(stack, alice, "/ui-messages")["messages"] if m["role"] == "assistant"]
    keys = ("type", "toolCallId", "state", "input", "output")
    saved_tools = [p for p in saved[0]["parts"] if p["type"] == "tool-calculator"]
    assert [{k: p[k] for k in keys} for p in saved_tools] == [{k: tool[k] for k in keys}]
    assert tool["output"] == {"expression": "2+3", "result": 5}


@generations
def test_reasoning_is_a_reasoning_part_before_the_text(harness: Harness, stack: str, generation: str) -> None:
    # given
    alice = person("alice")
    page = harness.open(alice, generation, "stock")
    # when
    send(page, "think " + fake({"reasoning": "Let me think it over.", "text": "Done thinking.", "chunk_size": 5}))
    state = settled(page)
    # then
    assert state["status"] == "ready" and state["error"] is None
    assert parts(state["messages"][1]) == [
        ("step-start",),
        ("reasoning", "Let me think it over."),
        ("text", "Done thinking."),
        ("data-usage",),
    ]
    expect(page.get_by_test_id("part-reasoning")).to_have_text("Let me think it over.")


@generations
@transports
def test_an_upstream_error_shows_the_plain_error_text(
    harness: Harness, stack: str, generation: str, transport: str
) -> None:
    # given: the provider drops the connection after two chunks
    alice = person("alice")
    page = harness.open(alice, generation, transport)
    script = {"text": "partial answer", "chunk_size": 4, "error_after_chunks": 2, "error_mode": "disconnect"}
    # when
    send(page, "fail " + fake(script))
    state = wait_chat(page, "c.status === 'error'")
    # then
    sentence = "The model provider closed the connection before finishing. Try again."
    assert state["error"] == sentence
    assert page.evaluate("window.__statuses") == ["ready", "submitted", "streaming", "error"]
    expect(page.get_by_test_id("error")).to_have_text(sentence)
    assistant = state["messages"][1]
    assert [p for p in parts(assistant) if p[0] != "data-usage"] == [
        ("step-start",),
        ("text", "partial "),
        ("data-error", {"code": "provider_disconnected"}),
    ]
    assert outcomes(alice) == ["failed"]
    notice = [m for m in api(stack, alice)["messages"] if m["kind"] == "error_notice"]
    assert [m["content"] for m in notice] == [sentence]


@generations
@transports
def test_a_reload_mid_stream_resumes_the_answer_once(
    harness: Harness, stack: str, generation: str, transport: str
) -> None:
    # given: a slow answer, streaming
    alice = person("alice")
    page = harness.open(alice, generation, transport, resume=True)
    full = "".join(f"w{i} " for i in range(30))
    message = "go " + fake(slow(full, chunk_size=3))
    send(page, message)
    before = wait_chat(page, "c.messages.length === 2 && c.messages[1].parts.some(p => p.type === 'text')")
    # when: the page reloads while the turn runs (useChat({messages: ui-messages, resume: true}))
    page.reload()
    page.wait_for_function("() => window.__chat !== undefined")
    initial = page.evaluate("window.__initialMessages")
    state = settled(page)
    # then: the transcript had the user message only; the resume replayed the answer whole, once
    assert [(m["role"], m["id"]) for m in initial] == [("user", before["messages"][0]["id"])]
    assert [(m["role"], m["id"]) for m in state["messages"]] == [
        ("user", before["messages"][0]["id"]),
        ("assistant", before["messages"][1]["id"]),
    ]
    assert text_of(state["messages"][1]) == full
    assert page.evaluate("window.__statuses") == ["ready", "submitted", "streaming", "ready"]  # the resume
    assert page.evaluate("window.__errors") == []
    assert shown(page) == [("user", message), ("assistant", full)]
    assert outcomes(alice) == ["completed"]


@generations
@transports
def test_a_reload_after_a_persisted_tool_round_shows_one_message_and_one_tool_part(
    harness: Harness, stack: str, generation: str, transport: str
) -> None:
    # given: a tool round (persisted), then a slow answer
    alice = person("alice")
    page = harness.open(alice, generation, transport, resume=True)
    full = "".join(f"t{i} " for i in range(30))
    message = "calc " + fake({"tool_calls": [CALC]}, slow(full, chunk_size=3))
    send(page, message)
    wait_chat(page, "c.messages[1]?.parts.some(p => p.type === 'tool-calculator' && p.state === 'output-available')")
    wait_until(lambda: ChatMessage.objects.filter(session=alice.session, role="tool").exists(), timeout=10)
    assert not idle(stack, alice)
    # when: reloaded mid-turn, and once more after the turn
    page.reload()
    mid = settled(page)
    page.reload()
    page.wait_for_function("() => window.__chat !== undefined")
    after = wait_chat(page, "c.status === 'ready' && c.messages.length === 2")
    # then: one assistant message, one tool part, the whole answer, each time
    for state in (mid, after):
        assert [m["role"] for m in state["messages"]] == ["user", "assistant"]
        assistant = state["messages"][1]
        assert assistant["id"] == turn_ids(alice)[0]
        assert [p[:2] for p in parts(assistant) if p[0].startswith("tool-")] == [
            ("tool-calculator", "output-available")
        ]
        assert text_of(assistant) == full
    assert page.get_by_test_id("part-tool").count() == 1
    assert shown(page) == [("user", message), ("assistant", full)]
    assert requests(page) == [("GET", "stream")]  # the last load: the resume found no turn (204)


@generations
@transports
def test_a_second_tab_follows_the_same_turn(harness: Harness, stack: str, generation: str, transport: str) -> None:
    # given: a slow answer streaming in one tab
    alice = person("alice")
    first = harness.open(alice, generation, transport)
    full = "".join(f"s{i} " for i in range(30))
    message = "go " + fake(slow(full, chunk_size=3))
    send(first, message)
    wait_chat(first, "c.messages[1]?.parts.some(p => p.type === 'text')")
    # when: a second tab of the same chat opens (ui-messages, then resume)
    second = harness.open(alice, generation, transport, resume=True, context=first.context)
    wait_chat(second, "c.status === 'streaming'")
    one, two = settled(first), settled(second)
    # then: both show the same two messages, the answer whole and once
    assert [(m["role"], m["id"], text_of(m)) for m in two["messages"]] == [
        (m["role"], m["id"], text_of(m)) for m in one["messages"]
    ]
    assert text_of(two["messages"][1]) == full
    assert second.evaluate("window.__statuses") == ["ready", "submitted", "streaming", "ready"]
    assert shown(second) == shown(first) == [("user", message), ("assistant", full)]
    assert outcomes(alice) == ["completed"]


@generations
@transports
def test_a_follow_up_during_a_turn_is_answered_live(
    harness: Harness, stack: str, generation: str, transport: str
) -> None:
    # given: a slow first answer, streaming
    alice = person("alice")
    page = harness.open(alice, generation, transport)
    first_text = "".join(f"a{i} " for i in range(30))
    first = "go " + fake(slow(first_text, chunk_size=3))
    send(page, first)
    wait_chat(page, "c.messages[1]?.parts.some(p => p.type === 'text')")
    # when: a follow-up is sent while it streams
    follow_up = "and then " + fake({"text": "The follow-up answer.", "chunk_size": 4})
    send(page, follow_up)
    state = wait_chat(
        page,
        "c.status === 'ready' && c.messages.length === 4 && c.messages[3].parts.some(p => p.type === 'text')",
    )
    # then: the chat stayed `streaming` from the first send to the follow-up's answer
    assert page.evaluate("window.__statuses") == ["ready", "submitted", "streaming", "submitted", "streaming", "ready"]
    assert page.evaluate("window.__errors") == []
    messages = state["messages"]
    assert [(m["role"], text_of(m)) for m in messages] == [
        ("user", first),
        ("assistant", first_text),
        ("user", follow_up),
        ("assistant", "The follow-up answer."),
    ]
    assert [messages[1]["id"], messages[3]["id"]] == turn_ids(alice)  # each turn's own message, once
    assert parts(messages[3]) == [
        ("data-queued", {"position": 1, "client_message_id": messages[2]["id"]}),
        ("step-start",),
        ("text", "The follow-up answer."),
        ("data-usage",),
    ]
    assert shown(page) == [(m["role"], text_of(m)) for m in messages]
    assert outcomes(alice) == ["completed", "completed"]
    assert requests(page) == [("POST", "stream"), ("POST", "stream")]
    saved = api(stack, alice, "/ui-messages")["messages"]
    assert [(m["role"], m["id"]) for m in saved] == [(m["role"], m["id"]) for m in messages]


@generations
def test_stop_with_the_shipped_transport_ends_the_server_turn_within_five_seconds(
    harness: Harness, stack: str, generation: str
) -> None:
    # given: a slow answer (200 deltas of 40 ms: 8 s when left to run), streaming
    alice = person("alice")
    page = harness.open(alice, generation, "copilot")
    full = "b" * 400
    send(page, "slow " + fake(slow(full)))
    wait_chat(page, "c.messages[1]?.parts.some(p => p.type === 'text')")
    # when
    page.get_by_test_id("stop").click()
    stopped_at = time.monotonic()
    # then: the server turn ends, seen through the API: no running turn, a stopped row
    wait_until(lambda: idle(stack, alice) and any(m["kind"] == "stopped" for m in api(stack, alice)["messages"]))
    assert time.monotonic() - stopped_at < 5
    state = wait_chat(page, "c.status === 'ready'")
    assert state["error"] is None
    rows = [(m["role"], m["kind"]) for m in api(stack, alice)["messages"]]
    assert rows == [("user", "message"), ("assistant", "message"), ("assistant", "stopped")]
    assert outcomes(alice) == ["cancelled"]
    assert requests(page) == [("POST", "stream"), ("POST", "cancel")]
    saved = api(stack, alice, "/ui-messages")["messages"][1]
    assert [p for p in saved["parts"] if p["type"] == "data-stopped"] == [
        {"type": "data-stopped", "data": {"text": "Stopped"}}
    ]
    assert len(text_of(state["messages"][1])) < len(full)


@generations
def test_stop_with_the_stock_transport_only_aborts_and_the_turn_runs_to_its_end(
    harness: Harness, stack: str, generation: str
) -> None:
    # given: a slow answer, streaming (documented: a client that only aborts leaves the turn running)
    alice = person("alice")
    page = harness.open(alice, generation, "stock")
    full = "c" * 60
    send(page, "slow " + fake(slow(full)))
    wait_chat(page, "c.messages[1]?.parts.some(p => p.type === 'text')")
    # when
    page.get_by_test_id("stop").click()
    state = wait_chat(page, "c.status === 'ready'")
    # then: the page stopped reading; the server turn ran to its end and saved the whole answer
    wait_until(lambda: idle(stack, alice))
    assert state["error"] is None
    assert len(text_of(state["messages"][1])) < len(full)
    assert outcomes(alice) == ["completed"]
    assert [(m["role"], m["kind"], m["content"]) for m in api(stack, alice)["messages"]][1:] == [
        ("assistant", "message", full)
    ]
    assert requests(page) == [("POST", "stream")]  # no cancel


@generations
def test_stop_after_a_follow_up_still_ends_the_server_turn(harness: Harness, stack: str, generation: str) -> None:
    # given: a slow answer, and a follow-up sent while it streams (useChat's latest request is
    # now the follow-up's, so that is the one `stop()` aborts)
    alice = person("alice")
    page = harness.open(alice, generation, "copilot")
    send(page, "slow " + fake(slow("e" * 400)))
    wait_chat(page, "c.messages[1]?.parts.some(p => p.type === 'text')")
    send(page, "and then " + fake({"text": "Never sent."}))
    wait_chat(page, "c.messages.length === 4 && c.messages[3].parts.some(p => p.type === 'data-queued')")
    # when
    page.get_by_test_id("stop").click()
    stopped_at = time.monotonic()
    # then: the running turn ends on the server within 5 s; the page is ready, with no error
    wait_until(lambda: idle(stack, alice) and any(m["kind"] == "stopped" for m in api(stack, alice)["messages"]))
    assert time.monotonic() - stopped_at < 5
    state = wait_chat(page, "c.status === 'ready'")
    assert state["error"] is None and page.evaluate("window.__errors") == []
    assert outcomes(alice) == ["cancelled"]  # no turn was started for the follow-up after the stop
    assert requests(page) == [("POST", "stream"), ("POST", "stream"), ("POST", "cancel")]
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "user", "assistant"]
    assert [p[0] for p in parts(state["messages"][3])] == ["data-queued"]  # nothing answered it


@generations
def test_a_follow_up_the_running_turn_takes_is_answered_on_the_first_stream(
    harness: Harness, stack: str, slow_http: str, generation: str
) -> None:
    # given: a turn busy in a slow tool (3 s), with a second round to come
    alice = person("alice")
    page = harness.open(alice, generation, "stock")
    first = "fetch " + fake(
        {"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]}, {"text": "all done"}
    )
    send(page, first)
    wait_chat(page, "c.messages[1]?.parts.some(p => p.type === 'tool-web_fetch')")
    # when: a follow-up, which the turn takes at its next round
    send(page, "also check the title")
    state = wait_chat(page, "c.status === 'ready' && c.messages.length === 4")
    # then: the answer streamed into the turn's own message (its first stream), once; the
    # follow-up's message only acknowledges it; the chat stayed `streaming` throughout
    assert page.evaluate("window.__statuses") == ["ready", "submitted", "streaming", "submitted", "streaming", "ready"]
    user, turn, follow_up, ack = state["messages"]
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "user", "assistant"]
    assert text_of(turn) == "all done"
    drained = [p for p in parts(turn) if p[0] == "data-pending-drained"]
    assert len(drained) == 1
    assert [p[:2] for p in parts(turn) if p[0].startswith("tool-")] == [("tool-web_fetch", "output-available")]
    assert parts(ack) == [("data-queued", {"position": 1, "client_message_id": follow_up["id"]})]
    assert outcomes(alice) == ["completed"]
    assert shown(page) == [
        ("user", first),
        ("assistant", "all done"),
        ("user", "also check the title"),
        ("assistant", ""),
    ]
