"""Twenty simultaneous paid resets: the lock and the count keep the charge exact."""

from __future__ import annotations

import threading
from typing import Any
from unittest import mock

import pytest
from django.db import connections
from django.utils import timezone

from billing.models import CreditTransaction
from billing.selectors import credit_balance
from billing.services import credits_grant
from ratelimits import redis_store
from ratelimits.errors import RateLimitError
from ratelimits.services import usage_reset_paid
from tests.factories import UserFactory

from .helpers import spend

THREADS = 20


def _race(user: Any) -> list[str]:
    """Fire THREADS resets at once; each outcome is "ok" or the refusal's status and text."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        try:
            barrier.wait()
            usage_reset_paid(user=user)
            outcome = "ok"
        except RateLimitError as exc:
            outcome = f"{exc.status} {exc.detail}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == THREADS
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_concurrent_resets_charge_exactly_once_per_success() -> None:
    # given: at the daily limit, with credits for four resets
    user = UserFactory(username="racer")
    credits_grant(user=user, amount_cents=2000, idempotency_key="race-grant", reason="test")
    now = timezone.now()
    spend(user, daily=1_000_000, weekly=2_000_000, now=now)
    # when
    outcomes = _race(user)
    # then: one reset went through; the rest found the lock held or the day already reset
    successes = outcomes.count("ok")
    refused = {o for o in outcomes if o != "ok"}
    assert successes == 1
    assert refused <= {
        "429 A reset is already in progress. Please try again.",
        "400 You have not reached your daily limit yet.",
    }
    assert credit_balance(user=user) == 2000 - 500 * successes
    assert CreditTransaction.objects.filter(user=user, kind="USAGE").count() == successes
    assert CreditTransaction.objects.filter(user=user, kind="REFUND").count() == 0
    assert redis_store.reset_count_get(user.pk, now) == successes
    assert redis_store.read_spend(user.pk, now) == (0, 1_000_000)


@pytest.mark.django_db(transaction=True)
def test_concurrent_resets_never_pass_the_daily_cap(settings: Any) -> None:
    # given: one reset left today, and spend far over the day so every request qualifies
    settings.COPILOT_MAX_DAILY_RESETS = 2
    user = UserFactory(username="capped-racer")
    credits_grant(user=user, amount_cents=10_000, idempotency_key="cap-race-grant", reason="test")
    now = timezone.now()
    redis_store.reset_count_incr(user.pk, now)
    spend(user, daily=1_000_000, weekly=1_000_000, now=now)

    # Every request that takes the lock sees the day exhausted again (a turn recorded meanwhile).
    original_read = redis_store.read_spend

    def day_always_spent(user_id: int, at: Any) -> tuple[int, int]:
        daily, weekly = original_read(user_id, at)
        return max(daily, 1_000_000), weekly

    # when
    with mock.patch("ratelimits.redis_store.read_spend", side_effect=day_always_spent):
        outcomes = _race(user)
    # then
    assert outcomes.count("ok") == 1
    assert credit_balance(user=user) == 10_000 - 500
    assert CreditTransaction.objects.filter(user=user, kind="USAGE").count() == 1
    assert redis_store.reset_count_get(user.pk, now) == 2
