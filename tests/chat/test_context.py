"""Context building: orphan pruning, filtering, merging, follow-up blocks, snapshots, compaction."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chat.engine.context import (
    SnapshotState,
    compact_history,
    estimate_tokens,
    history_messages,
    load_snapshot_state,
    merge_consecutive,
    prune_orphan_tool_calls,
    rows_to_llm_messages,
    snapshot_on_branch,
    system_prompt,
)
from chat.engine.followups import PendingFollowUp, format_follow_up_block, turn_start_llm_text
from chat.models import STOPPED_TEXT, ChatMessage


def call(call_id: str, name: str = "calculator", arguments: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def user(content: str = "hi", sequence: int | None = None) -> ChatMessage:
    return ChatMessage(role="user", content=content, sequence=sequence)


def assistant(content: str = "", calls: list[dict[str, Any]] | None = None, sequence: int | None = None) -> ChatMessage:
    return ChatMessage(role="assistant", content=content, tool_calls=calls or [], sequence=sequence)


def tool(call_id: str, content: str = "out", sequence: int | None = None) -> ChatMessage:
    return ChatMessage(role="tool", content=content, tool_call_id=call_id, sequence=sequence)


def marker() -> ChatMessage:
    return ChatMessage(role="assistant", content=STOPPED_TEXT, kind=ChatMessage.Kind.STOPPED)


# ---------------------------------------------------------------- pruning


@pytest.mark.parametrize(
    ("_case", "messages", "removed"),
    [
        ("unanswered call", [user(), assistant(calls=[call("a")])], 1),
        ("unanswered call and stop marker", [user(), assistant(calls=[call("a")]), marker()], 2),
        ("partly answered", [user(), assistant(calls=[call("a"), call("b")]), tool("a")], 2),
        ("resolved tail", [user(), assistant(calls=[call("a")]), tool("a")], 0),
        ("resolved tail with marker", [user(), assistant(calls=[call("a")]), tool("a"), marker()], 1),
        ("plain text tail", [user(), assistant("hello")], 0),
        ("empty", [], 0),
    ],
)
def test_prune_orphan_tool_calls(_case: str, messages: list[ChatMessage], removed: int) -> None:
    # given
    before = list(messages)
    # when
    count = prune_orphan_tool_calls(messages)
    # then
    assert count == removed
    assert messages == before[: len(before) - removed]


def test_prune_logs_dropped_rows_with_a_prefix(caplog: pytest.LogCaptureFixture) -> None:
    # given
    messages = [user(), assistant(calls=[call("a")]), marker()]
    # when
    with caplog.at_level(logging.INFO):
        prune_orphan_tool_calls(messages, log_prefix="[s1]")
        prune_orphan_tool_calls([user(), assistant(calls=[call("b")])])
    # then
    assert caplog.messages == ["[s1] Dropped 2 trailing orphan tool-use/stop row(s) before starting new turn"]


# ---------------------------------------------------------------- filtering and merging


def test_filtering_drops_reasoning_notices_and_unresolved_calls_anywhere() -> None:
    # given
    rows = [
        user("q1"),
        ChatMessage(role="reasoning", content="secret"),
        assistant("Let me check", calls=[call("a"), call("orphan")]),
        tool("a", "A"),
        tool("stray", "not answering anything"),
        assistant("", calls=[call("b")]),  # never answered: the row disappears
        marker(),
        ChatMessage(role="assistant", content="boom", kind=ChatMessage.Kind.ERROR_NOTICE),
        ChatMessage(role="system", content="not for the model"),
        user("q2"),
    ]
    # when
    messages = rows_to_llm_messages(rows)
    # then
    assert messages == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "Let me check", "tool_calls": [call("a")]},
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "user", "content": "q2"},
    ]


def test_tool_calls_missing_an_id_or_name_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # given
    rows = [
        user("q"),
        assistant(
            "text",
            calls=[
                {"id": "", "type": "function", "function": {"name": "calculator", "arguments": "{}"}},
                {"id": "x", "type": "function", "function": {"name": "", "arguments": "{}"}},
                call("ok"),
            ],
        ),
        tool("ok"),
        tool("x"),
    ]
    # when
    with caplog.at_level(logging.WARNING):
        messages = rows_to_llm_messages(rows)
    # then
    assert messages[1] == {"role": "assistant", "content": "text", "tool_calls": [call("ok")]}
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert caplog.text.count("Dropping malformed tool call") == 2


def test_consecutive_assistant_and_user_messages_are_merged() -> None:
    # given
    messages = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "first", "tool_calls": [call("1")]},
        {"role": "assistant", "content": "second", "tool_calls": [call("2")]},
        {"role": "tool", "tool_call_id": "1", "content": "x"},
        {"role": "tool", "tool_call_id": "2", "content": "y"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "last"},
    ]
    # when
    merged = merge_consecutive(messages)
    # then
    assert merged == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "first\nsecond", "tool_calls": [call("1"), call("2")]},
        {"role": "tool", "tool_call_id": "1", "content": "x"},
        {"role": "tool", "tool_call_id": "2", "content": "y"},
        {"role": "assistant", "content": "last"},
    ]
    assert messages[0] == {"role": "user", "content": "a"}  # inputs untouched


def test_system_prompt_carries_the_follow_up_note_and_no_tool_docs() -> None:
    prompt = system_prompt()
    assert "<user_follow_up>" in prompt
    assert "Every turn must end with at least one short user-facing sentence." in prompt
    assert "web_fetch" not in prompt
    assert "calculator" not in prompt


# ---------------------------------------------------------------- follow-ups


def test_ten_follow_ups_of_2000_chars_stay_under_8000() -> None:
    # when
    block = format_follow_up_block([PendingFollowUp(content="a" * 2000) for _ in range(10)])
    # then
    assert len(block) < 8000
    assert block.endswith("… [8 more message(s) truncated]\n</user_follow_up>")


def test_long_follow_ups_are_cut_and_counted() -> None:
    # when
    block = format_follow_up_block([PendingFollowUp(content="b" * 3000) for _ in range(5)])
    # then
    assert "b" * 2000 + "… [truncated]" in block
    assert "b" * 2001 not in block
    assert "[3 more message(s) truncated]" in block


def test_follow_up_block_format() -> None:
    # when
    block = format_follow_up_block(
        [
            PendingFollowUp(content="first", context={"url": "https://example.com/x", "content": "ignored here"}),
            PendingFollowUp(content="second", file_ids=("f1", "f2")),
        ]
    )
    # then
    assert block == (
        "<user_follow_up>\n"
        "The user sent the following message(s) while this tool was running. Treat them as a continuation of their "
        "current request — acknowledge and act on them in your next response. Do not echo these tags back.\n\n"
        "Message 1:\nfirst\n[Page URL: https://example.com/x]\n\n"
        "Message 2:\nsecond\n[Attached files: f1, f2]\n"
        "</user_follow_up>"
    )


def test_turn_start_follow_up_text() -> None:
    # The files' note comes from the row's file_ids, like any user row's (tests/chat/files).
    message = PendingFollowUp(content="hi", file_ids=("f1",), context={"url": "https://example.com", "content": "Body"})
    assert turn_start_llm_text(message) == "hi\n\n[Page URL: https://example.com]\n\n[Page content]\nBody"


# ---------------------------------------------------------------- snapshot + gap


def numbered(rows: list[ChatMessage]) -> list[ChatMessage]:
    for sequence, row in enumerate(rows):
        row.sequence = sequence
    return rows


SNAPSHOT = [
    {"role": "user", "content": "<conversation_summary>\nS\n</conversation_summary>", "is_compact_summary": True}
]


def test_no_snapshot_means_all_prior_rows() -> None:
    prior = numbered([user("a"), assistant("b")])
    state = load_snapshot_state(None, 0, total_prior=2, load_failed=False)
    assert (state.messages, state.may_write) == (None, True)
    assert history_messages(prior, state) == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]


def test_snapshot_plus_the_gap_after_its_watermark() -> None:
    prior = numbered([user("a"), assistant("b"), user("c"), assistant("d")])
    state = load_snapshot_state(SNAPSHOT, 2, total_prior=4, load_failed=False)
    assert history_messages(prior, state) == [
        SNAPSHOT[0],
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]


def test_a_misaligned_watermark_adds_no_gap(caplog: pytest.LogCaptureFixture) -> None:
    prior = numbered([user("a"), assistant("b"), user("c"), assistant("d")])
    state = load_snapshot_state(SNAPSHOT, 3, total_prior=4, load_failed=False)
    with caplog.at_level(logging.WARNING):
        assert history_messages(prior, state) == SNAPSHOT
    assert "misaligned" in caplog.text


@pytest.mark.parametrize(
    ("_case", "raw", "watermark", "failed", "may_write"),
    [
        ("stale watermark", SNAPSHOT, 9, False, False),
        ("load error", None, 0, True, False),
        ("corrupt", [{"no": "role"}], 2, False, True),
        ("empty", [], 2, False, True),
    ],
)
def test_unusable_snapshots(_case: str, raw: Any, watermark: int, failed: bool, may_write: bool) -> None:
    state = load_snapshot_state(raw, watermark, total_prior=4, load_failed=failed)
    assert state.messages is None
    assert state.may_write is may_write


def test_snapshot_state_default_allows_writing() -> None:
    assert SnapshotState().may_write is True


def at(rows: list[ChatMessage], sequences: list[int]) -> list[ChatMessage]:
    for row, sequence in zip(rows, sequences, strict=True):
        row.sequence = sequence
    return rows


@pytest.mark.parametrize(
    ("_case", "branch", "watermark", "last", "usable"),
    [
        # the snapshot was made on this branch: its last covered row is the branch's last below the watermark
        ("same branch", [0, 1, 2, 3], 2, 1, True),
        # edited at row 2 (a new version, sequence 6), after a snapshot that covered rows 0-4 of the old branch
        ("other branch", [0, 1, 6, 7], 5, 4, False),
        # an older version of a row below the watermark: the row the snapshot covered is not on this branch
        ("older version", [0, 1, 2, 5, 6], 5, 4, False),
        # a snapshot written before the tree: usable while every row below the watermark is on the branch
        ("legacy, linear", [0, 1, 2, 3], 2, None, True),
        ("legacy, branched", [0, 1, 6, 7], 4, None, False),
    ],
)
def test_a_snapshot_stands_only_for_the_branch_it_was_made_on(
    _case: str, branch: list[int], watermark: int, last: int | None, usable: bool
) -> None:
    prior = at([user(str(s)) if i % 2 == 0 else assistant(str(s)) for i, s in enumerate(branch)], branch)
    assert snapshot_on_branch(prior, watermark, last) is usable


# ---------------------------------------------------------------- compaction


def history(pairs: int, words: int = 100) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(pairs):
        out.append({"role": "user", "content": f"q{i} " + "word " * words})
        out.append({"role": "assistant", "content": f"a{i}"})
    return out


@pytest.mark.asyncio
async def test_history_under_budget_is_left_alone() -> None:
    assert await compact_history(history(2), fixed_tokens=0, budget=10_000, model="", summarize=None) is None


@pytest.mark.asyncio
async def test_summary_keeps_the_last_six_messages_verbatim(caplog: pytest.LogCaptureFixture) -> None:
    # given
    seen: list[list[dict[str, Any]]] = []

    async def summarize(older: list[dict[str, Any]]) -> str:
        seen.append(older)
        return "the gist"

    messages = history(10)
    # when
    with caplog.at_level(logging.INFO):
        result = await compact_history(messages, fixed_tokens=100, budget=1000, model="", summarize=summarize)
    # then
    assert result is not None
    assert result.messages[0] == {
        "role": "user",
        "content": "<conversation_summary>\nthe gist\n</conversation_summary>",
        "is_compact_summary": True,
    }
    assert result.messages[1:] == messages[-6:]
    assert seen == [messages[:-6]]
    assert (result.summarized, result.dropped, result.used_summary) == (14, 0, True)
    assert result.after_tokens <= 1000 < result.before_tokens
    assert f"Context compacted: {result.before_tokens} -> {result.after_tokens} tokens (14 summarized, 0 dropped)" in (
        caplog.text
    )


@pytest.mark.asyncio
async def test_the_verbatim_tail_never_starts_with_a_tool_result() -> None:
    # given: the 6th message from the end is a tool result
    messages = [
        *history(5),
        {"role": "assistant", "content": "", "tool_calls": [call("t1")]},
        {"role": "tool", "tool_call_id": "t1", "content": "r " * 300},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "y"},
        {"role": "assistant", "content": "z"},
        {"role": "user", "content": "w"},
        {"role": "assistant", "content": "v"},
    ]

    async def summarize(older: list[dict[str, Any]]) -> str:
        return "s"

    # when
    result = await compact_history(messages, fixed_tokens=0, budget=600, model="", summarize=summarize)
    # then
    assert result is not None
    assert result.messages[1] == {"role": "assistant", "content": "", "tool_calls": [call("t1")]}
    assert result.messages[2]["role"] == "tool"


@pytest.mark.asyncio
async def test_without_a_summary_truncation_then_middle_out() -> None:
    # given
    async def failing(older: list[dict[str, Any]]) -> str:
        raise RuntimeError("no")

    messages = history(30, words=400)
    # when
    result = await compact_history(messages, fixed_tokens=0, budget=800, model="", summarize=failing)
    # then
    assert result is not None
    assert result.used_summary is False
    assert result.dropped > 0
    assert result.after_tokens <= 800
    assert result.messages[-1] == messages[-1]
    assert result.messages[0]["content"].endswith("… [truncated]")


def test_token_estimates_use_tiktoken_offline() -> None:
    assert estimate_tokens([{"role": "user", "content": "hello world"}]) == 3 + 4 + 2


def test_follow_ups_of_another_shape_are_read_duck_typed() -> None:
    # given: the transport's pending type has content and context, no file_ids
    from dataclasses import dataclass

    @dataclass
    class Queued:
        content: str
        context: dict[str, str] | None = None
        client_message_id: str | None = None

    queued = Queued(content="hello", context={"url": "https://example.com/q"})
    # then
    assert "Message 1:\nhello\n[Page URL: https://example.com/q]\n</user_follow_up>" in format_follow_up_block([queued])
    assert turn_start_llm_text(queued) == "hello\n\n[Page URL: https://example.com/q]"
