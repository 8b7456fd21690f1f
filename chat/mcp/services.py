"""Writes of the MCP integration: servers, their credentials, their tools' rows, status, seeding.

Every write to `McpServer` / `McpTool` goes through here (the admin and the worker
alike). Users never reach any of it: there is no API or page that adds a server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Tier
from chat.models import McpServer, McpTool
from copilot_site.core.caching import cache_delete, cache_set
from copilot_site.core.errors import ApplicationError

from .config import ServerSecret, secret_decrypt, secret_encrypt
from .content import clean_text
from .names import exposed_tool_name, server_name_problem

logger = logging.getLogger(__name__)


class McpConfigError(ApplicationError):
    """Invalid MCP server settings (the admin form and the seed show ``detail``)."""

    status = 400
    code = "mcp_config_invalid"


@dataclass(frozen=True)
class ListedTool:
    """One entry of a server's ``tools/list``, as cached and synced."""

    name: str
    description: str
    input_schema: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ListedTool:
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            input_schema=dict(data.get("input_schema") or {}),
        )


def tools_cache_key(server_id: int, fingerprint: str) -> str:
    return f"copilot:mcp:tools:{server_id}:{fingerprint}"


def server_config_problems(
    *, name: str, transport: str, url: str, command: Any, timeout_s: float, allowed_tiers: Any
) -> list[str]:
    """Every reason the server settings are invalid (empty when they are fine)."""
    problems: list[str] = []
    if (problem := server_name_problem(name)) is not None:
        problems.append(problem)
    if transport == McpServer.Transport.STREAMABLE_HTTP:
        if not url.startswith(("http://", "https://")):
            problems.append("A streamable-http server needs an http:// or https:// URL.")
    elif transport == McpServer.Transport.STDIO:
        if not isinstance(command, list) or not command or not all(isinstance(p, str) and p for p in command):
            problems.append('A stdio server needs a command: a JSON list of strings, e.g. ["npx", "server"].')
    else:
        problems.append("The transport is 'streamable-http' or 'stdio'.")
    if not 0 < timeout_s <= 3600:
        problems.append("The timeout is between 0 and 3600 seconds.")
    if not isinstance(allowed_tiers, list) or any(tier not in Tier.values for tier in allowed_tiers):
        problems.append(f"Allowed tiers is a list of {', '.join(Tier.values)} (empty: every tier).")
    return problems


