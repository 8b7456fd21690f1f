"""Write-through for Twisted TCP connections in the web process (daphne).

Twisted's `FileDescriptor.write` never sends right away: it buffers the bytes,
registers the socket with the loop for writability, sends on the next loop pass
and unregisters it again. For a live stream that is two epoll updates and one
extra loop pass for every WebSocket frame or SSE event (`make bench`: a fifth of
daphne's CPU under 200 live turns). asyncio's own transports try the send first
and only buffer what the kernel did not take; `install()` gives Twisted's plain
TCP connections the same behaviour.

The fast path only runs when nothing is buffered already (so bytes stay in
order) on a plain, open, non-TLS connection; anything else (a partial send, a
full socket buffer, an error, TLS) falls through to Twisted's own `write`, which
buffers and lets the reactor deal with it as before.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

_installed = False


def install() -> None:
    global _installed  # noqa: PLW0603 - once per process
    if _installed:
        return
    from twisted.internet import tcp

    buffered_write: Callable[[Any, bytes], None] = tcp.Connection.write

    def write(self: Any, data: bytes) -> None:
        if (
            type(data) is bytes
            and data
            and self.connected
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
            and not getattr(self, "TLS", False)
        ):
            try:
                sent = self.socket.send(data)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR):
                    buffered_write(self, data)  # Twisted meets the error on its own send
                    return
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        buffered_write(self, data)

    tcp.Connection.write = write  # type: ignore[method-assign]
    _installed = True
