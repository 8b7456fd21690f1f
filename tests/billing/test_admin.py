"""Django admin: smoke tests for every billing ModelAdmin, and each action through its service."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from billing import admin as billing_admin
from billing.models import (
    BillingConfig,
    CheckoutRecord,
    CreditTransaction,
    CustomerAccount,
    StripeEvent,
    Tier,
    TierChange,
)
from billing.selectors import credit_balance
from billing.services import account_get_or_create, account_tier_set, credits_adjust, credits_grant
from billing.webhooks import event_reprocess
from tests.billing.conftest import FakeStripe, committed

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(staff: Any) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def billing_rows(alice: Any, staff: Any) -> dict[str, Any]:
    account_tier_set(user=alice, tier=Tier.PRO, reason="seed", actor=staff)
    CustomerAccount.objects.filter(user=alice).update(stripe_customer_id="cus_alice")
    credits_grant(user=alice, amount_cents=500, idempotency_key="seed", reason="welcome")
    checkout = CheckoutRecord.objects.create(user=alice, kind=CheckoutRecord.Kind.TOP_UP, amount_cents=500)
    event = StripeEvent.objects.create(stripe_event_id="evt_1", type="invoice.paid", payload={"id": "evt_1"})
    BillingConfig().save()
    return {
        "customeraccount": CustomerAccount.objects.get(user=alice),
        "credittransaction": CreditTransaction.objects.get(),
        "tierchange": TierChange.objects.get(),
        "checkoutrecord": checkout,
        "stripeevent": event,
        "billingconfig": BillingConfig.objects.get(),
    }


@pytest.mark.parametrize(
    "model", ["customeraccount", "credittransaction", "tierchange", "checkoutrecord", "stripeevent", "billingconfig"]
)
def test_changelist_search_and_change_page(staff_client: Client, billing_rows: dict[str, Any], model: str) -> None:
    changelist = reverse(f"admin:billing_{model}_changelist")
    assert staff_client.get(changelist).status_code == 200
    assert staff_client.get(changelist, {"q": "alice"}).status_code == 200
    obj = billing_rows[model]
    assert staff_client.get(reverse(f"admin:billing_{model}_change", args=[obj.pk])).status_code == 200


def test_the_account_list_links_to_stripe(staff_client: Client, billing_rows: dict[str, Any]) -> None:
    page = staff_client.get(reverse("admin:billing_customeraccount_changelist")).content.decode()
    assert 'href="https://dashboard.stripe.com/test/customers/cus_alice"' in page
    assert "Open in Stripe" in page


def test_the_ledger_is_read_only(staff_client: Client, billing_rows: dict[str, Any]) -> None:
    row = billing_rows["credittransaction"]
    response = staff_client.post(reverse("admin:billing_credittransaction_change", args=[row.pk]), {"amount_cents": 9})
    assert response.status_code == 403
    assert staff_client.get(reverse("admin:billing_credittransaction_add")).status_code == 403
    row.refresh_from_db()
    assert row.amount_cents == 500


def _action(client: Client, action: str, account: CustomerAccount, **form: Any) -> Any:
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(account.pk)], **form}
    return client.post(reverse("admin:billing_customeraccount_changelist"), data, follow=True)


def test_set_tier_shows_a_form_then_goes_through_set_user_tier(
    staff_client: Client, staff: Any, alice: Any, billing_rows: dict[str, Any]
) -> None:
    account = billing_rows["customeraccount"]
    # when: the action is chosen
    form_page = _action(staff_client, "action_set_tier", account)
    # then: the intermediate form, nothing changed yet
    assert form_page.status_code == 200
    assert b'name="reason"' in form_page.content
    token = form_page.context["form"].initial["idempotency_token"]
    assert account_of_tier(alice) == Tier.PRO
    # when: applied
    with mock.patch.object(billing_admin, "account_tier_set", wraps=account_tier_set) as service, committed():
        _action(
            staff_client,
            "action_set_tier",
            account,
            apply="1",
            tier="ENTERPRISE",
            reason="contract",
            idempotency_token=token,
        )
    # then
    service.assert_called_once_with(user=alice, tier="ENTERPRISE", reason="contract", actor=staff)
    assert account_of_tier(alice) == Tier.ENTERPRISE
    assert TierChange.objects.filter(tier=Tier.ENTERPRISE, reason="contract", actor=staff).count() == 1


def account_of_tier(user: Any) -> str:
    return CustomerAccount.objects.get(user=user).tier


def test_grant_credits_goes_through_the_ledger_once_per_form(
    staff_client: Client, staff: Any, alice: Any, billing_rows: dict[str, Any]
) -> None:
    account = billing_rows["customeraccount"]
    form = {"apply": "1", "amount_cents": "1200", "reason": "support ticket 42", "idempotency_token": "tok123"}
    # when: submitted twice (double click)
    with mock.patch.object(billing_admin, "credits_grant", wraps=credits_grant) as service:
        _action(staff_client, "action_grant_credits", account, **form)
        _action(staff_client, "action_grant_credits", account, **form)
    # then
    assert service.call_count == 2
    assert service.call_args.kwargs["idempotency_key"] == f"admin-grant:tok123:{account.pk}"
    assert credit_balance(user=alice) == 1700
    grant = CreditTransaction.objects.get(reason="support ticket 42")
    assert (grant.kind, grant.amount_cents, grant.created_by) == ("GRANT", 1200, staff)


def test_adjust_credits_down_and_refuses_below_zero(
    staff_client: Client, staff: Any, alice: Any, billing_rows: dict[str, Any]
) -> None:
    account = billing_rows["customeraccount"]
    # when
    with mock.patch.object(billing_admin, "credits_adjust", wraps=credits_adjust) as service:
        _action(
            staff_client,
            "action_adjust_credits",
            account,
            apply="1",
            amount_cents="-200",
            reason="duplicate",
            idempotency_token="a1",
        )
    service.assert_called_once_with(
        user=alice, amount_cents=-200, reason="duplicate", actor=staff, idempotency_key=f"admin-adjust:a1:{account.pk}"
    )
    refused = _action(
        staff_client,
        "action_adjust_credits",
        account,
        apply="1",
        amount_cents="-301",
        reason="too much",
        idempotency_token="a2",
    )
    # then
    assert credit_balance(user=alice) == 300
    assert CreditTransaction.objects.get(kind="ADJUSTMENT").amount_cents == -200
    assert "below zero" in refused.content.decode()


def test_adjust_requires_a_non_zero_amount(staff_client: Client, alice: Any, billing_rows: dict[str, Any]) -> None:
    account = billing_rows["customeraccount"]
    page = _action(
        staff_client, "action_adjust_credits", account, apply="1", amount_cents="0", reason="x", idempotency_token="a3"
    )
    assert b"must not be zero" in page.content
    assert not CreditTransaction.objects.filter(kind="ADJUSTMENT").exists()


def test_reprocess_runs_a_failed_event_again(fake_stripe: FakeStripe, staff_client: Client, alice: Any) -> None:
    # given: a top-up event whose processing failed earlier
    account = account_get_or_create(user=alice)
    CustomerAccount.objects.filter(pk=account.pk).update(stripe_customer_id="cus_a")
    payload = {
        "id": "evt_failed",
        "type": "checkout.session.completed",
        "created": 1_800_000_000,
        "data": {"object": {
            "id": "cs_test_1", "mode": "payment", "payment_status": "paid", "amount_total": 700, "customer": "cus_a",
            "payment_intent": "pi_1", "metadata": {"user_id": str(alice.pk), "kind": "credit_top_up"},
        }},
    }  # fmt: skip
    row = StripeEvent.objects.create(stripe_event_id="evt_failed", type=payload["type"], payload=payload, error="Boom")
    # when
    with mock.patch.object(billing_admin, "event_reprocess", wraps=event_reprocess) as service:
        staff_client.post(
            reverse("admin:billing_stripeevent_changelist"),
            {"action": "action_reprocess", ACTION_CHECKBOX_NAME: [str(row.pk)]},
        )
    # then
    service.assert_called_once()
    row.refresh_from_db()
    assert (row.processed_at is not None, row.error) == (True, "")
    assert credit_balance(user=alice) == 700


def test_reprocess_skips_processed_events(staff_client: Client, alice: Any) -> None:
    from django.utils import timezone

    row = StripeEvent.objects.create(
        stripe_event_id="evt_done", type="invoice.paid", payload={"id": "evt_done"}, processed_at=timezone.now()
    )
    assert event_reprocess(row) == "already_processed"
