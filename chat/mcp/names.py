"""Tool names as the model sees them: ``<server>__<tool>``, within the providers' rules.

OpenAI and Anthropic accept tool names matching ``^[a-zA-Z0-9_-]{1,64}$``. A server
name is a slug without ``__`` (`SERVER_NAME_RE`), so the prefix is unambiguous and an
MCP tool can never take a built-in's name; inside one server, two tools whose names
sanitise (or truncate) to the same text collide, and both are refused.
"""

from __future__ import annotations

import hashlib
import re

SERVER_NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SERVER_NAME_MAX = 32
TOOL_NAME_MAX = 64
SEPARATOR = "__"
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


def server_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid server name, or None."""
    if not name or len(name) > SERVER_NAME_MAX or not SERVER_NAME_RE.match(name):
        return (
            f"A server name is 1–{SERVER_NAME_MAX} lowercase letters and digits, optionally separated by "
            "single hyphens (e.g. 'docs' or 'ticket-tracker')."
        )
    return None


def exposed_tool_name(server: str, tool: str) -> str:
    """``server__tool`` with every character outside ``[a-zA-Z0-9_-]`` replaced by ``_``.

    Too long: cut to 64 with a short hash of the full name, so two long names that
    share a prefix stay distinct.
    """
    name = f"{server}{SEPARATOR}{_INVALID.sub('_', tool)}"
    if len(name) <= TOOL_NAME_MAX:
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[: TOOL_NAME_MAX - 9]}_{digest}"


def split_exposed_name(name: str) -> tuple[str, str] | None:
    """``("docs", "search")`` for ``docs__search``; None for a name without the separator."""
    server, sep, tool = name.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None
