"""The account page's tool approval card: ``{% load chat_approvals %}{% approval_threshold_card %}``.

A tag, so the account page (in `copilot_site.accounts`, below chat) shows chat's setting
without importing chat.
"""

from __future__ import annotations

from typing import Any

from django import template

from chat.forms import ApprovalThresholdForm
from chat.selectors import approval_threshold_get
from chat.tools.approval import tools_requiring_approval

register = template.Library()


@register.inclusion_tag("chat/_approval_threshold.html", takes_context=True)
def approval_threshold_card(context: template.Context) -> dict[str, Any]:
    user = context["request"].user
    current = approval_threshold_get(user=user) if user.is_authenticated else None
    return {
        "form": ApprovalThresholdForm(initial={"threshold_cents": current}),
        "threshold_cents": current,
        "always_asked": sorted(tools_requiring_approval()),
        "csrf_token": context.get("csrf_token"),
    }
