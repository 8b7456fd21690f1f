"""Writes of the MCP integration: seeding, encrypted credentials, tool rows from a listing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection

from chat.mcp.config import secret_decrypt, server_config
from chat.mcp.services import (
    ListedTool,
    McpConfigError,
    mcp_server_create,
    mcp_server_secret_set,
    mcp_servers_seed,
    mcp_tools_sync,
    tools_cache_key,
)
from chat.models import McpServer, McpTool
from copilot_site.core.caching import cache_get

pytestmark = pytest.mark.django_db

SEED = [
    {"name": "docs", "transport": "streamable-http", "url": "http://127.0.0.1:9000/mcp", "headers": {"X-Key": "k1"}},
    {"name": "files", "command": ["python", "server.py"]},
]


def test_seed_creates_missing_servers_once(settings: Any) -> None:
    # given
    settings.COPILOT_MCP_SERVERS = SEED
    # when
    first = mcp_servers_seed()
    McpServer.objects.filter(name="docs").update(timeout_s=5.0)  # the operator's later edit
    second = mcp_servers_seed()
    # then
    assert [s.name for s in first] == ["docs", "files"]
    assert second == []
    docs, files = McpServer.objects.get(name="docs"), McpServer.objects.get(name="files")
    assert (docs.transport, docs.url, docs.timeout_s) == ("streamable-http", "http://127.0.0.1:9000/mcp", 5.0)
    assert (files.transport, files.command) == ("stdio", ["python", "server.py"])
    assert secret_decrypt(docs.secret_encrypted).headers == {"X-Key": "k1"}


def test_seed_skips_invalid_entries(settings: Any) -> None:
    # given
    settings.COPILOT_MCP_SERVERS = [{"name": "Bad Name", "url": "http://127.0.0.1:1/mcp"}, {"url": "x"}, SEED[0]]
    # when
    created = mcp_servers_seed()
    # then
    assert [s.name for s in created] == ["docs"]
    assert list(McpServer.objects.values_list("name", flat=True)) == ["docs"]


def test_seed_command(settings: Any) -> None:
    settings.COPILOT_MCP_SERVERS = SEED[:1]
    call_command("mcp_seed")
    call_command("mcp_seed")
    assert McpServer.objects.get().name == "docs"


def test_credentials_are_stored_encrypted() -> None:
    # when
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9000/mcp", bearer_token="tok-plain-123")
    # then: not in the row's text, readable with the key, sent as a header
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM chat_mcpserver WHERE id = %s", [server.pk])
        stored = cursor.fetchone()[0]
    assert "tok-plain-123" not in stored
    assert stored != ""
    assert dict(server_config(server).headers) == {"Authorization": "Bearer tok-plain-123"}


def test_secret_set_keeps_what_is_not_given() -> None:
    # given
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9000/mcp", headers={"X-A": "1"}, bearer_token="t1")
    # when
    mcp_server_secret_set(server=server, bearer_token="t2")
    # then
    secret = secret_decrypt(McpServer.objects.get(pk=server.pk).secret_encrypted)
    assert (secret.headers, secret.bearer_token) == ({"X-A": "1"}, "t2")


@pytest.mark.parametrize(
    ("_case", "kwargs", "message"),
    [
        ("no url", {"transport": "streamable-http", "url": ""}, "needs an http:// or https:// URL"),
        ("no command", {"transport": "stdio", "command": []}, "needs a command"),
        ("bad tier", {"url": "http://127.0.0.1:1/mcp", "allowed_tiers": ["GOLD"]}, "Allowed tiers"),
    ],
)
def test_create_refuses_invalid_settings(_case: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(McpConfigError, match=message):
        mcp_server_create(name="docs", **kwargs)
    assert McpServer.objects.count() == 0


def _listed(*names: str, schema: dict[str, Any] | None = None) -> list[ListedTool]:
    return [ListedTool(name=n, description=f"{n} tool", input_schema=schema or {"type": "object"}) for n in names]


def test_sync_creates_updates_and_unlists_rows() -> None:
    # given
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9000/mcp")
    mcp_tools_sync(server_id=server.pk, fingerprint="f1", listed=_listed("search", "old"))
    McpTool.objects.filter(name="search").update(cost_cents=7, enabled=False)
    # when
    refusals = mcp_tools_sync(server_id=server.pk, fingerprint="f1", listed=_listed("search", "new"))
    # then
    assert refusals == []
    rows = {t.name: (t.exposed_name, t.is_listed, t.enabled, t.cost_cents) for t in McpTool.objects.all()}
    assert rows == {
        "search": ("docs__search", True, False, 7),
        "old": ("docs__old", False, True, 0),
        "new": ("docs__new", True, True, 0),
    }
    assert [t["name"] for t in cache_get(tools_cache_key(server.pk, "f1"))] == ["search", "new"]
    key = cache.make_key(tools_cache_key(server.pk, "f1"))
    assert 295 <= redis.Redis.from_url(settings.REDIS_URL).ttl(key) <= 300  # COPILOT_MCP_TOOLS_CACHE_TTL_S


def test_sync_refuses_colliding_names_with_a_clear_error() -> None:
    # given
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9000/mcp")
    # when
    refusals = mcp_tools_sync(server_id=server.pk, fingerprint="f1", listed=_listed("a.b", "a_b", "c"))
    # then
    expected = "Tool names 'a.b' and 'a_b' both become 'docs__a_b' for the model; rename one on the server."
    assert refusals == [expected]
    assert McpServer.objects.get().last_error == expected
    assert dict(McpTool.objects.values_list("name", "refused_reason")) == {"a.b": expected, "a_b": expected, "c": ""}


def test_sync_refuses_an_oversized_schema(settings: Any) -> None:
    # given
    settings.COPILOT_MCP_SCHEMA_MAX_CHARS = 100
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9000/mcp")
    big = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(20)}}
    assert len(json.dumps(big)) > 100
    # when
    refusals = mcp_tools_sync(server_id=server.pk, fingerprint="f1", listed=_listed("big", schema=big))
    # then
    assert refusals == ["The input schema of 'big' is over 100 characters."]
    assert McpTool.objects.get().refused_reason == refusals[0]
