"""The 80 % warning: once per window crossing, with the exhaustion estimate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from ratelimits.selectors import usage_warning_get
from ratelimits.services import usage_record, usage_reset_by_staff, usage_warning_consume

from .helpers import spend

pytestmark = pytest.mark.usefixtures("frozen")


def test_below_80_percent_there_is_no_warning(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=1000, weekly=10_000)
    spend(alice, daily=799, weekly=799)
    assert usage_warning_get(user=alice) is None
    assert usage_warning_consume(user=alice) is None


def test_crossing_80_percent_warns_once_per_window(alice: Any, set_override: Callable[..., Any]) -> None:
    # given
    set_override(alice, daily=1_000_000, weekly=10_000_000)
    usage_record(user=alice, microdollars=700_000, now=datetime(2026, 4, 3, 14, 30, tzinfo=UTC))
    assert usage_warning_consume(user=alice) is None
    # when: the turn that crosses 80 %
    usage_record(user=alice, microdollars=100_000)
    first = usage_warning_consume(user=alice)
    usage_record(user=alice, microdollars=50_000)
    second = usage_warning_consume(user=alice)
    # then: $0.80 since 14:00 (1.5 h) → the last $0.20 in 22.5 min
    assert first == {
        "window": "daily",
        "percent_used": 80.0,
        "resets_at": "2026-04-04T00:00:00Z",
        "projected_exhaustion_at": "2026-04-03T15:52:30Z",
    }
    assert second is None
    assert usage_warning_get(user=alice) is not None  # the stateless view still reports it


def test_the_weekly_window_warns_separately(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=0, weekly=1000)
    spend(alice, daily=900, weekly=900)
    warning = usage_warning_consume(user=alice)
    assert warning is not None
    assert (warning["window"], warning["percent_used"], warning["resets_at"]) == (
        "weekly",
        90.0,
        "2026-04-06T00:00:00Z",
    )
    assert usage_warning_consume(user=alice) is None


def test_both_windows_crossed_warn_daily_first_then_weekly(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=1000, weekly=1000)
    spend(alice, daily=850, weekly=850)
    windows = [usage_warning_consume(user=alice), usage_warning_consume(user=alice), usage_warning_consume(user=alice)]
    assert [w["window"] if w else None for w in windows] == ["daily", "weekly", None]


def test_after_a_reset_crossing_again_warns_again(alice: Any, staff: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=1000, weekly=0)
    spend(alice, daily=900)
    assert usage_warning_consume(user=alice) is not None
    usage_reset_by_staff(user=alice, actor=staff, include_weekly=False)
    spend(alice, daily=850)
    again = usage_warning_consume(user=alice)
    assert again is not None
    assert again["percent_used"] == 85.0


def test_at_the_limit_the_estimate_is_now(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=1000, weekly=0)
    spend(alice, daily=1000)
    warning = usage_warning_get(user=alice)
    assert warning is not None
    assert (warning["percent_used"], warning["projected_exhaustion_at"]) == (100.0, "2026-04-03T15:30:00Z")


def test_unlimited_windows_never_warn(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=0, weekly=0)
    spend(alice, daily=10**9, weekly=10**9)
    assert usage_warning_consume(user=alice) is None


def test_no_warning_and_no_error_when_redis_is_down(
    alice: Any, set_override: Callable[..., Any], dead_redis_url: str
) -> None:
    set_override(alice, daily=1000, weekly=0)
    assert usage_warning_consume(user=alice) is None
