"""Direct WebSocket text frames for daphne's connections.

Daphne hands every outgoing message to autobahn's `sendMessage`, which checks its
arguments, counts traffic statistics, considers compression, fragmentation,
masking and frame logging, builds the frame in `sendFrame` and writes it through
`sendData` (with two debug-log argument builders on the way): ~9 % of daphne's
profile samples at 200 live turns, as much again as the frame's socket write.
For the connections daphne actually makes (a server: unmasked frames, no
permessage-deflate, no auto-fragmentation, no frame or octet logging, no timing
tracker) a text message is one unfragmented frame: two header bytes (plus 2 or 8
for the length) and the UTF-8 payload. `install()` writes exactly that frame and
leaves every other case (binary, closing, compression or any of those options
enabled, a payload over the size limit, queued sync data) to autobahn as before.

Autobahn's traffic counters are not updated on the fast path; daphne never reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_installed = False


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 §5.2) carrying `payload`."""
    n = len(payload)
    if n <= 125:
        return bytes((0x81, n)) + payload
    if n <= 0xFFFF:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def install() -> None:
    global _installed  # noqa: PLW0603 - once per process
    if _installed:
        return
    from daphne.ws_protocol import WebSocketProtocol

    slow_send: Callable[[Any, Any, bool], None] = WebSocketProtocol.serverSend
    state_open = WebSocketProtocol.STATE_OPEN

    def server_send(self: Any, content: Any, binary: bool = False) -> None:
        if (
            not binary
            and self.state == state_open
            and self._perMessageCompress is None
            and not self.send_queue
            and not self.autoFragmentSize
            and not self.maskServerFrames
            and not self.logFrames
            and not self.logOctets
            and not self.trackedTimings
        ):
            payload = content.encode()
            if not 0 < self.maxMessagePayloadSize < len(payload):
                self.transport.write(text_frame(payload))
                return
        slow_send(self, content, binary)

    WebSocketProtocol.serverSend = server_send
    _installed = True
