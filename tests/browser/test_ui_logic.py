"""The chat page's pure logic (static/chat/*.js), run as real ES modules in Chromium.

Empty user rows are bubbles, where a promoted follow-up goes, stripReplayPrefix (a
resumed stream's already-shown prefix is dropped), plus the markdown sanitiser on its own.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.browser.conftest import Pages
from tests.factories import UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(pages: Pages) -> Any:
    page = pages.open("/copilot", UserFactory(username="alice"))
    page.wait_for_function("() => window.copilotChat !== undefined")
    return page


def run(page: Any, module: str, body: str, arg: Any = None) -> Any:
    """Evaluate `body` (an async function body with `m` = the module and `arg`) in the page."""
    return page.evaluate(
        f"async (arg) => {{ const m = await import('/static/chat/{module}'); {body} }}",
        arg,
    )


def test_strip_replay_prefix_drops_seen_events_strips_a_partly_seen_text_and_passes_new_ones(page: Any) -> None:
    # given: the page shows a reasoning block, a finished tool call and the start of the answer
    shown = [
        {"kind": "reasoning", "text": "Let me look."},
        {"kind": "tool", "id": "call_1", "name": "get_current_time", "input": {}, "output": "{}", "state": "done"},
        {"kind": "text", "text": "It is no"},
    ]
    replay = [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r1"},
        {"type": "reasoning-delta", "id": "r1", "delta": "Let me "},
        {"type": "reasoning-delta", "id": "r1", "delta": "look."},
        {"type": "reasoning-end", "id": "r1"},
        {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "get_current_time"},
        {"type": "tool-input-available", "toolCallId": "call_1", "toolName": "get_current_time", "input": {}},
        {"type": "tool-output-available", "toolCallId": "call_1", "output": {}},
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": "It is "},
        {"type": "text-delta", "id": "t1", "delta": "noon now"},
        {"type": "text-delta", "id": "t1", "delta": "."},
        {"type": "text-end", "id": "t1"},
        {"type": "finish"},
    ]
    # when
    result = run(
        page, "replay.js", "return m.stripReplayPrefix(arg.shown, arg.replay);", {"shown": shown, "replay": replay}
    )
    # then
    assert result == [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "text-delta", "id": "t1", "delta": "on now"},
        {"type": "text-delta", "id": "t1", "delta": "."},
        {"type": "text-end", "id": "t1"},
        {"type": "finish"},
    ]


def test_strip_replay_prefix_passes_everything_when_nothing_is_shown(page: Any) -> None:
    replay = [
        {"type": "start", "messageId": "m"},
        {"type": "text-start", "id": "t"},
        {"type": "text-delta", "id": "t", "delta": "x"},
    ]
    assert run(page, "replay.js", "return m.stripReplayPrefix([], arg);", replay) == replay


def test_replayed_partial_text_continues_the_shown_part_when_applied(page: Any) -> None:
    # given: a bubble already showing "Hel" of a text block
    result = run(
        page,
        "model.js",
        """
        const r = await import('/static/chat/replay.js');
        const bubble = { parts: [{ kind: 'text', id: 't-db', text: 'Hel', done: true }], live: true };
        const filter = r.createReplayFilter(bubble.parts);
        for (const chunk of arg) { const c = filter(chunk); if (c) m.applyChunk(bubble, c); }
        return bubble.parts.map(p => [p.kind, p.text, p.done]);
        """,
        [
            {"type": "text-start", "id": "t"},
            {"type": "text-delta", "id": "t", "delta": "He"},
            {"type": "text-delta", "id": "t", "delta": "llo"},
            {"type": "text-delta", "id": "t", "delta": " world"},
            {"type": "text-end", "id": "t"},
        ],
    )
    assert result == [["text", "Hello world", True]]


def test_a_promoted_follow_up_goes_before_a_trailing_assistant_and_after_a_trailing_user(page: Any) -> None:
    result = run(
        page,
        "model.js",
        """
        const bubble = { key: 'p', role: 'user', text: 'follow-up' };
        const keys = (list) => list.map(b => b.key);
        return [
          keys(m.insertPromoted([{ key: 'u1', role: 'user' }, { key: 'a1', role: 'assistant' }], bubble)),
          keys(m.insertPromoted([{ key: 'a0', role: 'assistant' }, { key: 'u1', role: 'user' }], bubble)),
          keys(m.insertPromoted([], bubble)),
        ];
        """,
    )
    assert result == [["u1", "p", "a1"], ["a0", "u1", "p"], ["p"]]


def test_rows_become_bubbles_with_empty_user_rows_kept(page: Any) -> None:
    rows = [
        {"sequence": 0, "role": "user", "content": "", "created_at": "2026-01-01T00:00:00Z"},
        {"sequence": 1, "role": "reasoning", "content": "  ", "created_at": "2026-01-01T00:00:01Z"},
        {"sequence": 2, "role": "reasoning", "content": "thinking", "created_at": "2026-01-01T00:00:01Z"},
        {"sequence": 3, "role": "assistant", "content": "calling", "created_at": "2026-01-01T00:00:02Z",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "calculator", "arguments": "{\"expression\": \"1+1\"}"}}]},
        {"sequence": 4, "role": "tool", "content": "{\"result\": 2}", "tool_call_id": "c1", "name": "calculator",
         "created_at": "2026-01-01T00:00:02Z"},
        {"sequence": 5, "role": "assistant", "kind": "stopped", "content": "Stopped",
         "created_at": "2026-01-01T00:00:04Z"},
        {"sequence": 6, "role": "user", "content": None, "created_at": "2026-01-01T00:00:05Z"},
    ]  # fmt: skip
    result = run(
        page,
        "model.js",
        """
        const part = (p) => p.kind === 'tool' ? [p.kind, p.name, p.state, p.input] : [p.kind, p.text];
        return m.rowsToBubbles(arg).map(b => b.role === 'user'
          ? ['user', b.text]
          : ['assistant', b.durationMs, b.parts.map(part)]);
        """,
        rows,
    )
    assert result == [
        ["user", ""],
        [
            "assistant",
            4000,
            [
                ["reasoning", "thinking"],
                ["text", "calling"],
                ["tool", "calculator", "done", {"expression": "1+1"}],
                ["notice", "Stopped"],
            ],
        ],
        ["user", ""],
    ]


def test_markdown_keeps_formatting_and_drops_anything_executable(page: Any) -> None:
    html = page.evaluate(
        """async () => {
          const m = await import('/static/chat/markdown.js');
          const box = document.createElement('div');
          box.append(m.renderMarkdown(
            '**b** <b onmouseover=x>raw</b> [a](https://example.com) [j](javascript:alert(1)) ' +
            '[m](mailto:a@example.com) [r](/relative) ![i](https://example.com/x.png)\\n\\n- [x] done'));
          return box.innerHTML;
        }"""
    )
    assert "<strong>b</strong>" in html
    assert "&lt;b onmouseover=x&gt;raw&lt;/b&gt;" in html
    assert 'href="https://example.com"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert 'href="mailto:a@example.com"' in html
    assert "javascript" not in html and "/relative" not in html
    assert "<img" not in html and 'href="https://example.com/x.png"' in html
    assert "<li>☑ done</li>" in html