def _strings_checked(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise McpConfigError(f"{what} are a JSON object of strings.")
    return dict(value)


def _headers_checked(headers: Any) -> dict[str, str]:
    return _strings_checked(headers, "Headers")


@transaction.atomic
def mcp_server_create(
    *,
    name: str,
    transport: str = McpServer.Transport.STREAMABLE_HTTP,
    url: str = "",
    command: list[str] | None = None,
    headers: Mapping[str, str] | None = None,
    bearer_token: str = "",
    env: Mapping[str, str] | None = None,
    enabled: bool = True,
    timeout_s: float = 30.0,
    allowed_tiers: list[str] | None = None,
) -> McpServer:
    command = list(command or [])
    tiers = list(allowed_tiers or [])
    problems = server_config_problems(
        name=name, transport=transport, url=url, command=command, timeout_s=timeout_s, allowed_tiers=tiers
    )
    if problems:
        raise McpConfigError(" ".join(problems))
    if McpServer.objects.filter(name=name).exists():
        raise McpConfigError(f"An MCP server named '{name}' already exists.")
    secret = ServerSecret(
        headers=_headers_checked(headers or {}),
        bearer_token=bearer_token,
        env=_strings_checked(env or {}, "Environment variables"),
    )
    return McpServer.objects.create(
        name=name,
        transport=transport,
        url=url,
        command=command,
        secret_encrypted=secret_encrypt(secret),
        enabled=enabled,
        timeout_s=timeout_s,
        allowed_tiers=tiers,
    )


def mcp_server_secret_set(
    *,
    server: McpServer,
    headers: Mapping[str, str] | None = None,
    bearer_token: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Replace the headers, the bearer token and/or the environment (None keeps what is stored)."""
    try:
        current = secret_decrypt(server.secret_encrypted)
    except Exception:  # unreadable (SECRET_KEY rotated): what is given replaces it
        current = ServerSecret()
    secret = ServerSecret(
        headers=_headers_checked(headers) if headers is not None else current.headers,
        bearer_token=bearer_token if bearer_token is not None else current.bearer_token,
        env=_strings_checked(env, "Environment variables") if env is not None else current.env,
    )
    server.secret_encrypted = secret_encrypt(secret)
    server.save(update_fields=["secret_encrypted", "updated_at"])


def mcp_servers_seed(entries: Iterable[Mapping[str, Any]] | None = None) -> list[McpServer]:
    """Create the servers of ``COPILOT_MCP_SERVERS`` that do not exist yet; the created rows.

    Idempotent: a server whose name exists is left exactly as the operator edited it
    (the setting seeds a first boot; the admin owns the rows after that). Invalid
    entries are logged and skipped. Run by the ``post_migrate`` signal (every
    ``migrate``) and by ``manage.py mcp_seed``.
    """
    raw = list(settings.COPILOT_MCP_SERVERS if entries is None else entries)
    created: list[McpServer] = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            logger.error("COPILOT_MCP_SERVERS: skipping an entry without a name: %r", entry)
            continue
        if McpServer.objects.filter(name=entry["name"]).exists():
            continue
        transport = str(entry.get("transport") or ("stdio" if entry.get("command") else "streamable-http"))
        try:
            created.append(
                mcp_server_create(
                    name=entry["name"],
                    transport=transport,
                    url=str(entry.get("url") or ""),
                    command=entry.get("command") or [],
                    headers=entry.get("headers") or {},
                    bearer_token=str(entry.get("bearer_token") or ""),
                    env=entry.get("env") or {},
                    enabled=bool(entry.get("enabled", True)),
                    timeout_s=float(entry.get("timeout_s", entry.get("timeout", 30.0))),
                    allowed_tiers=entry.get("allowed_tiers") or [],
                )
            )
        except (McpConfigError, TypeError, ValueError) as exc:
            logger.error("COPILOT_MCP_SERVERS: skipping server %r: %s", entry.get("name"), exc)
    return created


def mcp_server_status_record(
    *, server_id: int, reachable: bool, error: str = "", latency_ms: int | None = None, tool_count: int | None = None
) -> None:
    fields: dict[str, Any] = {
        "last_checked_at": timezone.now(),
        "last_reachable": reachable,
        "last_error": error[:2000],
    }
    if latency_ms is not None:
        fields["last_latency_ms"] = latency_ms
    if tool_count is not None:
        fields["last_tool_count"] = tool_count
    McpServer.objects.filter(pk=server_id).update(**fields)


def _schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, separators=(",", ":"), sort_keys=True)


@transaction.atomic
def mcp_tools_sync(*, server_id: int, fingerprint: str, listed: list[ListedTool]) -> list[str]:
    """Bring the server's tool rows in line with its latest ``tools/list``; the refusals.

    New tools get a row (enabled, free); known ones get the server's current
    description and schema; tools no longer listed keep their row with
    ``is_listed=False`` (the operator's price and switch survive a redeploy).
    A tool is refused (``refused_reason`` set, never offered) when its exposed name
    collides with another's or its schema exceeds ``COPILOT_MCP_SCHEMA_MAX_CHARS``.
    The list is cached for ``COPILOT_MCP_TOOLS_CACHE_TTL_S``.
    """
    server = McpServer.objects.select_for_update().get(pk=server_id)
    max_schema = int(settings.COPILOT_MCP_SCHEMA_MAX_CHARS)
    max_description = int(settings.COPILOT_MCP_DESCRIPTION_MAX_CHARS)
    by_exposed: dict[str, list[str]] = {}
    for tool in listed:
        by_exposed.setdefault(exposed_tool_name(server.name, tool.name), []).append(tool.name)
    existing = {row.name: row for row in McpTool.objects.filter(server=server)}
    refusals: list[str] = []
    for tool in listed:
        exposed = exposed_tool_name(server.name, tool.name)
        reason = ""
        if len(by_exposed[exposed]) > 1:
            others = " and ".join(f"'{name}'" for name in by_exposed[exposed])
            reason = f"Tool names {others} both become '{exposed}' for the model; rename one on the server."
        elif len(_schema_text(tool.input_schema)) > max_schema:
            reason = f"The input schema of '{tool.name}' is over {max_schema} characters."
        if reason and reason not in refusals:
            refusals.append(reason)
        values = {
            "exposed_name": exposed,
            "description": clean_text(tool.description)[:max_description],
            "input_schema": tool.input_schema,
            "is_listed": True,
            "refused_reason": reason[:300],
        }
        row = existing.pop(tool.name, None)
        if row is None:
            McpTool.objects.create(server=server, name=tool.name, **values)
        else:
            for field, value in values.items():
                setattr(row, field, value)
            row.save(update_fields=[*values, "updated_at"])
    McpTool.objects.filter(pk__in=[row.pk for row in existing.values()]).update(is_listed=False)
    if refusals:
        McpServer.objects.filter(pk=server_id).update(last_error=" ".join(refusals)[:2000])
    cache_set(
        tools_cache_key(server_id, fingerprint),
        [tool.to_json() for tool in listed],
        int(settings.COPILOT_MCP_TOOLS_CACHE_TTL_S),
    )
    return refusals


def mcp_tools_cache_forget(*, server_id: int, fingerprint: str) -> None:
    cache_delete(tools_cache_key(server_id, fingerprint))


def mcp_tools_enable(*, tools: Iterable[McpTool], enabled: bool) -> int:
    """Switch tools on or off for every later turn; the number changed."""
    return McpTool.objects.filter(pk__in=[tool.pk for tool in tools]).exclude(enabled=enabled).update(enabled=enabled)


@transaction.atomic
def mcp_server_update(
    *,
    server: McpServer,
    name: str,
    transport: str,
    url: str,
    command: list[str],
    enabled: bool,
    timeout_s: float,
    allowed_tiers: list[str],
) -> McpServer:
    """Change a server's settings (credentials: `mcp_server_secret_set`). A renamed server's
    tools get their new exposed names at the next listing."""
    problems = server_config_problems(
        name=name, transport=transport, url=url, command=command, timeout_s=timeout_s, allowed_tiers=allowed_tiers
    )
    if problems:
        raise McpConfigError(" ".join(problems))
    if McpServer.objects.filter(name=name).exclude(pk=server.pk).exists():
        raise McpConfigError(f"An MCP server named '{name}' already exists.")
    server.name, server.transport, server.url, server.command = name, transport, url, list(command)
    server.enabled, server.timeout_s, server.allowed_tiers = enabled, timeout_s, list(allowed_tiers)
    server.save()
    for tool in McpTool.objects.filter(server=server):
        exposed = exposed_tool_name(name, tool.name)
        if tool.exposed_name != exposed:
            tool.exposed_name = exposed
            tool.save(update_fields=["exposed_name", "updated_at"])
    return server


def mcp_tool_update(*, tool: McpTool, enabled: bool, cost_cents: int, approval_policy: str) -> McpTool:
    """The operator's switch, price and approval policy of one tool (used from the next turn)."""
    if approval_policy not in McpTool.ApprovalPolicy.values:
        raise McpConfigError(f"The approval policy is one of {', '.join(McpTool.ApprovalPolicy.values)}.")
    if cost_cents < 0:
        raise McpConfigError("A tool's price is 0 or more cents.")
    tool.enabled, tool.cost_cents, tool.approval_policy = enabled, cost_cents, approval_policy
    tool.save(update_fields=["enabled", "cost_cents", "approval_policy", "updated_at"])
    return tool
