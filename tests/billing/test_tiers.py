"""Tier changes (``account_tier_set``), the drift check, and ``GET /api/billing/subscription``'s caches."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from billing import tasks
from billing.models import BillingConfig, CustomerAccount, Tier, TierChange
from billing.selectors import proration_credit_cents, tier_get_for_user
from billing.services import account_tier_set, subscription_drift_check
from tests.billing.conftest import BUSINESS_CENTS, PRO_CENTS, FakeStripe, TaskCalls, committed, subscribe

pytestmark = pytest.mark.django_db


def _billing_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("billing") and r.levelno >= logging.WARNING]


# --- account_tier_set ---------------------------------------------------------------------------------


def test_set_user_tier_records_the_change_and_invalidates_caches_after_commit(
    alice: Any, staff: Any, billing_task_calls: TaskCalls
) -> None:
    # given: cached tier and pending change
    cache.set(f"ratelimits:tier:{alice.pk}", "FREE", 300)
    cache.set(f"billing:pending_change:{alice.pk}", {"tier": None, "effective_at": None}, 30)
    # when
    with committed() as callbacks:
        account_tier_set(user=alice, tier=Tier.BUSINESS, reason="partner deal", actor=staff)
        # then: nothing happens before the commit
        assert cache.get(f"ratelimits:tier:{alice.pk}") == "FREE"
        billing_task_calls.drift_check.assert_not_called()
    # then
    assert len(callbacks) == 2
    assert tier_get_for_user(user=alice) == Tier.BUSINESS
    change = TierChange.objects.get()
    assert (change.previous_tier, change.tier, change.reason, change.actor) == (
        Tier.FREE,
        Tier.BUSINESS,
        "partner deal",
        staff,
    )
    assert cache.get(f"ratelimits:tier:{alice.pk}") is None
    assert cache.get(f"billing:pending_change:{alice.pk}") is None
    billing_task_calls.drift_check.assert_called_once_with(alice.pk)


def test_set_user_tier_to_the_same_tier_records_nothing(alice: Any) -> None:
    account_tier_set(user=alice, tier=Tier.FREE, reason="noop")
    assert not TierChange.objects.exists()


def test_set_user_tier_rejects_an_unknown_tier(alice: Any) -> None:
    with pytest.raises(ValueError, match="Unknown tier"):
        account_tier_set(user=alice, tier="PLATINUM", reason="x")
    assert not CustomerAccount.objects.filter(user=alice).exclude(tier=Tier.FREE).exists()


def test_webhook_tier_changes_skip_the_drift_check(alice: Any, billing_task_calls: TaskCalls) -> None:
    with committed():
        account_tier_set(user=alice, tier=Tier.PRO, reason="Stripe subscription sub_1", check_drift=False)
    billing_task_calls.drift_check.assert_not_called()


def test_a_broker_outage_does_not_fail_the_tier_change(alice: Any, billing_task_calls: TaskCalls) -> None:
    # given
    billing_task_calls.drift_check.side_effect = ConnectionError("broker down")
    # when
    with committed():
        account_tier_set(user=alice, tier=Tier.PRO, reason="admin")
    # then
    assert tier_get_for_user(user=alice) == Tier.PRO


# --- the drift check --------------------------------------------------------------------------------


def test_drift_check_warns_when_the_tier_no_longer_matches_stripe(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    # given: PRO through Stripe, then staff sets BUSINESS
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    account_tier_set(user=alice, tier=Tier.BUSINESS, reason="override")
    # when
    with caplog.at_level(logging.WARNING, logger="billing"):
        drifted = subscription_drift_check(user_id=alice.pk, timeout_s=5)
    # then
    assert drifted is True
    assert _billing_warnings(caplog) == [
        f"Admin tier override will drift from Stripe: user={alice.pk} admin_tier=BUSINESS stripe_sub={sub['id']} "
        f"stripe_price={fake_stripe.prices[Tier.PRO]} expected_price={fake_stripe.prices[Tier.BUSINESS]}"
    ]


def test_drift_check_is_quiet_when_tier_and_stripe_agree(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    with caplog.at_level(logging.WARNING, logger="billing"):
        assert subscription_drift_check(user_id=alice.pk, timeout_s=5) is False
    assert _billing_warnings(caplog) == []


def test_drift_check_survives_a_stripe_outage(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    account_tier_set(user=alice, tier=Tier.BUSINESS, reason="override")
    fake_stripe.fail_next("/v1/subscriptions", 500)
    with caplog.at_level(logging.WARNING, logger="billing"):
        tasks.subscription_drift_check(alice.pk)  # the task body: never raises
    assert "Drift check could not read Stripe" in _billing_warnings(caplog)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_drift_check_gives_up_at_its_timeout(
    fake_stripe: FakeStripe,
    settings: Any,
    alice: Any,
    alice_client: APIClient,
    black_hole: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given: Stripe stops answering
    subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    account_tier_set(user=alice, tier=Tier.BUSINESS, reason="override")
    settings.STRIPE_API_BASE = black_hole
    settings.BILLING_DRIFT_CHECK_TIMEOUT_S = 0.5
    # when
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="billing"):
        tasks.subscription_drift_check(alice.pk)
    # then: bounded by the timeout (no retries), no exception
    assert time.monotonic() - started < 3
    assert "Drift check could not read Stripe" in _billing_warnings(caplog)


def test_the_drift_task_contains_unexpected_errors(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: Any) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr("billing.services.subscription_drift_check", broken)
    tasks.subscription_drift_check(alice.pk)  # does not raise


# --- GET /api/billing/subscription ----------------------------------------------------------------------


def test_status_for_a_free_user(fake_stripe: FakeStripe, alice_client: APIClient) -> None:
    body = alice_client.get("/api/billing/subscription").json()
    assert body == {
        "tier": "FREE",
        "monthly_cost": 0,
        "tier_costs": {"FREE": 0, "PRO": PRO_CENTS, "BUSINESS": BUSINESS_CENTS, "ENTERPRISE": 0},
        "proration_credit_cents": 0,
        "pending_tier": None,
        "pending_tier_effective_at": None,
        "url": "",
    }


def test_tier_prices_are_cached(fake_stripe: FakeStripe, alice_client: APIClient) -> None:
    alice_client.get("/api/billing/subscription")
    mark = fake_stripe.mark()
    alice_client.get("/api/billing/subscription")
    assert fake_stripe.calls_since(mark, prices=True) == []
    assert cache.get(f"billing:price_amount:{fake_stripe.prices[Tier.PRO]}") == PRO_CENTS


def test_a_failed_price_lookup_is_not_cached_and_is_retried(
    fake_stripe: FakeStripe, alice_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    pro = fake_stripe.prices[Tier.PRO]
    fake_stripe.fail_next(f"/v1/prices/{pro}", 500)
    # when
    with caplog.at_level(logging.WARNING, logger="billing"):
        first = alice_client.get("/api/billing/subscription").json()
    # then
    assert first["tier_costs"]["PRO"] == 0
    assert f"Failed to retrieve Stripe price {pro} — returning None (not cached)" in _billing_warnings(caplog)
    assert cache.get(f"billing:price_amount:{pro}") is None
    # when
    mark = fake_stripe.mark()
    second = alice_client.get("/api/billing/subscription").json()
    # then
    assert second["tier_costs"]["PRO"] == PRO_CENTS
    assert fake_stripe.calls_since(mark, prices=True) == [f"GET /v1/prices/{pro}"]


def test_without_payments_costs_come_from_the_display_setting(
    fake_stripe: FakeStripe, settings: Any, alice_client: APIClient
) -> None:
    settings.ENABLE_PLATFORM_PAYMENT = False
    settings.BILLING_TIER_PRICES_CENTS = {"PRO": 1900}
    body = alice_client.get("/api/billing/subscription").json()
    assert body["tier_costs"] == {"FREE": 0, "PRO": 1900, "BUSINESS": 0, "ENTERPRISE": 0}
    assert fake_stripe.calls() == []


def test_the_pending_change_is_cached_and_refreshed_after_a_change(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    assert alice_client.get("/api/billing/subscription").json()["pending_tier"] is None
    mark = fake_stripe.mark()
    # when: read again within 30 s
    alice_client.get("/api/billing/subscription")
    # then: from the cache
    assert fake_stripe.calls_since(mark) == []
    # when: a downgrade
    with committed():
        body = alice_client.post("/api/billing/subscription", {"tier": Tier.PRO}, format="json").json()
    # then: the reply and the next read see it at once
    assert body["pending_tier"] == Tier.PRO
    assert alice_client.get("/api/billing/subscription").json()["pending_tier"] == Tier.PRO


def test_a_stripe_error_while_reading_the_pending_change_reports_none(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    with committed():
        alice_client.post("/api/billing/subscription", {"tier": Tier.PRO}, format="json")
    cache.delete(f"billing:pending_change:{alice.pk}")
    fake_stripe.fail_next("/v1/subscription_schedules/", 500)
    # when
    response = alice_client.get("/api/billing/subscription")
    # then
    assert response.status_code == 200
    assert (response.json()["pending_tier"], response.json()["pending_tier_effective_at"]) == (None, None)
    # and the failure was not cached
    assert alice_client.get("/api/billing/subscription").json()["pending_tier"] == Tier.PRO


def test_a_subscriber_sees_monthly_cost_and_proration_credit(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    body = alice_client.get("/api/billing/subscription").json()
    assert (body["tier"], body["monthly_cost"]) == (Tier.PRO, PRO_CENTS)
    assert PRO_CENTS - 2 <= body["proration_credit_cents"] <= PRO_CENTS  # the period has just begun


def test_proration_credit_is_the_unused_share_of_the_period(alice: Any) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    account = CustomerAccount(
        user=alice,
        stripe_subscription_id="sub_1",
        subscription_status="active",
        current_period_start=start,
        current_period_end=start + timedelta(days=30),
    )
    assert proration_credit_cents(account=account, monthly_cost_cents=3000, now=start + timedelta(days=10)) == 2000
    assert proration_credit_cents(account=account, monthly_cost_cents=1000, now=start + timedelta(days=10)) == 666
    assert proration_credit_cents(account=account, monthly_cost_cents=3000, now=start + timedelta(days=31)) == 0
    account.subscription_status = "canceled"
    assert proration_credit_cents(account=account, monthly_cost_cents=3000, now=start) == 0


# --- the admin configuration row ----------------------------------------------------------------------


def test_the_admin_row_overrides_the_settings_and_is_re_read_after_save(
    fake_stripe: FakeStripe, alice_client: APIClient
) -> None:
    # given: payments on in settings, cached
    assert alice_client.get("/api/billing/subscription").json()["tier_costs"]["PRO"] == PRO_CENTS
    # when: an operator switches payments off
    with committed():
        BillingConfig(enable_platform_payment=False).save()
    # then
    response = alice_client.post(
        "/api/billing/subscription",
        {"tier": Tier.PRO, "success_url": "https://app.example.com/", "cancel_url": "https://app.example.com/"},
        format="json",
    )
    assert response.status_code == 422
    assert BillingConfig.objects.get().pk == 1
