"""web_fetch: an HTTP GET with size and time limits that connects only to public addresses."""

from __future__ import annotations

import asyncio
import html
import ipaddress
import re
import socket
from typing import Any, ClassVar

import httpx
from django.conf import settings

from chat.tools.base import Tool, ToolContext, ToolError, ToolOutput
from chat.tools.registry import register

MAX_REDIRECTS = 5
MAX_CONNECT_ATTEMPTS = 3
USER_AGENT = "copilot-web-fetch/1.0"
_SCRIPT_STYLE_RE = re.compile(r"<(script|style|noscript)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_BLANK_LINES_RE = re.compile(r"\n\s*\n\s*\n+")
_SPACES_RE = re.compile(r"[ \t\r\f\v]+")


# Ranges `is_global` misses (or misses on some Python patch releases) that still reach inside:
# IETF protocol assignments, the 6to4 relay anycast and 6to4 prefix, NAT64 prefixes,
# Teredo, deprecated site-local and IPv4-compatible/translated IPv6 (all embed or route to
# an address the operator did not mean to expose).
_BLOCKED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("192.88.99.0/24"),
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2001::/32"),
    ipaddress.ip_network("2002::/16"),
    ipaddress.ip_network("fec0::/10"),
)


def address_is_public(address: str) -> bool:
    """Whether `address` is globally routable unicast: the only kind web_fetch connects to.

    An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address it carries.
    """
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return False
    return not any(ip in network for network in _BLOCKED_NETWORKS if network.version == ip.version)


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (one lookup)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def destination_check(url: httpx.URL) -> list[str]:
    """Resolve the URL's host once and return the addresses to connect to, in order.

    Refuses non-HTTP URLs, and hosts with any address that is not public (checked after DNS,
    so a public name pointing inside is refused too); hosts in COPILOT_WEB_FETCH_ALLOWED_HOSTS
    skip the address rule. The caller connects to the returned addresses and nothing else, so a
    second lookup can never swap in another one.
    """
    if url.scheme not in ("http", "https") or not url.host:
        raise ToolError("Only http and https URLs can be fetched.")
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolError(f"Could not resolve {host}.") from exc
    if not addresses:
        raise ToolError(f"Could not resolve {host}.")
    if host not in set(settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS or []):
        for address in addresses:
            if not address_is_public(address):
                raise ToolError(f"Refusing to fetch {host}: it resolves to {address}, which is not a public address.")
    return addresses


def pinned_request(client: httpx.AsyncClient, url: httpx.URL, address: str) -> httpx.Request:
    """A GET for `url` that connects to `address`, with the URL's own `Host` header and TLS name."""
    extensions: dict[str, Any] = {}
    if url.scheme == "https" and not _is_ip_literal(url.host):
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return client.build_request(
        "GET",
        url.copy_with(host=address),
        headers={"Host": url.netloc.decode("ascii")},
        extensions=extensions,
    )


async def _send_pinned(client: httpx.AsyncClient, url: httpx.URL, addresses: list[str]) -> httpx.Response:
    """Send to the checked addresses in turn until one accepts the connection (at most
    MAX_CONNECT_ATTEMPTS, each with the full timeout), as a client connecting by name would."""
    attempts = addresses[:MAX_CONNECT_ATTEMPTS]
    for address in attempts[:-1]:
        try:
            return await client.send(pinned_request(client, url, address), stream=True)
        except httpx.ConnectError:
            continue
    return await client.send(pinned_request(client, url, attempts[-1]), stream=True)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def html_to_text(markup: str) -> str:
    text = _SCRIPT_STYLE_RE.sub(" ", markup)
    text = re.sub(r"<(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", "\n", text, flags=re.IGNORECASE)
    text = html.unescape(_TAG_RE.sub(" ", text))
    text = _SPACES_RE.sub(" ", text)
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(line.strip() for line in text.splitlines())).strip()


async def _read_limited(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False


async def fetch(url: str, *, max_chars: int, transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    timeout = float(settings.COPILOT_WEB_FETCH_TIMEOUT_S)
    limit = int(settings.COPILOT_WEB_FETCH_MAX_BYTES)
    try:
        current = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolError("Only http and https URLs can be fetched.") from exc
    async with httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
        transport=transport,
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            response = await _send_pinned(client, current, await destination_check(current))
            try:
                if response.is_redirect and "location" in response.headers:
                    try:
                        current = current.join(response.headers["location"])
                    except httpx.InvalidURL as exc:
                        raise ToolError("The server redirected to an invalid URL.") from exc
                    continue
                body, cut = await _read_limited(response, limit)
                content_type = response.headers.get("content-type", "")
                encoding = response.encoding or "utf-8"
                status = response.status_code
            finally:
                await response.aclose()
            break
        else:
            raise ToolError(f"Too many redirects (more than {MAX_REDIRECTS}).")
    text = body.decode(encoding, errors="replace")
    if "html" in content_type.lower():
        text = html_to_text(text)
    truncated = cut or len(text) > max_chars
    return {
        "url": str(current),
        "status": status,
        "content_type": content_type.split(";")[0].strip(),
        "content": text[:max_chars],
        "truncated": truncated,
    }


@register
class WebFetch(Tool):
    name = "web_fetch"
    description = "Fetch a public web page or file over HTTP(S) and return its text (HTML is reduced to text)."
    long_running = True
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 8, "maxLength": 2000},
            "max_chars": {"type": "integer", "minimum": 100, "maximum": 100_000, "default": 20_000},
        },
        "required": ["url"],
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        try:
            return await fetch(str(arguments["url"]).strip(), max_chars=int(arguments.get("max_chars", 20_000)))
        except httpx.TimeoutException as exc:
            raise ToolError("The request timed out.") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"The request failed: {exc}") from exc
