"""The provider SDKs' HTTP transport: httpx over httpcore, on a plain asyncio network backend.

The official SDKs talk HTTP through httpx → httpcore, and httpcore reaches the
network through anyio by default. For a streamed completion that is the hot path:
each SSE event is one socket read, and anyio's read opens a cancel scope for the
timeout, pauses and resumes the transport's reading (two epoll updates) and yields
to the loop once more when data is already there. `AsyncioBackend` is the same
contract (`httpcore.AsyncNetworkBackend`) on an asyncio protocol that keeps reading
and hands buffered bytes over at once, with a timer only when a read has to wait.
Everything above it (h11, httpcore's pool, httpx, the SDK's retries and errors) is
unchanged, so the production code path is still the SDK's own.

`make bench` (bench_engine, bench_transport) shows the difference per chunk.
"""

# httpcore's backend interface takes `timeout` arguments.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import typing

import httpcore
import httpx

HIGH_WATER = 256 * 1024  # buffered bytes at which reading pauses until the reader catches up


class _Protocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.read_waiter: asyncio.Future[bool | None] | None = None
        self.write_waiter: asyncio.Future[bool | None] | None = None
        self.reading_paused = False
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake_reader()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self.write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def _wait(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool | None], seconds: float | None) -> bool:
    """Await `waiter`; False if `seconds` passed first (one timer, made only when a read must wait)."""
    if seconds is None:
        await waiter
        return True
    timer = loop.call_later(seconds, _expire, waiter)
    try:
        await waiter
    finally:
        timer.cancel()
    return waiter.result() is None


def _expire(waiter: asyncio.Future[bool | None]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @property
    def _transport(self) -> asyncio.Transport:
        assert self._protocol.transport is not None
        return self._protocol.transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks and not protocol.eof:
            protocol.read_waiter = waiter = protocol.loop.create_future()
            try:
                if not await _wait(protocol.loop, waiter, timeout):
                    raise httpcore.ReadTimeout("timed out reading from the provider")
            finally:
                protocol.read_waiter = None
        if protocol.chunks:
            data = protocol.chunks.popleft()
            if len(data) > max_bytes:
                data, rest = data[:max_bytes], data[max_bytes:]
                protocol.chunks.appendleft(rest)
            protocol.buffered -= len(data)
            if protocol.reading_paused and protocol.buffered <= HIGH_WATER // 4 and protocol.transport is not None:
                protocol.reading_paused = False
                protocol.transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.error is not None or protocol.transport is None or protocol.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        protocol.transport.write(buffer)
        if protocol.writing_paused:
            protocol.write_waiter = waiter = protocol.loop.create_future()
            try:
                if not await _wait(protocol.loop, waiter, timeout):
                    raise httpcore.WriteTimeout("timed out writing to the provider")
            finally:
                protocol.write_waiter = None
            if protocol.error is not None:
                raise httpcore.WriteError(str(protocol.error))

    async def aclose(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        protocol = self._protocol
        try:
            tls = await asyncio.wait_for(
                protocol.loop.start_tls(self._transport, protocol, ssl_context, server_hostname=server_hostname),
                timeout,
            )
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc)) from exc
        if tls is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        protocol.transport = tls
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        transport = self._protocol.transport
        if info == "is_readable":
            # An idle keep-alive connection that has data or EOF waiting is not reusable.
            return bool(self._protocol.chunks) or self._protocol.eof
        if transport is None:
            return None
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
        return transport.get_extra_info(names[info]) if info in names else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on the running asyncio loop (uvloop in the worker)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local_addr = (local_address, 0) if local_address else None
        return await _connect(
            lambda loop, protocol: loop.create_connection(lambda: protocol, host, port, local_addr=local_addr),
            f"{host}:{port}",
            timeout,
            socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await _connect(
            lambda loop, protocol: loop.create_unix_connection(lambda: protocol, path), path, timeout, socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(
    opening: typing.Callable[[asyncio.AbstractEventLoop, _Protocol], typing.Awaitable[typing.Any]],
    where: str,
    timeout: float | None,
    socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None,
) -> AsyncioStream:
    """Open a connection with `opening(loop, protocol)`, errors mapped as httpcore expects."""
    loop = asyncio.get_running_loop()
    protocol = _Protocol(loop)
    try:
        await asyncio.wait_for(opening(loop, protocol), timeout)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"timed out connecting to {where}") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    stream = AsyncioStream(protocol)
    sock: socket.socket | None = stream.get_extra_info("socket")
    if sock is not None:
        for option in socket_options or ():
            with contextlib.suppress(OSError):
                sock.setsockopt(*option)
    return stream


class ProviderTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its httpcore pool on `AsyncioBackend` (HTTP/1.1, as the SDKs use)."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits)
        # httpx builds its pool without a way to pass a backend; the same pool, with one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=AsyncioBackend(),
        )


# The SDKs' own default limits (openai/anthropic `DEFAULT_CONNECTION_LIMITS`).
PROVIDER_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


def provider_transport(ssl_context: ssl.SSLContext) -> ProviderTransport:
    return ProviderTransport(ssl_context=ssl_context, limits=PROVIDER_LIMITS)
