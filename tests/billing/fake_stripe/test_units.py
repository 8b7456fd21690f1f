"""Pure units of the fake Stripe server, no HTTP: the form decoder and the state machine."""

from __future__ import annotations

from copilot_site.testing.fake_stripe import FakeStripeState, parse_form
from copilot_site.testing.fake_stripe.store import DAY


def test_parse_form_decodes_stripe_nested_encoding() -> None:
    raw = (
        "items[0][id]=si_1&items[0][price]=price_b&metadata[user_id]=7&metadata[0]=zero"
        "&phases[0][items][0][price]=price_a&phases[1][items][0][price]=price_b&phases[1][duration][interval]=month"
        "&expand[]=latest_invoice&expand[]=customer&cancel_at_period_end=true&description="
    )
    assert parse_form(raw) == {
        "items": [{"id": "si_1", "price": "price_b"}],
        "metadata": {"user_id": "7", "0": "zero"},
        "phases": [
            {"items": [{"price": "price_a"}]},
            {"items": [{"price": "price_b"}], "duration": {"interval": "month"}},
        ],
        "expand": ["latest_invoice", "customer"],
        "cancel_at_period_end": "true",
        "description": "",
    }


def test_state_machine_without_http() -> None:
    clock = [1_700_000_000]
    state = FakeStripeState(clock=lambda: clock[0], api_version="2099-01-01.test")
    price = state.seed_price("pro", 2000)
    customer = state.create_customer({"email": "unit@example.com", "metadata": {"user_id": "1"}})
    subscription = state.create_subscription({"customer": customer["id"], "items": [{"price": price}]})
    assert subscription["status"] == "active"
    assert subscription["current_period_start"] == clock[0]
    assert subscription["current_period_end"] == clock[0] + 30 * DAY
    clock[0] += 15 * DAY
    state.update_subscription(subscription["id"], {"cancel_at_period_end": "true"})
    result = state.advance_subscription(subscription["id"])
    assert [e["type"] for e in result["events"]] == ["customer.subscription.deleted"]
    assert state.retrieve("subscription", subscription["id"])["status"] == "canceled"
    assert {e["api_version"] for e in state.all_events()} == {"2099-01-01.test"}
    assert state.all_events()[0]["request"] == {"id": None, "idempotency_key": None}
