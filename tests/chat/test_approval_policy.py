"""The approval policy (chat/tools/approval.py) and the account page's threshold setting."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from chat.models import ToolApprovalThreshold
from chat.tools import Tool, registered_tools
from chat.tools.approval import approval_policy_register, approval_policy_unregister, approval_reason


def _tool(name: str) -> Tool:
    return registered_tools()[name]()


@override_settings(COPILOT_TOOLS_REQUIRING_APPROVAL=[])
def test_nothing_asks_without_a_listing_a_threshold_or_a_tool_policy() -> None:
    assert approval_reason(tool=_tool("calculator"), cost_cents=0, threshold_cents=None) is None
    assert approval_reason(tool=_tool("web_fetch"), cost_cents=5, threshold_cents=None) is None


@override_settings(COPILOT_TOOLS_REQUIRING_APPROVAL=["calculator"])
def test_a_listed_tool_asks_and_others_do_not() -> None:
    assert approval_reason(tool=_tool("calculator"), cost_cents=0, threshold_cents=None) == "listed"
    assert approval_reason(tool=_tool("get_current_time"), cost_cents=0, threshold_cents=None) is None


@pytest.mark.parametrize(
    ("cost", "threshold", "expected"),
    [(3, 2, "cost_over_threshold"), (3, 3, None), (3, 0, "cost_over_threshold"), (0, 0, None), (3, None, None)],
)
@override_settings(COPILOT_TOOLS_REQUIRING_APPROVAL=[])
def test_a_priced_tool_asks_only_above_the_users_threshold(cost: int, threshold: int | None, expected: Any) -> None:
    assert approval_reason(tool=_tool("web_fetch"), cost_cents=cost, threshold_cents=threshold) == expected


@override_settings(COPILOT_TOOLS_REQUIRING_APPROVAL=["web_fetch"])
def test_the_threshold_reason_wins_over_the_listing() -> None:
    assert approval_reason(tool=_tool("web_fetch"), cost_cents=5, threshold_cents=1) == "cost_over_threshold"


@override_settings(COPILOT_TOOLS_REQUIRING_APPROVAL=[])
def test_a_tool_sources_own_policy_plugs_in() -> None:
    # a tool built by another source (an MCP server's tool stored as "ask first")
    stored = _tool("get_current_time")
    stored.requires_approval = True
    assert approval_reason(tool=stored, cost_cents=0, threshold_cents=None) == "tool_policy"
    assert approval_reason(tool=_tool("get_current_time"), cost_cents=0, threshold_cents=None) is None

    # a richer rule: ask only for some arguments
    def only_utc(*, tool: Tool, arguments: Any, **_: Any) -> Any:
        return "tool_policy" if arguments.get("timezone") == "UTC" else None

    approval_policy_register(only_utc)
    try:
        clock = _tool("get_current_time")
        assert approval_reason(tool=clock, cost_cents=0, threshold_cents=None, arguments={"timezone": "UTC"}) == (
            "tool_policy"
        )
        assert approval_reason(tool=clock, cost_cents=0, threshold_cents=None, arguments={}) is None
    finally:
        approval_policy_unregister(only_utc)


@pytest.mark.django_db
def test_the_account_page_sets_shows_and_removes_the_threshold(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    page = client.get("/account/").content.decode()
    assert "Tools that ask first" in page
    assert "Now: never asked because of the price." in page

    saved = client.post("/account/approval-threshold/", {"threshold_cents": "25"}, follow=True)
    assert saved.redirect_chain == [("/account/", 302)]
    assert ToolApprovalThreshold.objects.get(user=alice).threshold_cents == 25
    body = saved.content.decode()
    assert "Saved: tools costing more than 25¢ a run ask first." in body
    assert "Now: tools costing more than 25¢ a run ask first." in body
    assert 'value="25"' in body

    client.post("/account/approval-threshold/", {"threshold_cents": "0"})
    assert ToolApprovalThreshold.objects.get(user=alice).threshold_cents == 0
    assert "Now: every priced tool asks first." in client.get("/account/").content.decode()

    removed = client.post("/account/approval-threshold/", {"threshold_cents": ""}, follow=True)
    assert not ToolApprovalThreshold.objects.filter(user=alice).exists()
    assert "Saved: tools no longer ask first because of their price." in removed.content.decode()


@pytest.mark.django_db
def test_a_bad_threshold_is_refused_and_changes_nothing(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    client.post("/account/approval-threshold/", {"threshold_cents": "7"})
    refused = client.post("/account/approval-threshold/", {"threshold_cents": "-3"}, follow=True)
    assert "The approval threshold was not saved: Ensure this value is greater than or equal to 0." in (
        refused.content.decode()
    )
    assert ToolApprovalThreshold.objects.get(user=alice).threshold_cents == 7
    assert Client().post("/account/approval-threshold/", {"threshold_cents": "1"}).status_code == 302  # to login
    assert client.get("/account/approval-threshold/").status_code == 405


@pytest.mark.django_db
def test_the_admin_lists_and_shows_approvals_read_only(admin_client: Any, alice: Any) -> None:
    import datetime

    from django.utils import timezone

    from chat.models import ChatSession, ToolApproval

    session = ChatSession.objects.create(user=alice)
    approval = ToolApproval.objects.create(
        session=session,
        turn_id="8d3c1c0e-5a7e-4a56-9d83-1f0c3c1d2b10",
        tool_call_id="call_1",
        tool_name="calculator",
        input={"expression": "6*7"},
        reason="listed",
        expires_at=timezone.now() + datetime.timedelta(minutes=10),
    )
    listing = admin_client.get("/admin/chat/toolapproval/?q=calculator")
    assert listing.status_code == 200
    assert str(approval.pk) in listing.content.decode()
    assert admin_client.get(f"/admin/chat/toolapproval/{approval.pk}/change/").status_code == 200
    assert admin_client.get("/admin/chat/toolapproval/add/").status_code == 403
