"""What a connection needs to know about one server, read once from its row.

`ServerConfig` is frozen and hashable; its ``fingerprint`` changes whenever anything
that affects the connection changes (URL, command, credentials, timeout), so the
worker's pool replaces a connection whose row was edited, and cached tool lists of
an older configuration are never used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from chat.models import McpServer
from copilot_site.core.secret_box import SecretUnreadable, decrypt_text, encrypt_text

SECRET_PURPOSE = "mcp-server-credentials"  # noqa: S105 (an HKDF label, not a secret)


@dataclass(frozen=True)
class ServerSecret:
    """The credentials of one server: extra HTTP headers, an optional bearer token, and
    environment variables for a stdio server's process (e.g. its API key)."""

    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.headers and not self.bearer_token and not self.env

    def http_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        return headers


def secret_encrypt(secret: ServerSecret) -> str:
    if secret.is_empty:
        return ""
    return encrypt_text(
        json.dumps({"headers": secret.headers, "bearer_token": secret.bearer_token, "env": secret.env}),
        purpose=SECRET_PURPOSE,
    )


def secret_decrypt(token: str) -> ServerSecret:
    """The stored credentials; raises `SecretUnreadable` when SECRET_KEY changed."""
    if not token:
        return ServerSecret()
    data: Any = json.loads(decrypt_text(token, purpose=SECRET_PURPOSE))
    headers = data.get("headers") or {}
    env = data.get("env") or {}
    return ServerSecret(
        headers={str(k): str(v) for k, v in headers.items()},
        bearer_token=str(data.get("bearer_token") or ""),
        env={str(k): str(v) for k, v in env.items()},
    )


@dataclass(frozen=True)
class ServerConfig:
    id: int
    name: str
    transport: str
    url: str
    command: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    timeout_s: float
    env: tuple[tuple[str, str], ...] = ()

    @property
    def fingerprint(self) -> str:
        raw = json.dumps([self.id, self.transport, self.url, self.command, self.headers, self.timeout_s, self.env])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    @property
    def is_stdio(self) -> bool:
        return self.transport == McpServer.Transport.STDIO


def server_config(server: McpServer) -> ServerConfig:
    """The connection settings of a row; raises `SecretUnreadable` for unreadable credentials."""
    secret = secret_decrypt(server.secret_encrypted)
    return ServerConfig(
        id=server.pk,
        name=server.name,
        transport=server.transport,
        url=server.url,
        command=tuple(str(part) for part in (server.command or [])),
        headers=tuple(sorted(secret.http_headers().items())),
        timeout_s=float(server.timeout_s),
        env=tuple(sorted(secret.env.items())),
    )


__all__ = [
    "SECRET_PURPOSE",
    "SecretUnreadable",
    "ServerConfig",
    "ServerSecret",
    "secret_decrypt",
    "secret_encrypt",
    "server_config",
]
