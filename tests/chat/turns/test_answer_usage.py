"""What each answer cost the user's limits, end to end (daphne + a real Celery worker + the scripted
LLM): percentages of the daily and weekly windows from the turn's recorded spend, never dollars."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chat.models import TurnUsage
from chat.turns.registry import turn_meta_get
from ratelimits.services import limit_override_set
from tests.chat.turns.helpers import Person, fake, person, read_sse, wait_until
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _send(base: str, p: Person, message: str) -> None:
    url = f"{base}/api/chat/sessions/{p.session.id}/stream"
    result = read_sse("POST", url, headers=p.headers, json_body={"message": message})
    assert result.status == 200, result.json_body
    wait_until(lambda: (meta := turn_meta_get(p.session.id)) is None or not meta.is_running)


def test_each_answer_says_what_share_of_the_day_and_week_it_used(stack: str) -> None:
    # given: limits of $0.20 a day and $1 a week
    alice = person("alice")
    staff = UserFactory(username="staff", is_staff=True)
    limit_override_set(
        user=alice.user, daily_microdollars=200_000, weekly_microdollars=1_000_000, reason="test", actor=staff
    )
    paid = fake({"text": "Paid answer.", "usage": {"prompt_tokens": 100, "completion_tokens": 20, "cost": 0.006}})
    # when: an answer that cost $0.006, then a turn that failed before any output
    _send(stack, alice, "Question " + paid)
    _send(stack, alice, "Again " + fake({"http_status": 500}))
    # then
    detail = httpx.get(f"{stack}/api/chat/sessions/{alice.session.id}", headers=alice.headers, timeout=10).json()
    assert [(m["role"], m["kind"], m["usage"]) for m in detail["messages"]] == [
        ("user", "message", None),
        (
            "assistant",
            "message",
            {"charged": True, "outcome": "completed", "daily_percent": 3.0, "weekly_percent": 0.6},
        ),
        ("user", "message", None),
        (
            "assistant",
            "error_notice",
            {"charged": False, "outcome": "failed", "daily_percent": 0.0, "weekly_percent": 0.0},
        ),
    ]
    ui = httpx.get(f"{stack}/api/chat/sessions/{alice.session.id}/ui-messages", headers=alice.headers, timeout=10)
    assert [m["metadata"].get("usage") for m in ui.json()["messages"]] == [
        None,
        {"charged": True, "outcome": "completed", "daily_percent": 3.0, "weekly_percent": 0.6},
        None,
        {"charged": False, "outcome": "failed", "daily_percent": 0.0, "weekly_percent": 0.0},
    ]
    # the shares are the turns' recorded spend, the same the usage API counts
    assert list(TurnUsage.objects.order_by("started_at").values_list("cost_microdollars", "outcome")) == [
        (6000, "completed"),
        (None, "failed"),
    ]
    usage = httpx.get(f"{stack}/api/chat/usage", headers=alice.headers, timeout=10).json()
    assert (usage["daily"]["percent_used"], usage["weekly"]["percent_used"]) == (3.0, 0.6)


def test_an_unlimited_window_has_no_percentage(stack: str, fake_llm: Any) -> None:
    # given
    alice = person("alice")
    staff = UserFactory(username="staff", is_staff=True)
    limit_override_set(user=alice.user, daily_microdollars=0, weekly_microdollars=500_000, reason="test", actor=staff)
    # when
    _send(
        stack, alice, "Q " + fake({"text": "A.", "usage": {"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.001}})
    )
    # then
    detail = httpx.get(f"{stack}/api/chat/sessions/{alice.session.id}", headers=alice.headers, timeout=10).json()
    assert detail["messages"][1]["usage"] == {
        "charged": True,
        "outcome": "completed",
        "daily_percent": None,
        "weekly_percent": 0.2,
    }
