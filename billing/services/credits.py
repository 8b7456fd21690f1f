"""The credit ledger: every balance change is one CreditTransaction row, applied exactly once.

Each write carries an idempotency key (unique on the ledger). The account row is
locked (``select_for_update``) and the ledger row inserted in the same transaction,
so the balance always equals the sum of the ledger and a retried write — a Celery
task redelivered after a worker died, a webhook delivered twice — applies nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from billing.errors import BillingUnprocessable, InsufficientCredits
from billing.models import CreditTransaction, CustomerAccount
from billing.selectors import credit_balance, credits_enabled
from copilot_site.core import metrics

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

Kind = CreditTransaction.Kind


def account_get_or_create(*, user: User) -> CustomerAccount:
    account, _ = CustomerAccount.objects.get_or_create(user=user)
    return account


def account_lock(*, user: User) -> CustomerAccount:
    """The user's account row, created if missing and locked until the transaction ends.

    Precondition: called inside ``transaction.atomic()``. On PostgreSQL the row lock
    serialises writers of one account; on SQLite the IMMEDIATE transaction mode
    already runs one writer at a time (``select_for_update`` is a no-op there).
    """
    account_get_or_create(user=user)
    return CustomerAccount.objects.select_for_update().get(user=user)


@dataclass(frozen=True)
class LedgerResult:
    balance_cents: int
    applied_cents: int  # signed amount actually written (0 for a replay)
    created: bool  # False when the idempotency key had already been applied


def _ledger_write(
    *,
    user: User,
    amount_cents: int,
    kind: str,
    idempotency_key: str,
    reason: str,
    metadata: dict[str, Any] | None,
    created_by: User | None,
    clamp_at_zero: bool,
) -> LedgerResult:
    """Apply one ledger entry exactly once.

    A repeated ``idempotency_key`` applies nothing and returns the current balance.
    A debit larger than the balance raises ``InsufficientCredits`` unless
    ``clamp_at_zero`` (claw-backs), which deducts what is there.
    """
    if not idempotency_key:
        raise ValueError("idempotency_key is required")
    with transaction.atomic():
        account = account_lock(user=user)
        # Checked under the lock: a concurrent writer with the same key on the same
        # account has committed (or not started) by now.
        if CreditTransaction.objects.filter(idempotency_key=idempotency_key).exists():
            return LedgerResult(account.credit_balance_cents, 0, created=False)
        balance = account.credit_balance_cents
        new_balance = balance + amount_cents
        if new_balance < 0:
            if not clamp_at_zero:
                raise InsufficientCredits(balance_cents=balance, required_cents=-amount_cents)
            new_balance = 0
        try:
            with transaction.atomic():
                CreditTransaction.objects.create(
                    user=user,
                    amount_cents=new_balance - balance,
                    kind=kind,
                    reason=reason[:255],
                    balance_after_cents=new_balance,
                    idempotency_key=idempotency_key,
                    metadata=metadata or {},
                    created_by=created_by,
                )
        except IntegrityError:
            # The same key used for another account concurrently (different row
            # locks): that writer's entry is the single application.
            return LedgerResult(balance, 0, created=False)
        account.credit_balance_cents = new_balance
        account.save(update_fields=["credit_balance_cents", "updated_at"])
        return LedgerResult(new_balance, new_balance - balance, created=True)


def _require_positive(amount_cents: int) -> None:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise ValueError("amount_cents must be a positive integer")


def credits_spend(
    *, user: User, amount_cents: int, idempotency_key: str, reason: str, metadata: dict[str, Any] | None = None
) -> int:
    """Charge ``amount_cents`` (> 0) once per ``idempotency_key``; returns the new balance.

    Raises ``InsufficientCredits`` (nothing written) when the balance is short; a
    balance never goes negative through a charge. A key already applied returns the
    current balance without charging again, so a retried tool-run charge
    (``tool:{turn_id}:{tool_call_id}``) or rate-limit reset is a no-op.
    With ``ENABLE_CREDIT=False`` nothing is charged and the current balance is returned.
    """
    _require_positive(amount_cents)
    if not credits_enabled():
        return credit_balance(user=user)
    result = _ledger_write(
        user=user,
        amount_cents=-amount_cents,
        kind=Kind.USAGE,
        idempotency_key=idempotency_key,
        reason=reason,
        metadata=metadata,
        created_by=None,
        clamp_at_zero=False,
    )
    metrics.credits_charged(cents=-result.applied_cents)
    return result.balance_cents


def credits_grant(
    *,
    user: User,
    amount_cents: int,
    idempotency_key: str,
    reason: str,
    kind: str = Kind.GRANT,
    metadata: dict[str, Any] | None = None,
    created_by: User | None = None,
) -> int:
    """Add credits (GRANT by default; TOP_UP, REFUND and ADJUSTMENT are accepted); returns the new balance."""
    _require_positive(amount_cents)
    if kind not in (Kind.GRANT, Kind.TOP_UP, Kind.REFUND, Kind.ADJUSTMENT):
        raise ValueError(f"credits_grant cannot write a {kind} entry")
    result = _ledger_write(
        user=user,
        amount_cents=amount_cents,
        kind=kind,
        idempotency_key=idempotency_key,
        reason=reason,
        metadata=metadata,
        created_by=created_by,
        clamp_at_zero=False,
    )
    return result.balance_cents


def credits_top_up(
    *, user: User, amount_cents: int, checkout_session_id: str, metadata: dict[str, Any] | None = None
) -> int:
    """Credits bought through a paid Checkout Session: applied once per session id."""
    return credits_grant(
        user=user,
        amount_cents=amount_cents,
        idempotency_key=f"topup:{checkout_session_id}",
        reason="Credit top-up",
        kind=Kind.TOP_UP,
        metadata={"checkout_session_id": checkout_session_id, **(metadata or {})},
    )


def credits_refund(
    *, user: User, amount_cents: int, idempotency_key: str, reason: str, metadata: dict[str, Any] | None = None
) -> int:
    """Give back credits a failed feature charged (e.g. a rate-limit reset that could not be applied)."""
    return credits_grant(
        user=user,
        amount_cents=amount_cents,
        idempotency_key=idempotency_key,
        reason=reason,
        kind=Kind.REFUND,
        metadata=metadata,
    )


def credits_adjust(*, user: User, amount_cents: int, reason: str, actor: User, idempotency_key: str) -> int:
    """A staff correction, up or down, with a reason; it may not take the balance below zero."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents == 0:
        raise ValueError("amount_cents must be a non-zero integer")
    if not reason.strip():
        raise BillingUnprocessable("A reason is required for a credit adjustment.")
    try:
        result = _ledger_write(
            user=user,
            amount_cents=amount_cents,
            kind=Kind.ADJUSTMENT,
            idempotency_key=idempotency_key,
            reason=reason.strip(),
            metadata=None,
            created_by=actor,
            clamp_at_zero=False,
        )
    except InsufficientCredits as exc:
        raise BillingUnprocessable(
            f"The adjustment would take the balance below zero (balance {exc.balance_cents} cents)."
        ) from None
    return result.balance_cents


def credits_claw_back(
    *,
    user: User,
    amount_cents: int,
    idempotency_key: str,
    kind: str,
    reason: str,
    metadata: dict[str, Any] | None = None,
) -> LedgerResult:
    """Take back credits whose payment was refunded or lost in a dispute, down to zero at most.

    ``amount_cents`` may be 0 to write a note (a dispute opened). Returns what was
    actually deducted, so the caller can see a shortfall (credits already spent).
    """
    if amount_cents < 0:
        raise ValueError("amount_cents must not be negative")
    result = _ledger_write(
        user=user,
        amount_cents=-amount_cents,
        kind=kind,
        idempotency_key=idempotency_key,
        reason=reason,
        metadata=metadata,
        created_by=None,
        clamp_at_zero=True,
    )
    if result.created and -result.applied_cents < amount_cents:
        logger.warning(
            "Credit claw-back short: wanted %s cents, deducted %s",
            amount_cents,
            -result.applied_cents,
            extra={"user_id": getattr(user, "pk", user), "idempotency_key": idempotency_key},
        )
    return result
