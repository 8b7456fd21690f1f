"""Direct WebSocket text frames (the `ws_frame` transport patch): byte for byte what a
WebSocket implementation (the `websockets` package) serializes, at each length encoding."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from copilot_site.core.transport_patches import text_frame


def _parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        assert reader.at_eof()  # nothing left over after the frame
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize(
    ("text", "header_len"),
    [
        ("", 2),
        ("a" * 125, 2),  # the largest 7-bit length
        ("é" * 63, 4),  # 126 bytes: the first 16-bit length (length counts bytes, not characters)
        ("€" * 21845, 4),  # 65535 bytes: the largest 16-bit length
        ("😀" * 16384, 10),  # 65536 bytes: the first 64-bit length
    ],
)
def test_a_text_frame_is_what_a_websocket_implementation_writes(text: str, header_len: int) -> None:
    payload = text.encode()
    frame = text_frame(payload)
    assert frame == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert len(frame) == header_len + len(payload)
    parsed = _parse(frame)
    assert (parsed.opcode, parsed.fin, parsed.data.decode()) == (Opcode.TEXT, True, text)
