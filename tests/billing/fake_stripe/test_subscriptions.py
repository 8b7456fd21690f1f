"""The fake Stripe subscription lifecycle: changes, prorations, cancellation, schedules, invoice failure, disputes."""

from __future__ import annotations

import json

import pytest
import stripe

from copilot_site.testing.fake_stripe import FakeStripeServer
from copilot_site.testing.fake_stripe.store import DAY
from tests.billing.fake_stripe.conftest import (
    API_KEY,
    control,
    raw_request,
    subscribe,
    types_of,
)


def test_price_change_with_always_invoice_creates_proration_invoice(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    item = subscription["items"].data[0]
    first_invoice = subscription.latest_invoice
    mark = len(server.state.events)

    updated = client.v1.subscriptions.update(
        subscription.id,
        params={"items": [{"id": item.id, "price": prices["business"]}], "proration_behavior": "always_invoice"},
    )
    new_item = updated["items"].data[0]
    assert new_item.id == item.id
    assert new_item.price.id == prices["business"]
    assert new_item.price.unit_amount == 10000
    assert updated.latest_invoice != first_invoice

    invoice = client.v1.invoices.retrieve(str(updated.latest_invoice))
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid"
    amounts = sorted(line.amount for line in invoice.lines.data)
    assert amounts[0] < 0 < amounts[-1]
    assert 7900 <= invoice.amount_paid <= 8000  # BUSINESS - PRO for (almost) the whole period
    assert all(line["parent"]["subscription_item_details"]["proration"] for line in invoice.lines.data)

    events = server.state.all_events()[mark:]
    assert types_of(events)[0] == "customer.subscription.updated"
    assert "invoice.paid" in types_of(events)
    previous = events[0]["data"]["previous_attributes"]
    assert previous["items"]["data"][0]["price"]["id"] == prices["pro"]


def test_cancel_at_period_end_then_advance_cancels(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    customer_id, subscription, _ = subscribe(client, server, prices["pro"])
    period_end = subscription["current_period_end"]
    pending = client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})
    assert pending.status == "active"
    assert pending.cancel_at_period_end is True
    assert pending.cancel_at == period_end

    advanced = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert advanced["event_types"] == ["customer.subscription.deleted"]
    deleted = advanced["events"][0]["data"]["object"]
    assert deleted["status"] == "canceled"
    assert deleted["ended_at"] == period_end

    canceled = client.v1.subscriptions.retrieve(subscription.id)
    assert canceled.status == "canceled"
    assert client.v1.subscriptions.list(params={"customer": customer_id}).data == []
    every = client.v1.subscriptions.list(params={"customer": customer_id, "status": "all"})
    assert [s.id for s in every.data] == [subscription.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": False})


def test_advance_renews_with_a_paid_invoice(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    old_end = subscription["current_period_end"]
    advanced = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert "customer.subscription.updated" in advanced["event_types"]
    assert advanced["event_types"][-2:] == ["invoice.paid", "invoice.payment_succeeded"]
    renewed = client.v1.subscriptions.retrieve(subscription.id)
    assert renewed.status == "active"
    assert renewed["current_period_start"] == old_end
    assert renewed["items"].data[0].current_period_end == old_end + 30 * DAY
    invoice = client.v1.invoices.retrieve(str(renewed.latest_invoice))
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.amount_paid == 2000


def test_cancel_immediately(client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    canceled = client.v1.subscriptions.cancel(subscription.id)
    assert canceled.status == "canceled"
    assert canceled.canceled_at is not None
    assert server.state.all_events()[-1]["type"] == "customer.subscription.deleted"


def test_schedule_two_phases_switches_price_then_releases(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["business"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    assert schedule.id.startswith("sub_sched_")
    assert schedule.status == "active"
    assert schedule.subscription == subscription.id
    assert len(schedule.phases) == 1
    assert schedule.phases[0]["items"][0].price == prices["business"]
    assert client.v1.subscriptions.retrieve(subscription.id).schedule == schedule.id

    phase = schedule.phases[0]
    modified = client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {
                    "items": [{"price": prices["business"], "quantity": 1}],
                    "start_date": phase.start_date,
                    "end_date": phase.end_date,
                },
                {"items": [{"price": prices["pro"], "quantity": 1}], "proration_behavior": "none"},
            ],
            "end_behavior": "release",
        },
    )
    assert [p["items"][0].price for p in modified.phases] == [prices["business"], prices["pro"]]
    assert modified.phases[1].start_date == phase.end_date
    assert modified.phases[1].end_date == phase.end_date + 30 * DAY

    # End of phase 1: the downgrade takes effect, the schedule moves to its last phase.
    first = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert "customer.subscription.updated" in first["event_types"]
    switched = client.v1.subscriptions.retrieve(subscription.id)
    assert switched["items"].data[0].price.id == prices["pro"]
    assert switched.schedule == schedule.id
    assert client.v1.invoices.retrieve(str(switched.latest_invoice)).amount_paid == 2000
    in_last_phase = client.v1.subscription_schedules.retrieve(schedule.id)
    assert in_last_phase.status == "active"
    assert in_last_phase.current_phase is not None
    assert in_last_phase.current_phase.start_date == phase.end_date

    # End of the last phase: end_behavior=release lets the subscription run on its own.
    second = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert "subscription_schedule.released" in second["event_types"]
    done = client.v1.subscription_schedules.retrieve(schedule.id)
    assert done.status == "released"
    assert done.released_subscription == subscription.id
    assert done.subscription is None
    free_running = client.v1.subscriptions.retrieve(subscription.id)
    assert free_running.schedule is None
    assert free_running.status == "active"
    assert free_running["items"].data[0].price.id == prices["pro"]


def test_schedule_end_behavior_cancel_completes_and_cancels(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    client.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "cancel"})
    advanced = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert advanced["event_types"] == ["subscription_schedule.completed", "customer.subscription.deleted"]
    completed = client.v1.subscription_schedules.retrieve(schedule.id)
    assert completed.status == "completed"
    assert completed.completed_at == subscription["current_period_end"]
    assert client.v1.subscriptions.retrieve(subscription.id).status == "canceled"


def test_release_twice_raises_invalid_request(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    released = client.v1.subscription_schedules.release(schedule.id)
    assert released.status == "released"
    assert released.released_subscription == subscription.id
    assert client.v1.subscriptions.retrieve(subscription.id).schedule is None
    assert server.state.all_events()[-2]["type"] == "subscription_schedule.released"

    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.subscription_schedules.release(schedule.id)
    assert excinfo.value.http_status == 400
    assert "`released` status" in str(excinfo.value.user_message)


def test_schedule_refuses_a_subscription_already_on_a_schedule(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    with pytest.raises(stripe.InvalidRequestError, match="already attached to a schedule"):
        client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    with pytest.raises(stripe.InvalidRequestError, match="managed by the subscription schedule"):
        client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})


def test_failed_update_changes_nothing_and_emits_nothing(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    events_before = len(server.state.all_events())
    item = subscription["items"].data[0]
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.subscriptions.update(
            subscription.id,
            params={"cancel_at_period_end": True, "items": [{"id": item.id, "price": "price_missing"}]},
        )
    assert excinfo.value.param == "items[0][price]"
    unchanged = client.v1.subscriptions.retrieve(subscription.id)
    assert unchanged.cancel_at_period_end is False
    assert unchanged["items"].data[0].price.id == prices["pro"]
    assert len(server.state.all_events()) == events_before


def test_schedule_phase_iterations_is_rejected_like_the_pinned_api_version(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    status, _, body = raw_request(
        server,
        "POST",
        f"/v1/subscription_schedules/{schedule.id}",
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-www-form-urlencoded"},
        f"phases[0][items][0][price]={prices['pro']}&phases[0][iterations]=2",
    )
    assert status == 400
    assert json.loads(body)["error"]["param"] == "phases[0][iterations]"


def test_invoice_failure_then_recovery(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    failed = control(server, "/_fake/invoices/fail", {"subscription": subscription.id})
    assert "invoice.payment_failed" in failed["event_types"]
    assert failed["event_types"][-1] == "customer.subscription.updated"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"
    invoice = client.v1.invoices.retrieve(failed["object"]["id"])
    assert invoice.status == "open"
    assert invoice.attempt_count == 1

    paid = control(server, f"/_fake/invoices/{invoice.id}/pay")
    assert "invoice.paid" in paid["event_types"]
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"


def test_dispute_emits_charge_dispute_created(client: stripe.StripeClient, server: FakeStripeServer) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "Pack"}}}],
        }
    )
    control(server, f"/_fake/checkout/{session.id}/complete")
    intent = client.v1.payment_intents.retrieve(str(client.v1.checkout.sessions.retrieve(session.id).payment_intent))
    disputed = control(server, f"/_fake/charges/{intent.latest_charge}/dispute", {"reason": "fraudulent"})
    assert disputed["event_types"] == ["charge.dispute.created"]
    dispute = disputed["events"][0]["data"]["object"]
    assert dispute["charge"] == intent.latest_charge
    assert dispute["amount"] == 900
    assert dispute["payment_intent"] == intent.id
