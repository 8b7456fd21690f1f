"""The MCP admin: add a server, test its connection, switch tools off, credentials never shown."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from chat.mcp.config import secret_decrypt
from chat.mcp.services import mcp_server_create
from chat.models import McpServer, McpTool
from copilot_site.testing.mcp_server import McpTestServer
from tests.chat.mcp.conftest import TOKEN
from tests.chat.mcp.test_e2e_mcp import _call, _completions, _mcp_offered, _outputs, _send
from tests.chat.turns.helpers import fake, person

ADD_URL = reverse("admin:chat_mcpserver_add")
CHANGELIST_URL = reverse("admin:chat_mcpserver_changelist")
TOOLS_URL = reverse("admin:chat_mcptool_changelist")


def _form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "docs",
        "transport": "streamable-http",
        "url": "http://127.0.0.1:9/mcp",
        "command": "[]",
        "enabled": "on",
        "timeout_s": "5",
        "bearer_token": "",
        "headers_json": "",
        "tools-TOTAL_FORMS": "0",
        "tools-INITIAL_FORMS": "0",
        "tools-MIN_NUM_FORMS": "0",
        "tools-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def _messages(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_add_server_stores_the_token_encrypted_and_never_renders_it(admin_client: Any) -> None:
    # when
    response = admin_client.post(
        ADD_URL,
        _form(
            bearer_token="tok-never-shown-42",
            headers_json='{"X-Team": "hdr-never-shown-7"}',
            env_json='{"API_KEY": "env-never-shown-9"}',
        ),
    )
    # then
    assert response.status_code == 302
    server = McpServer.objects.get()
    secret = secret_decrypt(server.secret_encrypted)
    assert (secret.bearer_token, secret.headers) == ("tok-never-shown-42", {"X-Team": "hdr-never-shown-7"})
    assert secret.env == {"API_KEY": "env-never-shown-9"}
    for url in (reverse("admin:chat_mcpserver_change", args=[server.pk]), CHANGELIST_URL):
        page = admin_client.get(url).content.decode()
        assert "tok-never-shown-42" not in page
        assert "hdr-never-shown-7" not in page
        assert "env-never-shown-9" not in page
        assert server.secret_encrypted not in page
    change_page = admin_client.get(reverse("admin:chat_mcpserver_change", args=[server.pk])).content.decode()
    assert "a bearer token; 1 header(s): X-Team; 1 environment variable(s): API_KEY" in change_page


@pytest.mark.django_db
def test_saving_without_a_token_keeps_the_stored_one_and_clear_removes_it(admin_client: Any) -> None:
    # given
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9/mcp", bearer_token="t-1")
    url = reverse("admin:chat_mcpserver_change", args=[server.pk])
    # when: an edit that leaves the credential fields empty
    assert admin_client.post(url, _form(timeout_s="7")).status_code == 302
    # then
    server.refresh_from_db()
    assert (server.timeout_s, secret_decrypt(server.secret_encrypted).bearer_token) == (7.0, "t-1")
    # when: clear
    assert admin_client.post(url, _form(clear_credentials="on")).status_code == 302
    server.refresh_from_db()
    assert server.secret_encrypted == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("_case", "overrides", "error"),
    [
        ("bad name", {"name": "Docs Server"}, "A server name is 1–32 lowercase letters"),
        ("stdio without command", {"transport": "stdio", "url": ""}, "A stdio server needs a command"),
        ("headers not an object", {"headers_json": "[1]"}, "Headers are a JSON object of strings."),
    ],
)
def test_add_refuses_invalid_settings(admin_client: Any, _case: str, overrides: dict[str, str], error: str) -> None:
    response = admin_client.post(ADD_URL, _form(**overrides))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert McpServer.objects.count() == 0


@pytest.mark.django_db
def test_admin_pages_render(admin_client: Any) -> None:
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9/mcp")
    tool = McpTool.objects.create(server=server, name="echo", exposed_name="docs__echo")
    assert admin_client.get(CHANGELIST_URL, {"q": "docs"}).status_code == 200
    assert admin_client.get(reverse("admin:chat_mcpserver_change", args=[server.pk])).status_code == 200
    assert admin_client.get(TOOLS_URL, {"q": "echo"}).status_code == 200
    assert admin_client.get(reverse("admin:chat_mcptool_change", args=[tool.pk])).status_code == 200


@pytest.mark.django_db
def test_users_cannot_reach_the_mcp_admin(client: Any, alice: Any) -> None:
    # given: a signed-in user who is not staff
    client.force_login(alice)
    # when
    response = client.post(ADD_URL, _form())
    # then
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert McpServer.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_test_connection_records_status_and_lists_tools(admin_client: Any, mcp_http: McpTestServer) -> None:
    # given
    server = mcp_server_create(name="docs", url=mcp_http.url, bearer_token=TOKEN)
    # when
    response = admin_client.post(CHANGELIST_URL, {"action": "test_connection", "_selected_action": [server.pk]})
    # then
    assert response.status_code == 302
    (message,) = _messages(response)
    assert message.startswith("docs: reachable in ")
    assert message.endswith("ms; 10 tool(s): echo, add, image, fail, sleep, whoami, session, getenv, big, grow.")
    server.refresh_from_db()
    assert (server.last_reachable, server.last_tool_count, server.last_error) == (True, 10, "")
    assert server.last_latency_ms is not None
    assert sorted(McpTool.objects.values_list("exposed_name", flat=True)) == [
        "docs__add", "docs__big", "docs__echo", "docs__fail", "docs__getenv", "docs__grow", "docs__image",
        "docs__session", "docs__sleep", "docs__whoami",
    ]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_test_connection_reports_a_wrong_token_and_an_unreachable_server(
    admin_client: Any, mcp_http: McpTestServer
) -> None:
    # given
    wrong = mcp_server_create(name="wrong", url=mcp_http.url, bearer_token="not-the-token")
    down = mcp_server_create(name="down", url="http://127.0.0.1:9/mcp", timeout_s=2)
    # when
    response = admin_client.post(CHANGELIST_URL, {"action": "test_connection", "_selected_action": [wrong.pk, down.pk]})
    # then
    texts = sorted(_messages(response))
    assert texts[0].startswith("down: unreachable — ")
    assert texts[1].startswith("wrong: unreachable — ")
    assert "401" in texts[1]
    assert list(McpServer.objects.order_by("name").values_list("name", "last_reachable")) == [
        ("down", False), ("wrong", False),
    ]  # fmt: skip
    assert McpTool.objects.count() == 0


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_disabled_tool_leaves_the_models_tool_list(
    admin_client: Any, stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: the tools listed by a test connection
    server = mcp_server_create(name="docs", url=mcp_http.url, bearer_token=TOKEN)
    admin_client.post(CHANGELIST_URL, {"action": "test_connection", "_selected_action": [server.pk]})
    echo = McpTool.objects.get(exposed_name="docs__echo")
    # when: the operator disables it
    response = admin_client.post(TOOLS_URL, {"action": "disable_tools", "_selected_action": [echo.pk]})
    assert _messages(response)[-1] == "1 tool(s) disabled."
    alice = person("alice")
    result = _send(stack, alice, "x " + fake({"tool_calls": [_call("docs__echo", "c1", text="a")]}, {"text": "ok"}))
    # then: not offered, and a call to it is refused without reaching the server
    assert _mcp_offered(_completions(fake_llm)[0]) == [
        "docs__add", "docs__big", "docs__fail", "docs__getenv", "docs__grow", "docs__image", "docs__session",
        "docs__sleep", "docs__whoami",
    ]  # fmt: skip
    assert _outputs(result) == {"c1": "Tool execution error: unknown tool 'docs__echo'"}


@pytest.mark.django_db
def test_tool_page_sets_price_switch_and_approval_policy(admin_client: Any) -> None:
    # given
    server = mcp_server_create(name="docs", url="http://127.0.0.1:9/mcp")
    tool = McpTool.objects.create(server=server, name="echo", exposed_name="docs__echo")
    # when
    response = admin_client.post(
        reverse("admin:chat_mcptool_change", args=[tool.pk]), {"cost_cents": "4", "approval_policy": "always"}
    )
    # then: unticked "enabled" switches it off
    assert response.status_code == 302
    tool.refresh_from_db()
    assert (tool.enabled, tool.cost_cents, tool.approval_policy) == (False, 4, "always")
    assert (tool.name, tool.exposed_name) == ("echo", "docs__echo")


@pytest.mark.django_db(transaction=True)
def test_save_and_test_connection_on_the_change_page(admin_client: Any, mcp_http: McpTestServer) -> None:
    # given: a server saved without its token
    server = mcp_server_create(name="docs", url=mcp_http.url)
    url = reverse("admin:chat_mcpserver_change", args=[server.pk])
    assert "Save and test connection" in admin_client.get(url).content.decode()
    # when: the operator adds the token and tests in one go
    response = admin_client.post(url, _form(url=mcp_http.url, bearer_token=TOKEN, _test_connection="1"))
    # then
    assert response.status_code == 302
    assert response["Location"] == url
    assert [m for m in _messages(response) if m.startswith("docs: ")][0].startswith("docs: reachable in ")
    server.refresh_from_db()
    assert (server.last_reachable, server.last_tool_count) == (True, 10)
