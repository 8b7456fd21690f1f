"""POST /api/chat/usage/reset: every branch, with balances, counters and ledger rows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import redis
from rest_framework.test import APIClient

from billing.models import CreditTransaction
from billing.selectors import credit_balance
from billing.services import credits_grant
from ratelimits import redis_store
from ratelimits.models import PersonalSpendCap, RateLimitAuditEntry

from .helpers import FRIDAY, spend

pytestmark = pytest.mark.usefixtures("frozen")

URL = "/api/chat/usage/reset"
DAILY_LIMIT = 1_000_000  # FREE
WEEKLY_LIMIT = 5_000_000


def give_credits(user: Any, cents: int) -> None:
    credits_grant(user=user, amount_cents=cents, idempotency_key=f"test-grant-{user.pk}-{cents}", reason="test")


def counters(user: Any) -> tuple[int, int]:
    return redis_store.read_spend(user.pk, FRIDAY)


def reset_count(user: Any) -> int:
    return redis_store.reset_count_get(user.pk, FRIDAY)


def usage_rows(user: Any) -> list[tuple[str, int]]:
    return list(
        CreditTransaction.objects.filter(user=user)
        .exclude(kind="GRANT")
        .order_by("pk")
        .values_list("kind", "amount_cents")
    )


@pytest.fixture
def at_daily_limit(alice: Any) -> None:
    give_credits(alice, 1200)
    spend(alice, daily=DAILY_LIMIT, weekly=3_000_000)


@pytest.mark.usefixtures("at_daily_limit")
def test_a_reset_charges_credits_and_resets_the_day(alice: Any, alice_client: APIClient, store: redis.Redis) -> None:
    # when
    response = alice_client.post(URL)
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["credits_charged"], body["remaining_balance"]) == (True, 500, 700)
    assert body["usage"]["daily"]["percent_used"] == 0.0
    assert body["usage"]["weekly"]["percent_used"] == 40.0  # 3.0M − 1.0M of 5.0M
    assert credit_balance(user=alice) == 700
    assert usage_rows(alice) == [("USAGE", -500)]
    tx = CreditTransaction.objects.get(user=alice, kind="USAGE")
    assert tx.reason == "Copilot daily rate limit reset"
    assert counters(alice) == (0, 2_000_000)
    assert store.exists(redis_store.daily_key(alice.pk, FRIDAY)) == 0
    assert reset_count(alice) == 1
    assert store.exists(redis_store.reset_lock_key(alice.pk)) == 0
    entry = RateLimitAuditEntry.objects.get(user=alice)
    assert (entry.action, entry.actor, entry.details["credits_charged"]) == ("PAID_RESET", alice, 500)


def test_a_reset_never_takes_weekly_below_zero(alice: Any, alice_client: APIClient, store: redis.Redis) -> None:
    # given: an override raised the daily limit above this week's spend
    give_credits(alice, 500)
    spend(alice, daily=DAILY_LIMIT, weekly=DAILY_LIMIT)
    store.set(redis_store.weekly_key(alice.pk, FRIDAY), 400_000, keepttl=True)
    # when
    response = alice_client.post(URL)
    # then
    assert response.status_code == 200
    assert counters(alice) == (0, 0)
    assert store.ttl(redis_store.weekly_key(alice.pk, FRIDAY)) > 0


def assert_nothing_happened(user: Any, *, balance: int, daily: int, weekly: int, count: int = 0) -> None:
    assert credit_balance(user=user) == balance
    assert usage_rows(user) == []
    assert counters(user) == (daily, weekly)
    assert reset_count(user) == count
    assert redis_store.redis_client().exists(redis_store.reset_lock_key(user.pk)) == 0
    assert RateLimitAuditEntry.objects.filter(user=user).count() == 0


@pytest.mark.usefixtures("at_daily_limit")
def test_a_zero_reset_cost_disables_the_feature(alice: Any, alice_client: APIClient, settings: Any) -> None:
    settings.COPILOT_RATE_LIMIT_RESET_COST_CENTS = 0
    response = alice_client.post(URL)
    assert (response.status_code, response.json()) == (400, {"detail": "Rate limit reset is not available."})
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT, weekly=3_000_000)


@pytest.mark.usefixtures("at_daily_limit")
def test_credits_switched_off_answers_400(alice: Any, alice_client: APIClient, settings: Any) -> None:
    settings.ENABLE_CREDIT = False
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        400,
        "Rate limit reset is not available (credit system is disabled).",
    )
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT, weekly=3_000_000)


@pytest.mark.usefixtures("at_daily_limit")
def test_no_daily_limit_answers_400(alice: Any, alice_client: APIClient, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=0, weekly=None)
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        400,
        "No daily limit is configured — nothing to reset.",
    )
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT, weekly=3_000_000)


@pytest.mark.usefixtures("at_daily_limit")
def test_an_unreadable_reset_count_answers_503(alice: Any, alice_client: APIClient) -> None:
    with mock.patch("ratelimits.redis_store.reset_count_get", side_effect=redis.ConnectionError("down")):
        response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        503,
        "Unable to verify reset eligibility — please try again later.",
    )
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT, weekly=3_000_000)


@pytest.mark.usefixtures("at_daily_limit")
def test_the_daily_reset_cap_answers_429(alice: Any, alice_client: APIClient, store: redis.Redis) -> None:
    store.set(redis_store.reset_count_key(alice.pk, FRIDAY), 5)
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (429, "You've used all 5 resets for today.")
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT, weekly=3_000_000, count=5)


@pytest.mark.usefixtures("at_daily_limit")
def test_no_cap_when_max_resets_is_zero(alice: Any, alice_client: APIClient, store: redis.Redis, settings: Any) -> None:
    settings.COPILOT_MAX_DAILY_RESETS = 0
    store.set(redis_store.reset_count_key(alice.pk, FRIDAY), 50)
    assert alice_client.post(URL).status_code == 200
    assert reset_count(alice) == 51


@pytest.mark.usefixtures("at_daily_limit")
def test_a_held_lock_answers_429(alice: Any, alice_client: APIClient, store: redis.Redis) -> None:
    store.set(redis_store.reset_lock_key(alice.pk), "other-request", ex=10)
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        429,
        "A reset is already in progress. Please try again.",
    )
    assert store.get(redis_store.reset_lock_key(alice.pk)) == b"other-request"  # not ours to release
    assert credit_balance(user=alice) == 1200
    assert counters(alice) == (DAILY_LIMIT, 3_000_000)


@pytest.mark.usefixtures("at_daily_limit")
def test_a_redis_error_taking_the_lock_answers_429(alice: Any, alice_client: APIClient) -> None:
    with mock.patch("ratelimits.redis_store.reset_lock_acquire", side_effect=redis.ConnectionError("down")):
        response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        429,
        "A reset is already in progress. Please try again.",
    )
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT, weekly=3_000_000)


def test_below_the_daily_limit_answers_400(alice: Any, alice_client: APIClient) -> None:
    give_credits(alice, 1200)
    spend(alice, daily=DAILY_LIMIT - 1, weekly=3_000_000)
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (400, "You have not reached your daily limit yet.")
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT - 1, weekly=3_000_000)


def test_an_exhausted_week_answers_400(alice: Any, alice_client: APIClient) -> None:
    give_credits(alice, 1200)
    spend(alice, daily=DAILY_LIMIT, weekly=WEEKLY_LIMIT)
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        400,
        "Your weekly limit is also reached. Resetting the daily limit won't help.",
    )
    assert_nothing_happened(alice, balance=1200, daily=DAILY_LIMIT, weekly=WEEKLY_LIMIT)


def test_a_personal_cap_is_not_something_to_pay_for(
    alice: Any, alice_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    give_credits(alice, 1200)
    with django_capture_on_commit_callbacks(execute=True):
        PersonalSpendCap.objects.create(user=alice, daily_cap_microdollars=200_000)
    spend(alice, daily=200_000, weekly=200_000)
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        400,
        "You have reached the personal daily cap you set. Raise or remove it on your account page instead.",
    )
    assert_nothing_happened(alice, balance=1200, daily=200_000, weekly=200_000)


def test_insufficient_credits_answers_402(alice: Any, alice_client: APIClient) -> None:
    give_credits(alice, 499)
    spend(alice, daily=DAILY_LIMIT, weekly=3_000_000)
    response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (402, "Insufficient credits to reset your rate limit.")
    assert_nothing_happened(alice, balance=499, daily=DAILY_LIMIT, weekly=3_000_000)


@pytest.mark.usefixtures("at_daily_limit")
def test_a_failed_redis_reset_is_refunded_and_answers_503(alice: Any, alice_client: APIClient) -> None:
    with mock.patch("ratelimits.redis_store.reset_daily_window", side_effect=redis.ConnectionError("down")):
        response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        503,
        "Rate limit reset failed — please try again later. Your credits have not been charged.",
    )
    assert credit_balance(user=alice) == 1200
    assert usage_rows(alice) == [("USAGE", -500), ("REFUND", 500)]
    refund = CreditTransaction.objects.get(user=alice, kind="REFUND")
    assert refund.reason == "Refund for failed copilot rate-limit reset"
    assert counters(alice) == (DAILY_LIMIT, 3_000_000)
    assert reset_count(alice) == 0
    assert redis_store.redis_client().exists(redis_store.reset_lock_key(alice.pk)) == 0


@pytest.mark.usefixtures("at_daily_limit")
def test_a_failed_refund_answers_the_contact_support_503_and_logs_critical(
    alice: Any, alice_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        mock.patch("ratelimits.redis_store.reset_daily_window", side_effect=redis.ConnectionError("down")),
        mock.patch("ratelimits.services.credits_refund", side_effect=RuntimeError("ledger down")),
        caplog.at_level(logging.CRITICAL, logger="ratelimits"),
    ):
        response = alice_client.post(URL)
    assert (response.status_code, response.json()["detail"]) == (
        503,
        "Rate limit reset failed and the automatic refund also failed. Please contact support for assistance.",
    )
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert f"user_id={alice.pk}, cost=500 cents" in critical[0].getMessage()
    assert credit_balance(user=alice) == 700
    assert usage_rows(alice) == [("USAGE", -500)]
    assert reset_count(alice) == 0


@pytest.mark.usefixtures("at_daily_limit")
def test_the_sixth_reset_of_the_day_is_refused(alice: Any, alice_client: APIClient, store: redis.Redis) -> None:
    # given: five paid resets, each after spending the day again
    give_credits(alice, 2000)
    for _ in range(5):
        spend(alice, daily=DAILY_LIMIT)
        store.set(redis_store.weekly_key(alice.pk, FRIDAY), 0)
        assert alice_client.post(URL).status_code == 200
    spend(alice, daily=DAILY_LIMIT)
    # when
    response = alice_client.post(URL)
    # then
    assert (response.status_code, response.json()["detail"]) == (429, "You've used all 5 resets for today.")
    assert credit_balance(user=alice) == 3200 - 5 * 500
    assert reset_count(alice) == 5


def test_reset_needs_a_login(api_client: APIClient, db: Any) -> None:
    assert api_client.post(URL).status_code in (401, 403)
