"""Billing's exceptions: each carries the HTTP status the API maps it to.

Texts shown to users are fixed here or in the services (SPEC §5); a payment
provider's own error text never reaches a user.
"""

from __future__ import annotations

from typing import Any


class BillingError(Exception):
    """A business-rule rejection with its HTTP status (mapped by the API exception handler)."""

    http_status = 400

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class InsufficientCredits(BillingError):
    http_status = 402

    def __init__(
        self, message: str = "Insufficient credits.", *, balance_cents: int = 0, required_cents: int = 0
    ) -> None:
        super().__init__(message)
        self.balance_cents = balance_cents
        self.required_cents = required_cents


class SubscriptionChangeForbidden(BillingError):
    http_status = 403


class BillingUnprocessable(BillingError):
    """A well-formed request the rules reject (unconfigured price, bad redirect URL, …)."""

    http_status = 422


class BillingUnavailable(BillingError):
    """The feature is switched off or not configured on this server."""

    http_status = 503


class PaymentProviderError(BillingError):
    """Stripe failed or refused. Raised by ``stripe_gateway`` only; the message is generic.

    ``stripe_error`` names the SDK exception class and ``code`` Stripe's error code,
    for logs; neither is shown to users.
    """

    http_status = 502
    GENERIC_MESSAGE = "The payment provider could not complete the request. Please try again or contact support."

    def __init__(
        self,
        message: str = GENERIC_MESSAGE,
        *,
        operation: str = "",
        stripe_error: str = "",
        code: str | None = None,
        http_status_from_stripe: int | None = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.stripe_error = stripe_error
        self.code = code
        self.http_status_from_stripe = http_status_from_stripe

    def with_message(self, message: str) -> PaymentProviderError:
        """The same failure, re-worded for the operation the user asked for."""
        return PaymentProviderError(
            message,
            operation=self.operation,
            stripe_error=self.stripe_error,
            code=self.code,
            http_status_from_stripe=self.http_status_from_stripe,
        )


class InvalidWebhook(BillingError):
    """A webhook whose payload or signature does not verify (400 with a fixed text)."""

    http_status = 400
