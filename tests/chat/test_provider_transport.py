"""The provider SDKs' asyncio network backend (chat.engine.providers.transport) against
real loopback servers: plain and TLS, keep-alive, timeouts, refusals and cut streams."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import openai
import pytest
import uvloop

from chat.engine.providers.openai_compat import _sse_json
from chat.engine.providers.transport import AsyncioBackend, ProviderTransport, provider_transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _sse_handler(events: list[bytes], *, gap_s: float = 0.0, connections: list[int] | None = None) -> Handler:
    """Answers every request on a connection with a chunked SSE body of `events`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(1)
        try:
            while True:
                head = await _read_head(reader)
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                for event in events:
                    await asyncio.sleep(gap_s)
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handle


async def _serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1]


def _client(timeout: float = 5.0, ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=provider_transport(ssl_context or ssl.create_default_context()), timeout=timeout)


async def _read_body(handler: Handler, timeout: float = 5.0) -> tuple[list[bytes], type[BaseException] | None]:
    """GET from a server running `handler`: the raw body chunks read, and the error that ended it."""
    server, port = await _serve(handler)
    got: list[bytes] = []
    async with server, _client(timeout=timeout) as client:
        try:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                async for chunk in response.aiter_raw():
                    got.append(chunk)
        except httpx.HTTPError as exc:
            return got, type(exc)
    return got, None


EVENTS = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]


def test_the_transport_uses_the_asyncio_backend() -> None:
    transport = provider_transport(ssl.create_default_context())
    assert isinstance(transport, ProviderTransport)
    assert isinstance(transport._pool._network_backend, AsyncioBackend)


def test_a_streamed_body_arrives_event_by_event_and_the_connection_is_reused() -> None:
    connections: list[int] = []

    async def scenario() -> list[list[bytes]]:
        server, port = await _serve(_sse_handler(EVENTS, gap_s=0.01, connections=connections))
        bodies = []
        async with server, _client() as client:
            for _ in range(2):
                async with client.stream("POST", f"http://127.0.0.1:{port}/v1/x", json={"a": 1}) as response:
                    assert response.status_code == 200
                    bodies.append([chunk async for chunk in response.aiter_raw()])
        return bodies

    bodies = uvloop.run(scenario())
    assert bodies == [EVENTS, EVENTS]  # one read per event, as the server sent them
    assert connections == [1]  # keep-alive: the second request reused the connection


def test_the_openai_sdk_streams_through_it() -> None:
    async def scenario() -> list[Any]:
        server, port = await _serve(_sse_handler(EVENTS))
        async with server:
            client = openai.AsyncOpenAI(
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key="k",
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(transport=provider_transport(ssl.create_default_context())),
            )
            request: Any = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with client.chat.completions.with_streaming_response.create(**request) as response:
                events = [event async for event in _sse_json(response)]
            await client.close()
        return events

    assert uvloop.run(scenario()) == [{"n": 1}, {"n": 2}]


def test_a_stalled_stream_times_out() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(5)

    assert uvloop.run(_read_body(stall, timeout=0.3)) == ([b"hello"], httpx.ReadTimeout)


def test_a_stream_cut_mid_body_is_an_error_not_a_short_answer() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        writer.transport.abort()

    got, error = uvloop.run(_read_body(cut))
    assert got == [b"hello"]
    assert error is not None and issubclass(error, httpx.TransportError)


def test_a_refused_connection_is_a_connect_error() -> None:
    async def scenario() -> type[BaseException]:
        server, port = await _serve(_sse_handler(EVENTS))
        server.close()
        await server.wait_closed()
        async with _client() as client:
            try:
                await client.get(f"http://127.0.0.1:{port}/")
            except httpx.HTTPError as exc:
                return type(exc)
        return type(None)

    assert uvloop.run(scenario()) is httpx.ConnectError


def test_connect_and_read_timeouts_map_to_httpcore_errors() -> None:
    async def scenario() -> None:
        backend = AsyncioBackend()
        server, port = await _serve(lambda r, w: asyncio.sleep(2))
        async with server:
            stream = await backend.connect_tcp("127.0.0.1", port, timeout=2)
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(100, timeout=0.05)
            assert stream.get_extra_info("is_readable") is False
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
            await stream.aclose()

    asyncio.run(scenario())


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    return server_context, client_context


def test_https_works_and_a_certificate_it_cannot_trust_is_refused(tmp_path: Path) -> None:
    server_context, client_context = _self_signed(tmp_path)

    async def scenario() -> tuple[list[bytes], type[BaseException]]:
        server, port = await _serve(_sse_handler(EVENTS), ssl_context=server_context)
        async with server:
            async with (
                _client(ssl_context=client_context) as client,
                client.stream("POST", f"https://localhost:{port}/v1/x", json={}) as response,
            ):
                body = [chunk async for chunk in response.aiter_raw()]
            async with _client(ssl_context=ssl.create_default_context()) as untrusting:
                try:
                    await untrusting.post(f"https://localhost:{port}/v1/x", json={})
                except httpx.HTTPError as exc:
                    return body, type(exc)
        return body, type(None)

    body, error = uvloop.run(scenario())
    assert body == EVENTS
    assert error is httpx.ConnectError
