"""web_fetch's destination rule: only public addresses, resolved once, pinned, re-checked on every redirect.

The address table checks the filter function alone; the fetch tests use httpx's MockTransport
(nothing leaves the process) or a server on 127.0.0.1 permitted by the allow-list setting.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat.tools.base import ToolError
from chat.tools.builtin import web_fetch
from chat.tools.builtin.web_fetch import address_is_public, fetch

REFUSED = [
    # IPv4: this network, private, loopback, link-local (cloud metadata), shared address space
    "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "127.0.0.1",
    "127.8.9.10",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "100.64.0.1",
    "100.100.100.200",
    "100.127.255.255",
    # IETF protocol assignments, documentation, benchmarking, 6to4 relay anycast, reserved, broadcast
    "192.0.0.1",
    "192.0.0.8",
    "192.0.0.9",
    "192.0.0.170",
    "192.0.0.255",
    "192.0.2.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "192.88.99.1",
    "240.0.0.1",
    "255.255.255.255",
    # IPv4 multicast
    "224.0.0.1",
    "239.255.255.250",
    # IPv6: loopback, unspecified, link-local (with a zone), unique-local, site-local, multicast
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    # IPv6 that embeds or routes to IPv4: 6to4, NAT64 (well-known and local-use), Teredo,
    # IPv4-compatible, IPv4-translated, IPv4-mapped (judged as the IPv4 inside)
    "2002::1",
    "2002:808:808::1",
    "64:ff9b::a00:1",
    "64:ff9b::808:808",
    "64:ff9b:1::1",
    "2001::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "::7f00:1",
    "::a00:1",
    "::ffff:0:a00:1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:100.64.0.1",
    "::ffff:169.254.169.254",
    # IPv6 documentation and discard-only
    "2001:db8::1",
    "100::1",
]

PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.0",
    "192.0.1.1",
    "192.88.98.255",
    "192.88.100.0",
    "198.17.255.255",
    "198.20.0.0",
    "::ffff:8.8.8.8",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "2003::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_address_outside_the_public_internet_is_refused(address: str) -> None:
    assert address_is_public(address) is False


@pytest.mark.parametrize("address", PUBLIC)
def test_globally_routable_unicast_address_is_public(address: str) -> None:
    assert address_is_public(address) is True


class Resolver:
    """A stand-in for DNS: answers from a table and records every lookup."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        answers = self.table[host]
        return answers.pop(0) if len(answers) > 1 else answers[0]


