"""Billing's exceptions: each fixes the HTTP status and code the API answers with.

Texts shown to users are fixed here or in the services; a payment provider's own
error text never reaches a user.
"""

from __future__ import annotations

from copilot_site.core.errors import ApplicationError


class BillingError(ApplicationError):
    """A billing rule refused the request (mapped by ``copilot_site.core.exceptions``)."""


class InsufficientCredits(BillingError):
    status = 402
    code = "insufficient_credits"

    def __init__(
        self, detail: str = "Insufficient credits.", *, balance_cents: int = 0, required_cents: int = 0
    ) -> None:
        super().__init__(detail)
        self.balance_cents = balance_cents
        self.required_cents = required_cents


class SubscriptionChangeForbidden(BillingError):
    status = 403
    code = "forbidden"


class BillingUnprocessable(BillingError):
    """A well-formed request the rules reject (unconfigured price, bad redirect URL, …)."""

    status = 422
    code = "unprocessable"


class BillingUnavailable(BillingError):
    """The feature is switched off or not configured on this server."""

    status = 503
    code = "unavailable"


class PaymentProviderError(BillingError):
    """Stripe failed or refused. Raised by ``stripe_gateway`` only; the detail is generic.

    ``stripe_error`` names the SDK exception class and ``stripe_code`` Stripe's error
    code, for logs; neither is shown to users.
    """

    status = 502
    code = "payment_provider_error"
    GENERIC_MESSAGE = "The payment provider could not complete the request. Please try again or contact support."

    def __init__(
        self,
        detail: str = GENERIC_MESSAGE,
        *,
        operation: str = "",
        stripe_error: str = "",
        stripe_code: str | None = None,
        http_status_from_stripe: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.operation = operation
        self.stripe_error = stripe_error
        self.stripe_code = stripe_code
        self.http_status_from_stripe = http_status_from_stripe

    def with_detail(self, detail: str) -> PaymentProviderError:
        """The same failure, re-worded for the operation the user asked for."""
        return PaymentProviderError(
            detail,
            operation=self.operation,
            stripe_error=self.stripe_error,
            stripe_code=self.stripe_code,
            http_status_from_stripe=self.http_status_from_stripe,
        )


class InvalidWebhook(BillingError):
    """A webhook whose payload or signature does not verify (400 with a fixed text)."""

    code = "invalid_webhook"
