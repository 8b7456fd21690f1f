"""The Stripe gateway: pinned version, idempotency keys, error translation, our own dataclasses."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from billing import stripe_gateway
from billing.errors import InvalidWebhook, PaymentProviderError
from copilot_site.testing.fake_stripe import sign_payload
from tests.billing.conftest import FakeStripe


def test_every_request_carries_the_pinned_api_version(fake_stripe: FakeStripe) -> None:
    stripe_gateway.price_unit_amount(fake_stripe.prices["PRO"])
    stripe_gateway.customer_create(user_id=7, email="alice@example.com", name="alice")
    assert [r["stripe_version"] for r in fake_stripe.requests()] == [stripe_gateway.API_VERSION] * 2


def test_customer_create_is_idempotent_per_user(fake_stripe: FakeStripe) -> None:
    first = stripe_gateway.customer_create(user_id=7, email="alice@example.com", name="alice")
    second = stripe_gateway.customer_create(user_id=7, email="alice@example.com", name="alice")
    assert first == second
    assert [r["idempotency_key"] for r in fake_stripe.requests()] == ["customer-create-7", "customer-create-7"]
    assert fake_stripe.requests()[0]["params"] == {
        "metadata": {"user_id": "7"},
        "email": "alice@example.com",
        "name": "alice",
    }


def test_a_stripe_error_becomes_a_payment_provider_error_logged_without_its_text(
    fake_stripe: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    fake_stripe.fail_next("/v1/prices/", 402, message="card 4242 secret detail")
    # when
    with caplog.at_level(logging.WARNING, logger="billing"), pytest.raises(PaymentProviderError) as excinfo:
        stripe_gateway.price_unit_amount(fake_stripe.prices["PRO"])
    # then
    error = excinfo.value
    assert (error.status, error.operation, error.stripe_error, error.stripe_code) == (
        502,
        "price_retrieve",
        "CardError",
        "card_declined",
    )
    assert "secret detail" not in error.detail
    record = next(r for r in caplog.records if r.name == "billing.stripe_gateway")
    assert record.getMessage() == "Stripe call failed: price_retrieve"
    assert (record.stripe_error, record.stripe_http_status) == ("CardError", 402)  # type: ignore[attr-defined]
    assert all("secret detail" not in str(value) for value in record.__dict__.values())


def test_without_a_secret_key_nothing_is_sent(fake_stripe: FakeStripe, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(PaymentProviderError):
        stripe_gateway.price_unit_amount(fake_stripe.prices["PRO"])
    assert fake_stripe.requests() == []


def test_subscription_period_is_read_from_the_item_in_current_api_versions() -> None:
    sub = stripe_gateway.subscription_from_dict(
        {
            "id": "sub_1",
            "customer": {"id": "cus_1"},
            "status": "active",
            "cancel_at_period_end": True,
            "schedule": None,
            "items": {
                "data": [
                    {"id": "si_1", "price": {"id": "price_1"}, "current_period_start": 100, "current_period_end": 200}
                ]
            },
            "metadata": {"user_id": 5},
        }
    )
    assert sub == stripe_gateway.Subscription(
        id="sub_1",
        customer_id="cus_1",
        status="active",
        price_id="price_1",
        item_id="si_1",
        cancel_at_period_end=True,
        schedule_id=None,
        current_period_start=datetime.fromtimestamp(100, tz=UTC),
        current_period_end=datetime.fromtimestamp(200, tz=UTC),
        metadata={"user_id": "5"},
    )


def test_a_schedule_reports_the_phase_after_the_current_one() -> None:
    schedule = stripe_gateway.schedule_from_dict(
        {
            "id": "sub_sched_1",
            "status": "active",
            "subscription": "sub_1",
            "customer": "cus_1",
            "current_phase": {"start_date": 100, "end_date": 200},
            "phases": [
                {"start_date": 100, "end_date": 200, "items": [{"price": "price_business"}]},
                {"start_date": 200, "end_date": 300, "items": [{"price": "price_pro"}]},
            ],
        }
    )
    nxt = schedule.next_phase()
    assert nxt is not None
    assert (nxt.price_id, nxt.start_date) == ("price_pro", datetime.fromtimestamp(200, tz=UTC))
    assert schedule.is_terminal is False


def test_event_construct_verifies_and_parses() -> None:
    payload = '{"id": "evt_1", "type": "invoice.paid", "created": 1700000000, "data": {"object": {"id": "in_1"}}}'
    event = stripe_gateway.event_construct(
        payload=payload.encode(), signature_header=sign_payload(payload, "whsec_x"), secret="whsec_x"
    )
    assert (event.id, event.type, event.data_object) == ("evt_1", "invoice.paid", {"id": "in_1"})
    assert event.created == datetime.fromtimestamp(1_700_000_000, tz=UTC)


@pytest.mark.parametrize(
    ("_case", "payload", "secret", "message"),
    [
        ("wrong secret", '{"id": "evt_1", "type": "x"}', "whsec_other", "Invalid signature"),
        ("not json", "{nope", "whsec_x", "Invalid payload"),
        ("not an event", "[1, 2]", "whsec_x", "Invalid payload"),
        ("no id", '{"type": "x"}', "whsec_x", "Invalid payload"),
    ],
)
def test_event_construct_rejects(_case: str, payload: str, secret: str, message: str) -> None:
    with pytest.raises(InvalidWebhook) as excinfo:
        stripe_gateway.event_construct(
            payload=payload.encode(), signature_header=sign_payload(payload, secret), secret="whsec_x"
        )
    assert excinfo.value.detail == message


def test_a_non_utf8_body_is_an_invalid_payload() -> None:
    with pytest.raises(InvalidWebhook, match="Invalid payload"):
        stripe_gateway.event_construct(payload=b"\xff\xfe", signature_header="t=1,v1=x", secret="whsec_x")
