"""The per-turn cost cap helper the engine reads (0 = no cap)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from billing.models import Tier
from ratelimits.errors import TurnCostCapExceeded
from ratelimits.selectors import turn_cost_cap_get


@pytest.mark.parametrize(
    ("tier", "cap"),
    [(Tier.FREE, 500_000), (Tier.PRO, 2_000_000), (Tier.BUSINESS, 5_000_000), (Tier.ENTERPRISE, 0)],
)
def test_the_default_cap_follows_the_tier(alice: Any, set_tier: Callable[..., None], tier: str, cap: int) -> None:
    set_tier(alice, tier)
    assert turn_cost_cap_get(user=alice) == cap


def test_a_past_due_account_gets_the_free_cap(alice: Any, set_tier: Callable[..., None]) -> None:
    set_tier(alice, Tier.BUSINESS, past_due=True)
    assert turn_cost_cap_get(user=alice) == 500_000


def test_the_caps_come_from_settings(alice: Any, set_tier: Callable[..., None], settings: Any) -> None:
    settings.COPILOT_TURN_COST_CAP_MICRODOLLARS = {"PRO": 123}
    set_tier(alice, Tier.PRO)
    assert turn_cost_cap_get(user=alice) == 123
    set_tier(alice, Tier.FREE)
    assert turn_cost_cap_get(user=alice) == 0  # a tier missing from the setting has no cap


def test_an_invalid_cap_means_no_cap(alice: Any, settings: Any) -> None:
    settings.COPILOT_TURN_COST_CAP_MICRODOLLARS = {"FREE": "lots"}
    assert turn_cost_cap_get(user=alice) == 0


def test_the_cap_error_names_no_amount() -> None:
    exc = TurnCostCapExceeded()
    assert exc.detail == (
        "This response was stopped because it reached the cost limit for a single turn on your plan. "
        "Try a narrower request or split it into steps."
    )
