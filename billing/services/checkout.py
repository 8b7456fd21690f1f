"""Checkout redirects and credit top-ups (fulfilled only from the webhook)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

from billing import stripe_gateway
from billing.errors import BillingUnavailable, BillingUnprocessable, PaymentProviderError
from billing.models import CheckoutRecord, CustomerAccount
from billing.selectors import billing_settings, credits_enabled

from .credits import account_get_or_create

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

NO_REDIRECT_BASE = (
    "Payment redirect URLs cannot be validated: FRONTEND_BASE_URL or PLATFORM_BASE_URL must be set on the server."
)
REDIRECT_MISMATCH = "success_url and cancel_url must match the platform frontend origin"
CHECKOUT_FAILED = "Unable to start checkout right now. Please try again or contact support."
CREDITS_OFF = "Credits are not enabled on this server."
PAYMENTS_OFF = "Payments are not enabled on this server."
TOP_UP_PRODUCT_NAME = "Copilot credits"


def _allowed_origin() -> str:
    base = settings.FRONTEND_BASE_URL or settings.PLATFORM_BASE_URL
    if not base:
        raise BillingUnavailable(NO_REDIRECT_BASE)
    return str(base)


def redirect_url_is_allowed(url: str, allowed_origin: str) -> bool:
    """Same http(s) scheme, host and port as the allowed origin; the path is ignored.

    Refused outright: a backslash, a control character, ``@`` in the host part, or
    anything that does not parse (``@`` in the query or fragment is fine).
    """
    if "\\" in url or any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return False
    try:
        parts = urlsplit(url)
        allowed = urlsplit(allowed_origin)
        # Reading the ports parses them: a malformed port raises ValueError here.
        _ = (parts.port, allowed.port)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https"):
        return False
    if "@" in parts.netloc:  # user-info tricks (https://ours@evil.example); "@" in the query is fine
        return False
    return parts.scheme == allowed.scheme.lower() and parts.netloc.lower() == allowed.netloc.lower()


def redirect_urls_validate(*urls: str) -> None:
    """Raise 503 when no origin is configured, 422 when a URL leaves it."""
    origin = _allowed_origin()
    if not all(redirect_url_is_allowed(url, origin) for url in urls):
        raise BillingUnprocessable(REDIRECT_MISMATCH)


def stripe_customer_get_or_create(*, user: User) -> str:
    """The user's Stripe customer id, creating the customer once.

    The idempotency key ``customer-create-{user_id}`` makes concurrent first calls
    receive the same customer; the conditional update stores it once.
    """
    account = account_get_or_create(user=user)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    customer_id = stripe_gateway.customer_create(
        user_id=int(user.pk), email=getattr(user, "email", "") or "", name=getattr(user, "username", "") or ""
    )
    CustomerAccount.objects.filter(pk=account.pk, stripe_customer_id__isnull=True).update(
        stripe_customer_id=customer_id
    )
    account.refresh_from_db(fields=["stripe_customer_id"])
    assert account.stripe_customer_id is not None
    return account.stripe_customer_id


def credits_top_up_checkout_create(*, user: User, amount_cents: int, success_url: str, cancel_url: str) -> str:
    """Open a payment-mode Checkout for ``amount_cents`` of credits; returns its URL.

    Nothing is granted here: the ``checkout.session.completed`` webhook grants the
    amount actually paid, once per session.
    """
    if not credits_enabled():
        raise BillingUnavailable(CREDITS_OFF)
    if not billing_settings().payment_enabled:
        raise BillingUnavailable(PAYMENTS_OFF)
    minimum, maximum = settings.BILLING_TOP_UP_MIN_CENTS, settings.BILLING_TOP_UP_MAX_CENTS
    if not minimum <= amount_cents <= maximum:
        raise BillingUnprocessable(
            f"Top-up amount must be between {minimum} and {maximum} cents.",
            extra={"min_cents": minimum, "max_cents": maximum},
        )
    redirect_urls_validate(success_url, cancel_url)
    return checkout_open(
        user=user,
        record_fields={"kind": CheckoutRecord.Kind.TOP_UP, "amount_cents": amount_cents},
        mode="payment",
        line_item={
            "price_data": {
                "currency": settings.BILLING_CURRENCY,
                "unit_amount": amount_cents,
                "product_data": {"name": TOP_UP_PRODUCT_NAME},
            },
            "quantity": 1,
        },
        metadata={"kind": "credit_top_up"},
        success_url=success_url,
        cancel_url=cancel_url,
    )


def checkout_open(
    *,
    user: User,
    record_fields: dict[str, Any],
    mode: str,
    line_item: dict[str, Any],
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
) -> str:
    """Open a Stripe Checkout session backed by a CheckoutRecord; returns its URL.

    The record's pk gives the Stripe idempotency key and ties the webhook's
    fulfilment (and any later refund or dispute) back to this checkout. A Stripe
    failure marks the record failed and raises the generic checkout error.
    """
    try:
        customer_id = stripe_customer_get_or_create(user=user)
    except PaymentProviderError as exc:
        raise exc.with_detail(CHECKOUT_FAILED) from None
    record = CheckoutRecord.objects.create(user=user, **record_fields)
    try:
        session = stripe_gateway.checkout_session_create(
            mode=mode,
            line_item=line_item,
            customer_id=customer_id,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata={"user_id": str(user.pk), **metadata, "checkout_record_id": str(record.pk)},
            idempotency_key=record.stripe_idempotency_key,
            client_reference_id=str(user.pk),
        )
    except PaymentProviderError as exc:
        CheckoutRecord.objects.filter(pk=record.pk).update(status=CheckoutRecord.Status.FAILED)
        raise exc.with_detail(CHECKOUT_FAILED) from None
    CheckoutRecord.objects.filter(pk=record.pk).update(
        status=CheckoutRecord.Status.OPEN, stripe_checkout_session_id=session.id
    )
    return session.url
