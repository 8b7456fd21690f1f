"""The credit ledger: exactly-once writes, never a negative balance, concurrency and restarts."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
from django.db import connection

from billing.errors import BillingUnprocessable, InsufficientCredits
from billing.models import CreditTransaction, CustomerAccount
from billing.selectors import credit_balance, credits_can_afford
from billing.services import (
    credits_adjust,
    credits_claw_back,
    credits_grant,
    credits_refund,
    credits_spend,
    credits_top_up,
)

Kind = CreditTransaction.Kind


def _seed(user: Any, cents: int) -> None:
    credits_grant(user=user, amount_cents=cents, idempotency_key=f"seed:{user.pk}", reason="seed")


def _ledger_sum(user: Any) -> int:
    return sum(CreditTransaction.objects.filter(user=user).values_list("amount_cents", flat=True))


@pytest.mark.django_db
def test_spend_writes_one_usage_row_and_returns_the_new_balance(alice: Any) -> None:
    # given
    _seed(alice, 1000)
    metadata = {"reason": "copilot_tool_execution", "tool": "web_search", "tool_call_id": "c1"}
    # when
    balance = credits_spend(
        user=alice, amount_cents=300, idempotency_key="tool:t1:c1", reason="web_search", metadata=metadata
    )
    # then
    assert balance == 700
    row = CreditTransaction.objects.get(kind=Kind.USAGE)
    assert (row.amount_cents, row.balance_after_cents, row.metadata) == (-300, 700, metadata)
    assert CustomerAccount.objects.get(user=alice).credit_balance_cents == 700


@pytest.mark.django_db
def test_a_retried_tool_charge_with_the_same_key_charges_once(alice: Any) -> None:
    # given: the charge ran, then the turn was cancelled and the charge retried
    _seed(alice, 1000)
    credits_spend(user=alice, amount_cents=250, idempotency_key="tool:turn-1:call-1", reason="tool")
    # when
    balance = credits_spend(user=alice, amount_cents=250, idempotency_key="tool:turn-1:call-1", reason="tool")
    # then
    assert balance == 750
    assert CreditTransaction.objects.filter(kind=Kind.USAGE).count() == 1


@pytest.mark.django_db
def test_insufficient_balance_raises_and_writes_no_row(alice: Any) -> None:
    # given
    _seed(alice, 100)
    # when
    with pytest.raises(InsufficientCredits) as excinfo:
        credits_spend(user=alice, amount_cents=101, idempotency_key="tool:t:c", reason="tool")
    # then
    assert (excinfo.value.balance_cents, excinfo.value.required_cents, excinfo.value.status) == (100, 101, 402)
    assert not CreditTransaction.objects.filter(kind=Kind.USAGE).exists()
    assert credit_balance(user=alice) == 100


@pytest.mark.django_db
def test_spend_by_a_user_without_an_account_is_insufficient(bob: Any) -> None:
    with pytest.raises(InsufficientCredits):
        credits_spend(user=bob, amount_cents=1, idempotency_key="tool:t:c", reason="tool")
    assert not CreditTransaction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("_case", "amount"), [("zero", 0), ("negative", -5)])
def test_spend_rejects_a_non_positive_amount(alice: Any, _case: str, amount: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        credits_spend(user=alice, amount_cents=amount, idempotency_key="k", reason="tool")
    assert not CreditTransaction.objects.exists()


@pytest.mark.django_db
def test_with_credits_disabled_nothing_is_charged(alice: Any, settings: Any) -> None:
    # given
    _seed(alice, 500)
    settings.ENABLE_CREDIT = False
    # when
    balance = credits_spend(user=alice, amount_cents=400, idempotency_key="tool:t:c", reason="tool")
    # then
    assert balance == 500
    assert not CreditTransaction.objects.filter(kind=Kind.USAGE).exists()
    assert credits_can_afford(user=alice, amount_cents=10_000) is True


@pytest.mark.django_db
def test_credits_can_afford_compares_with_the_balance(alice: Any) -> None:
    _seed(alice, 300)
    assert credits_can_afford(user=alice, amount_cents=300) is True
    assert credits_can_afford(user=alice, amount_cents=301) is False


@pytest.mark.django_db
def test_grant_refuses_a_usage_entry(alice: Any) -> None:
    with pytest.raises(ValueError, match="USAGE"):
        credits_grant(user=alice, amount_cents=5, idempotency_key="k", reason="x", kind=Kind.USAGE)
    assert not CreditTransaction.objects.exists()


@pytest.mark.django_db
def test_top_up_applies_once_per_checkout_session(alice: Any) -> None:
    # when
    first = credits_top_up(user=alice, amount_cents=1500, checkout_session_id="cs_test_1")
    second = credits_top_up(user=alice, amount_cents=1500, checkout_session_id="cs_test_1")
    # then
    assert (first, second) == (1500, 1500)
    row = CreditTransaction.objects.get()
    assert (row.kind, row.idempotency_key, row.metadata["checkout_session_id"]) == (
        Kind.TOP_UP,
        "topup:cs_test_1",
        "cs_test_1",
    )


@pytest.mark.django_db
def test_refund_gives_credits_back_once(alice: Any) -> None:
    # given
    _seed(alice, 500)
    credits_spend(user=alice, amount_cents=500, idempotency_key="reset:1", reason="daily reset")
    # when
    credits_refund(user=alice, amount_cents=500, idempotency_key="reset-refund:1", reason="reset failed")
    balance = credits_refund(user=alice, amount_cents=500, idempotency_key="reset-refund:1", reason="reset failed")
    # then
    assert balance == 500
    assert CreditTransaction.objects.filter(kind=Kind.REFUND).count() == 1


@pytest.mark.django_db
def test_adjust_moves_the_balance_both_ways_and_records_actor_and_reason(alice: Any, staff: Any) -> None:
    # when
    up = credits_adjust(user=alice, amount_cents=800, reason="goodwill", actor=staff, idempotency_key="adj:1")
    down = credits_adjust(user=alice, amount_cents=-300, reason="correction", actor=staff, idempotency_key="adj:2")
    # then
    assert (up, down) == (800, 500)
    rows = list(CreditTransaction.objects.order_by("pk").values_list("kind", "amount_cents", "reason", "created_by"))
    assert rows == [(Kind.ADJUSTMENT, 800, "goodwill", staff.pk), (Kind.ADJUSTMENT, -300, "correction", staff.pk)]


@pytest.mark.django_db
def test_adjust_may_not_go_below_zero(alice: Any, staff: Any) -> None:
    _seed(alice, 100)
    with pytest.raises(BillingUnprocessable, match="below zero"):
        credits_adjust(user=alice, amount_cents=-101, reason="oops", actor=staff, idempotency_key="adj:1")
    assert not CreditTransaction.objects.filter(kind=Kind.ADJUSTMENT).exists()
    assert credit_balance(user=alice) == 100


@pytest.mark.django_db
def test_adjust_requires_a_reason(alice: Any, staff: Any) -> None:
    with pytest.raises(BillingUnprocessable, match="reason"):
        credits_adjust(user=alice, amount_cents=5, reason="  ", actor=staff, idempotency_key="adj:1")
    assert not CreditTransaction.objects.exists()


@pytest.mark.django_db
def test_claw_back_stops_at_zero_and_reports_what_it_took(alice: Any) -> None:
    # given: 300 left of a refunded 1000 purchase
    _seed(alice, 300)
    # when
    result = credits_claw_back(
        user=alice, amount_cents=1000, idempotency_key="refund:re_1", kind=Kind.REFUND, reason="refund"
    )
    # then
    assert (result.balance_cents, result.applied_cents, result.created) == (0, -300, True)
    assert _ledger_sum(alice) == 0


@pytest.mark.django_db
def test_the_balance_always_equals_the_ledger_sum(alice: Any, staff: Any) -> None:
    # given / when
    credits_grant(user=alice, amount_cents=1000, idempotency_key="g", reason="x")
    credits_top_up(user=alice, amount_cents=500, checkout_session_id="cs_1")
    credits_spend(user=alice, amount_cents=200, idempotency_key="s1", reason="tool")
    credits_adjust(user=alice, amount_cents=-100, reason="fix", actor=staff, idempotency_key="a1")
    credits_claw_back(user=alice, amount_cents=50, idempotency_key="r1", kind=Kind.REFUND, reason="refund")
    # then
    assert credit_balance(user=alice) == _ledger_sum(alice) == 1150
    assert CreditTransaction.objects.order_by("-pk").values_list("balance_after_cents", flat=True)[0] == 1150


# --- concurrency and restarts (committed data, several connections) -----------------------------


def _run_in_threads(count: int, work: Any, *, threads: int = 25) -> list[Any]:
    """Run `work(i)` for i < count on `threads` threads released together.

    Bounded so the test fits PostgreSQL's default 100 connections next to the
    suite's daphne and worker processes; every thread still races the others.
    """
    barrier = threading.Barrier(min(threads, count))
    results: list[Any] = [None] * count
    indices = iter(range(count))
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            while True:
                with lock:
                    index = next(indices, None)
                if index is None:
                    return
                try:
                    results[index] = work(index)
                except Exception as exc:  # collected and asserted by the test
                    results[index] = exc
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(min(threads, count))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers)
    return results


@pytest.mark.django_db(transaction=True)
def test_100_concurrent_charges_leave_the_exact_balance_and_never_a_negative_one(alice: Any) -> None:
    # given: enough for 70 charges of 100
    _seed(alice, 7000)
    # when
    results = _run_in_threads(
        100,
        lambda i: credits_spend(user=alice, amount_cents=100, idempotency_key=f"tool:turn:{i}", reason="tool"),
    )
    # then
    charged = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(charged), len(refused)) == (70, 30)
    assert CreditTransaction.objects.filter(kind=Kind.USAGE).count() == 70
    assert credit_balance(user=alice) == 0
    balances = list(CreditTransaction.objects.filter(kind=Kind.USAGE).values_list("balance_after_cents", flat=True))
    assert sorted(balances) == list(range(0, 7000, 100))  # each intermediate balance exactly once, none negative


@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_with_one_key_apply_once(alice: Any) -> None:
    _seed(alice, 1000)
    results = _run_in_threads(
        20, lambda i: credits_spend(user=alice, amount_cents=100, idempotency_key="tool:turn:same", reason="tool")
    )
    assert results == [900] * 20
    assert CreditTransaction.objects.filter(kind=Kind.USAGE).count() == 1


_RESTARTED_WORKER = """
import django, sys
django.setup()
from django.contrib.auth import get_user_model
from billing.services import credits_spend
user = get_user_model().objects.get(pk=int(sys.argv[1]))
print(credits_spend(user=user, amount_cents=250, idempotency_key=sys.argv[2], reason="tool"))
"""


@pytest.mark.django_db(transaction=True)
def test_a_charge_repeated_by_a_restarted_worker_process_applies_once(alice: Any, live_env: dict[str, str]) -> None:
    # given: the worker charged, then died before acknowledging its task
    _seed(alice, 1000)
    key = "tool:turn-9:call-3"
    credits_spend(user=alice, amount_cents=250, idempotency_key=key, reason="tool")
    # when: a fresh process (new interpreter, new connection) runs the same charge
    done = subprocess.run(
        [sys.executable, "-c", _RESTARTED_WORKER, str(alice.pk), key],
        env=live_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # then
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "750"
    assert CreditTransaction.objects.filter(idempotency_key=key).count() == 1
    assert credit_balance(user=alice) == 750
