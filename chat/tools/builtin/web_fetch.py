"""web_fetch: an HTTP GET with size and time limits that refuses internal addresses."""

from __future__ import annotations

import asyncio
import html
import ipaddress
import re
import socket
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings

from chat.tools.base import Tool, ToolContext, ToolError, ToolOutput
from chat.tools.registry import register

MAX_REDIRECTS = 5
USER_AGENT = "copilot-web-fetch/1.0"
_SCRIPT_STYLE_RE = re.compile(r"<(script|style|noscript)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_BLANK_LINES_RE = re.compile(r"\n\s*\n\s*\n+")
_SPACES_RE = re.compile(r"[ \t\r\f\v]+")


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified


async def check_destination(url: str) -> None:
    """Refuse non-HTTP URLs and hosts resolving to private, loopback or link-local addresses.

    Every address the name resolves to is checked (after DNS, so a public name
    pointing inside is refused too), except for hosts in COPILOT_WEB_FETCH_ALLOWED_HOSTS.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError("Only http and https URLs can be fetched.")
    host = parts.hostname
    if host in set(settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS or []):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolError(f"Could not resolve {host}.") from exc
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or any(_is_internal(address) for address in addresses):
        raise ToolError(f"Refusing to fetch {host}: it resolves to a private, loopback or link-local address.")


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


async def fetch(url: str, *, max_chars: int) -> dict[str, Any]:
    timeout = float(settings.COPILOT_WEB_FETCH_TIMEOUT_S)
    limit = int(settings.COPILOT_WEB_FETCH_MAX_BYTES)
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}, trust_env=False
    ) as client:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            await check_destination(current)
            async with client.stream("GET", current) as response:
                if response.is_redirect and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                body, cut = await _read_limited(response, limit)
                content_type = response.headers.get("content-type", "")
                encoding = response.encoding or "utf-8"
                status = response.status_code
            break
        else:
            raise ToolError(f"Too many redirects (more than {MAX_REDIRECTS}).")
    text = body.decode(encoding, errors="replace")
    if "html" in content_type.lower():
        text = html_to_text(text)
    truncated = cut or len(text) > max_chars
    return {
        "url": current,
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