class Recorder:
    """A MockTransport handler that answers from a list and keeps every request it was sent."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


def page(text: str) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "text/plain"}, content=text.encode())


def redirect(location: str) -> httpx.Response:
    return httpx.Response(302, headers={"Location": location})


@pytest.mark.asyncio
async def test_name_is_resolved_once_and_the_connection_goes_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a resolver that would answer an inside address to any second lookup
    resolver = Resolver({"example.com": [["93.184.216.34"], ["10.0.0.1"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    server = Recorder(page("hello"))
    # when
    result = await fetch("https://example.com/a?b=1", max_chars=100, transport=httpx.MockTransport(server))
    # then
    assert resolver.calls == [("example.com", 443)]
    assert [str(request.url) for request in server.requests] == ["https://93.184.216.34/a?b=1"]
    request = server.requests[0]
    assert request.headers["Host"] == "example.com"
    assert request.extensions["sni_hostname"] == "example.com"
    assert result == {
        "url": "https://example.com/a?b=1",
        "status": 200,
        "content_type": "text/plain",
        "content": "hello",
        "truncated": False,
    }


@pytest.mark.asyncio
async def test_host_header_keeps_the_port_and_plain_http_sends_no_sni(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    resolver = Resolver({"example.com": [["2606:4700:4700::1111"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    server = Recorder(page("ok"))
    # when
    await fetch("http://example.com:8080/x", max_chars=100, transport=httpx.MockTransport(server))
    # then
    assert resolver.calls == [("example.com", 8080)]
    request = server.requests[0]
    assert str(request.url) == "http://[2606:4700:4700::1111]:8080/x"
    assert request.headers["Host"] == "example.com:8080"
    assert "sni_hostname" not in request.extensions


@pytest.mark.asyncio
async def test_international_name_is_sent_as_punycode_in_host_and_sni(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    resolver = Resolver({"bücher.de": [["93.184.216.34"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    server = Recorder(page("ok"))
    # when
    await fetch("https://bücher.de/", max_chars=100, transport=httpx.MockTransport(server))
    # then
    request = server.requests[0]
    assert (request.headers["Host"], request.extensions["sni_hostname"]) == ("xn--bcher-kva.de", "xn--bcher-kva.de")


@pytest.mark.asyncio
async def test_name_with_any_inside_address_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    monkeypatch.setattr(web_fetch, "resolve", Resolver({"mixed.example": [["93.184.216.34", "100.100.100.200"]]}))
    server = Recorder(page("secret"))
    # when
    with pytest.raises(ToolError) as refused:
        await fetch("http://mixed.example/latest/meta-data/", max_chars=100, transport=httpx.MockTransport(server))
    # then
    assert str(refused.value) == (
        "Refusing to fetch mixed.example: it resolves to 100.100.100.200, which is not a public address."
    )
    assert server.requests == []


@pytest.mark.asyncio
async def test_redirect_to_an_inside_address_is_refused_and_never_requested(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    resolver = Resolver({"example.com": [["93.184.216.34"]], "metadata.internal": [["169.254.169.254"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    server = Recorder(redirect("http://metadata.internal/latest/meta-data/"), page("secret"))
    # when
    with pytest.raises(ToolError) as refused:
        await fetch("https://example.com/go", max_chars=100, transport=httpx.MockTransport(server))
    # then
    assert str(refused.value) == (
        "Refusing to fetch metadata.internal: it resolves to 169.254.169.254, which is not a public address."
    )
    assert [str(request.url) for request in server.requests] == ["https://93.184.216.34/go"]
    assert resolver.calls == [("example.com", 443), ("metadata.internal", 80)]


@pytest.mark.asyncio
async def test_redirect_to_an_address_literal_in_shared_space_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    resolver = Resolver({"example.com": [["93.184.216.34"]], "100.64.0.1": [["100.64.0.1"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    server = Recorder(redirect("http://100.64.0.1/"))
    # when
    with pytest.raises(ToolError) as refused:
        await fetch("http://example.com/", max_chars=100, transport=httpx.MockTransport(server))
    # then
    assert (
        str(refused.value) == "Refusing to fetch 100.64.0.1: it resolves to 100.64.0.1, which is not a public address."
    )
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_each_redirect_hop_is_resolved_and_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    resolver = Resolver({"a.example": [["93.184.216.34"]], "b.example": [["1.1.1.1"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    server = Recorder(redirect("https://b.example/next"), page("arrived"))
    # when
    result = await fetch("http://a.example/start", max_chars=100, transport=httpx.MockTransport(server))
    # then
    assert [(str(r.url), r.headers["Host"]) for r in server.requests] == [
        ("http://93.184.216.34/start", "a.example"),
        ("https://1.1.1.1/next", "b.example"),
    ]
    assert server.requests[1].extensions["sni_hostname"] == "b.example"
    assert (result["url"], result["content"]) == ("https://b.example/next", "arrived")
    assert resolver.calls == [("a.example", 80), ("b.example", 443)]


@pytest.mark.asyncio
async def test_an_unreachable_address_falls_back_to_the_next_checked_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: the first resolved address refuses the connection
    resolver = Resolver({"example.com": [["2606:4700:4700::1111", "93.184.216.34"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    tried: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == "2606:4700:4700::1111":
            raise httpx.ConnectError("unreachable", request=request)
        return page("second")

    # when
    result = await fetch("http://example.com/", max_chars=100, transport=httpx.MockTransport(handler))
    # then
    assert (tried, result["content"], resolver.calls) == (
        ["2606:4700:4700::1111", "93.184.216.34"],
        "second",
        [("example.com", 80)],
    )


@pytest.mark.asyncio
async def test_connection_attempts_are_bounded_to_three_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    addresses = ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"]
    monkeypatch.setattr(web_fetch, "resolve", Resolver({"example.com": [addresses]}))
    tried: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        raise httpx.ConnectError("unreachable", request=request)

    # when
    with pytest.raises(httpx.ConnectError):
        await fetch("http://example.com/", max_chars=100, transport=httpx.MockTransport(handler))
    # then
    assert tried == addresses[:3]


@pytest.mark.asyncio
async def test_redirects_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    monkeypatch.setattr(web_fetch, "resolve", Resolver({"loop.example": [["93.184.216.34"]]}))
    server = Recorder(*[redirect("/again") for _ in range(10)])
    # when
    with pytest.raises(ToolError) as refused:
        await fetch("http://loop.example/", max_chars=100, transport=httpx.MockTransport(server))
    # then
    assert str(refused.value) == "Too many redirects (more than 5)."
    assert len(server.requests) == 6


# ---------------------------------------------------------------- a real fetch over loopback


class _EchoHandler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append((self.path, self.headers.get("Host", "")))
        body = f"host={self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[tuple[int, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    handler = type("Handler", (_EchoHandler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.asyncio
async def test_allow_listed_name_is_still_resolved_once_and_pinned(
    echo_server: tuple[int, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # given: an allow-listed name whose second lookup would point somewhere else
    port, seen = echo_server
    settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS = ["pinned.test"]
    resolver = Resolver({"pinned.test": [["127.0.0.1"], ["10.9.9.9"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    # when
    result = await fetch(f"http://pinned.test:{port}/echo", max_chars=100)
    # then
    assert resolver.calls == [("pinned.test", port)]
    assert seen == [("/echo", f"pinned.test:{port}")]
    assert (result["url"], result["content"]) == (f"http://pinned.test:{port}/echo", f"host=pinned.test:{port}")


@pytest.mark.asyncio
async def test_loopback_without_the_allow_list_sends_nothing(
    echo_server: tuple[int, list[tuple[str, str]]], settings: Any
) -> None:
    # given
    port, seen = echo_server
    settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS = []
    # when
    with pytest.raises(ToolError) as refused:
        await fetch(f"http://127.0.0.1:{port}/echo", max_chars=100)
    # then
    assert str(refused.value) == "Refusing to fetch 127.0.0.1: it resolves to 127.0.0.1, which is not a public address."
    assert seen == []


# ---------------------------------------------------------------- real TLS over loopback


def _tls_contexts(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context whose self-signed certificate names only `name` (no IP address), and
    a client context trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    return server_context, ssl.create_default_context(cafile=str(cert_file))


async def _tls_echo(server_context: ssl.SSLContext, seen: list[str]) -> tuple[asyncio.Server, int]:
    """An HTTPS server on 127.0.0.1 recording the SNI name and Host header of each request."""

    def sni(sock: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        seen.append(f"sni={server_name}")

    server_context.sni_callback = sni  # type: ignore[assignment]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        host = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:"))
        seen.append(f"host={host}")
        body = b"over tls"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\n" + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.asyncio
async def test_https_to_the_pinned_address_sends_the_name_as_sni_and_verifies_the_certificate_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # given: a certificate for pinned.test only, so verifying against 127.0.0.1 would fail
    server_context, client_context = _tls_contexts(tmp_path, "pinned.test")
    seen: list[str] = []
    server, port = await _tls_echo(server_context, seen)
    settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS = ["pinned.test"]
    resolver = Resolver({"pinned.test": [["127.0.0.1"]]})
    monkeypatch.setattr(web_fetch, "resolve", resolver)
    try:
        # when
        result = await fetch(
            f"https://pinned.test:{port}/x", max_chars=100, transport=httpx.AsyncHTTPTransport(verify=client_context)
        )
    finally:
        server.close()
        await server.wait_closed()
    # then
    assert seen == ["sni=pinned.test", f"host=pinned.test:{port}"]
    assert (result["status"], result["content"]) == (200, "over tls")
    assert resolver.calls == [("pinned.test", port)]


@pytest.mark.asyncio
async def test_https_certificate_for_another_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # given: the pinned address answers with a certificate for someone else
    server_context, client_context = _tls_contexts(tmp_path, "other.test")
    seen: list[str] = []
    server, port = await _tls_echo(server_context, seen)
    settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS = ["pinned.test"]
    monkeypatch.setattr(web_fetch, "resolve", Resolver({"pinned.test": [["127.0.0.1"]]}))
    try:
        # when
        with pytest.raises(httpx.ConnectError) as refused:
            await fetch(
                f"https://pinned.test:{port}/x",
                max_chars=100,
                transport=httpx.AsyncHTTPTransport(verify=client_context),
            )
    finally:
        server.close()
        await server.wait_closed()
    # then
    cause: BaseException | None = refused.value
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert cause.verify_message == "Hostname mismatch, certificate is not valid for 'pinned.test'."
    assert seen == ["sni=pinned.test"]
