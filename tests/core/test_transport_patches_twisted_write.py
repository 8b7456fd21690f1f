"""Write-through for Twisted TCP connections (the `twisted_write` transport patch), on a
real socket pair: sent at once when nothing is buffered, buffered by Twisted otherwise."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import tcp

from copilot_site.core.transport_patches import transport_patches_install


class _Conn(tcp.Connection):  # type: ignore[misc]
    """A Twisted TCP connection over a given socket, its reactor registration recorded."""

    def __init__(self, sock: socket.socket) -> None:  # no reactor: only the write path is used
        self.socket = sock
        self.connected = 1
        self.disconnecting = 0
        self.producer = None
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0
        self.writing_started = 0

    def startWriting(self) -> None:  # noqa: N802 - Twisted's name
        self.writing_started += 1


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[tuple[socket.socket, socket.socket]]:
    monkeypatch.setattr(tcp.Connection, "write", inspect.unwrap(tcp.Connection.write))  # put back after the test
    settings.COPILOT_TWISTED_WRITE_PATCH, settings.COPILOT_WS_FRAME_PATCH = True, False
    assert transport_patches_install() == ["twisted_write"]
    a, b = socket.socketpair()
    a.setblocking(False)
    b.settimeout(1)
    yield a, b
    a.close()
    b.close()


def _recv_all(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    return data


def test_a_write_with_nothing_buffered_goes_to_the_socket_at_once(pair: Any) -> None:
    a, b = pair
    conn = _Conn(a)
    conn.write(b"frame-1")
    conn.write(b"frame-2")
    assert b.recv(100) == b"frame-1frame-2"
    assert (conn.writing_started, conn._tempDataBuffer) == (0, [])


def test_a_write_behind_buffered_bytes_is_buffered_after_them(pair: Any) -> None:
    a, b = pair
    conn = _Conn(a)
    conn._tempDataBuffer, conn._tempDataLen = [b"earlier"], 7
    conn.write(b"later")
    assert _recv_all(b) == b""  # nothing overtook the buffered bytes
    assert conn._tempDataBuffer == [b"earlier", b"later"]
    assert conn.writing_started == 1


def test_what_the_kernel_does_not_take_is_buffered_for_the_reactor(pair: Any) -> None:
    a, b = pair
    conn = _Conn(a)
    big = b"x" * (8 << 20)  # more than a socket buffer holds
    conn.write(big)
    received = _recv_all(b)
    assert 0 < len(received) < len(big)
    assert b"".join(conn._tempDataBuffer) == big[len(received) :]
    assert conn.writing_started == 1


def test_tls_and_closed_connections_keep_twisteds_own_write(pair: Any) -> None:
    a, b = pair
    closed = _Conn(a)
    closed.connected = 0
    closed.write(b"dropped")
    assert _recv_all(b) == b""
    assert closed._tempDataBuffer == []

    class _TLSLayer:
        got: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.got.append(data)

    tls = _Conn(a)
    tls.TLS = True
    tls.protocol = _TLSLayer()
    tls.write(b"secret")
    assert tls.protocol.got == [b"secret"]  # handed to the TLS layer, not the raw socket
    assert _recv_all(b) == b""
