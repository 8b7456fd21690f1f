"""The one error table: HTTP body and WebSocket frame of an application error."""

from __future__ import annotations

from datetime import UTC, datetime

from billing.errors import InsufficientCredits
from chat.errors import SessionNotFound
from copilot_site.core.exceptions import api_exception_handler, error_frame, error_response_body
from ratelimits.errors import RateLimitExceeded, ResetTooMany

NOW = datetime(2026, 4, 3, 15, 30, tzinfo=UTC)


def test_the_body_is_the_detail_and_the_extra_fields() -> None:
    exc = RateLimitExceeded("daily", datetime(2026, 4, 4, tzinfo=UTC), now=NOW)
    assert error_response_body(exc) == (
        429,
        {
            "detail": "You've reached your daily usage limit. Resets in 8h 30m.",
            "window": "daily",
            "resets_at": "2026-04-04T00:00:00Z",
        },
    )


def test_the_http_answer_and_the_frame_come_from_the_same_body() -> None:
    exc = SessionNotFound("abc")
    response = api_exception_handler(exc, {})
    assert response is not None
    assert (response.status_code, response.data) == (404, {"detail": "Session abc not found."})
    assert error_frame(exc) == {"type": "error", "code": "not_found", "message": "Session abc not found."}


def test_each_error_carries_its_own_code() -> None:
    resets = ResetTooMany("You've used all 5 resets for today.")
    credits = InsufficientCredits()
    assert error_frame(resets) == {
        "type": "error",
        "code": "too_many_resets",
        "message": "You've used all 5 resets for today.",
    }
    assert error_frame(credits) == {"type": "error", "code": "insufficient_credits", "message": "Insufficient credits."}
    assert (resets.status, credits.status) == (429, 402)


def test_a_full_rate_limit_window_is_a_rate_limited_frame() -> None:
    exc = RateLimitExceeded("weekly", datetime(2026, 4, 6, tzinfo=UTC), now=NOW)
    assert error_frame(exc) == {"type": "rate_limited", "window": "weekly", "resets_at": "2026-04-06T00:00:00Z"}
