"""The provider's SSE body parser (`_sse_json`) over awkward block boundaries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chat.engine.providers.openai_compat import _sse_json


class _Body:
    """Stands in for the SDK response: `.http_response.aiter_bytes()` yields these blocks."""

    def __init__(self, blocks: list[bytes]) -> None:
        self.http_response = self
        self.blocks = blocks

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for block in self.blocks:
            yield block


def _parse(blocks: list[bytes]) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [item async for item in _sse_json(_Body(blocks))]

    return asyncio.run(collect())


STREAM = (
    b'data: {"a":1}\r\n\r\n: keep-alive\r\n\r\nevent: x\r\ndata: {"b":\r\ndata: 2}\r\n\r\n'
    b'data: [DONE]\r\n\r\ndata: {"after":1}\r\n\r\n'
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(STREAM)])
def test_crlf_streams_parse_the_same_whatever_the_block_boundaries(size: int) -> None:
    blocks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert _parse(blocks) == [{"a": 1}, {"b": 2}]  # nothing after [DONE]


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending_the_format_allows(ending: bytes) -> None:
    body = ending.join([b'data: {"n":1}', b"", b'data: {"n":2}', b"", b""])
    assert _parse([body[:9], body[9:]]) == [{"n": 1}, {"n": 2}]


def test_a_cr_at_a_block_end_followed_by_lf_is_one_line_end_not_two() -> None:
    # one event of two data lines: a spurious blank line would split it in two
    assert _parse([b'data: {"x":\r', b"\ndata: 1}\r\n\r\n"]) == [{"x": 1}]


def test_unparseable_and_non_object_events_are_skipped_and_logged(caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        items = _parse([b'data: {oops\n\ndata: [1,2]\n\ndata: {"ok":true}\n\n'])
    assert items == [{"ok": True}]
    assert "Skipping an unparseable stream event: b'{oops'" in caplog.text


def test_a_last_event_without_its_blank_line_still_counts() -> None:
    assert _parse([b'data: {"a":1}\n\ndata: {"b":2}']) == [{"a": 1}, {"b": 2}]
