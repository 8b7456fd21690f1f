"""``POST /api/billing/stripe/webhook``: verified, pinned, deduplicated, dispatched through a table.

The ``StripeEvent`` row is inserted under its unique constraint and the handler
runs in the same transaction, so a duplicate delivery is acknowledged with no
effect and a failing handler rolls back with its insert. The failure is then
recorded on an unprocessed row: Stripe's retry (or the admin "reprocess" action)
claims that row and runs the handler again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from copilot_site.core import metrics
from copilot_site.core.parsers import JsonBodyRejected, json_size_check, request_size_check

from . import stripe_gateway
from .errors import InvalidWebhook
from .models import StripeEvent
from .services import stripe_sync

logger = logging.getLogger(__name__)

Handler = Callable[[stripe_gateway.WebhookEvent], str]


def handle_checkout_completed(event: stripe_gateway.WebhookEvent) -> str:
    session = stripe_gateway.checkout_session_from_dict(event.data_object)
    return stripe_sync.checkout_session_fulfil(session=session, event_created=event.created)


def handle_subscription_changed(event: stripe_gateway.WebhookEvent) -> str:
    return stripe_sync.subscription_sync_from_stripe(
        subscription=stripe_gateway.subscription_from_dict(event.data_object),
        event_created=event.created,
        deleted=event.type == "customer.subscription.deleted",
    )


def handle_schedule_ended(event: stripe_gateway.WebhookEvent) -> str:
    schedule = stripe_gateway.schedule_from_dict(event.data_object)
    return stripe_sync.subscription_resync_for_customer(customer_id=schedule.customer_id, event_created=event.created)


def handle_ignored(event: stripe_gateway.WebhookEvent) -> str:
    # subscription_schedule.updated: our own schedule create/modify calls emit it,
    # and re-syncing on it would loop. released/completed carry the outcome.
    return "ignored"


def handle_invoice_payment_failed(event: stripe_gateway.WebhookEvent) -> str:
    invoice = event.data_object
    return stripe_sync.invoice_payment_failed(
        customer_id=stripe_gateway.reference_id(invoice.get("customer")),
        invoice_id=str(invoice.get("id") or ""),
        event_created=event.created,
    )


def handle_invoice_paid(event: stripe_gateway.WebhookEvent) -> str:
    return stripe_sync.invoice_paid(
        customer_id=stripe_gateway.reference_id(event.data_object.get("customer")), event_created=event.created
    )


def handle_refund_created(event: stripe_gateway.WebhookEvent) -> str:
    return stripe_sync.payment_refunded(refund=event.data_object)


def handle_dispute_created(event: stripe_gateway.WebhookEvent) -> str:
    return stripe_sync.dispute_opened(dispute=event.data_object)


def handle_dispute_closed(event: stripe_gateway.WebhookEvent) -> str:
    return stripe_sync.dispute_closed(dispute=event.data_object)


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": handle_checkout_completed,
    "checkout.session.async_payment_succeeded": handle_checkout_completed,
    "customer.subscription.created": handle_subscription_changed,
    "customer.subscription.updated": handle_subscription_changed,
    "customer.subscription.deleted": handle_subscription_changed,
    "subscription_schedule.released": handle_schedule_ended,
    "subscription_schedule.completed": handle_schedule_ended,
    "subscription_schedule.updated": handle_ignored,
    "invoice.payment_failed": handle_invoice_payment_failed,
    "invoice.paid": handle_invoice_paid,
    "refund.created": handle_refund_created,
    "charge.dispute.created": handle_dispute_created,
    "charge.dispute.closed": handle_dispute_closed,
}


def event_process(event: stripe_gateway.WebhookEvent) -> str:
    """Record the event and run its handler once; returns the outcome.

    Raises whatever the handler raised, after rolling back and recording the failure.
    """
    handler = HANDLERS.get(event.type)
    try:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    row = StripeEvent.objects.create(
                        stripe_event_id=event.id,
                        type=event.type,
                        api_version=event.api_version or "",
                        payload=event.payload,
                    )
            except IntegrityError:
                # Seen before. Processed: a duplicate delivery, nothing to do.
                # Unprocessed: an earlier attempt failed; this delivery retries it.
                row = StripeEvent.objects.select_for_update().get(stripe_event_id=event.id)
                if row.processed_at is not None:
                    return "duplicate"
            if handler is None:
                outcome = "unhandled"
            elif not isinstance(event.data_object, dict):
                logger.warning("Stripe event %s (%s) has no data.object; ignored", event.id, event.type)
                outcome = "no_object"
            else:
                outcome = handler(event)
            row.processed_at = timezone.now()
            row.error = ""
            row.save(update_fields=["processed_at", "error"])
    except Exception as exc:
        _record_failure(event, exc)
        raise
    logger.info("Stripe event %s (%s): %s", event.id, event.type, outcome)
    return outcome


def _record_failure(event: stripe_gateway.WebhookEvent, exc: Exception) -> None:
    """Keep the failed event (unprocessed, with the error) for retries and the admin."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        with transaction.atomic():
            StripeEvent.objects.update_or_create(
                stripe_event_id=event.id,
                processed_at__isnull=True,
                defaults={"error": error},
                create_defaults={
                    "type": event.type,
                    "api_version": event.api_version or "",
                    "payload": event.payload,
                    "error": error,
                },
            )
    except Exception:  # a processed row appeared meanwhile, or the DB is down
        logger.warning("Could not record the failed Stripe event %s", event.id, exc_info=True)


def event_reprocess(row: StripeEvent) -> str:
    """Run an unprocessed (failed) event again from its stored payload (admin action)."""
    if row.processed_at is not None:
        return "already_processed"
    event = stripe_gateway.webhook_event_from_payload(row.payload)
    return event_process(event)


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # Without a secret every signature would "verify": refuse outright.
        return _error(503, "Webhook not configured")
    try:
        request_size_check(request)
        json_size_check(len(request.body))
    except JsonBodyRejected as exc:
        return _error(exc.status, exc.detail)
    try:
        event = stripe_gateway.event_construct(
            payload=request.body, signature_header=request.headers.get("Stripe-Signature", ""), secret=secret
        )
    except InvalidWebhook as exc:
        metrics.stripe_webhook_count(event_type="", outcome="invalid_signature")
        return _error(400, exc.detail)
    if event.api_version and event.api_version != stripe_gateway.API_VERSION:
        logger.error(
            "Stripe event %s has API version %s, expected %s",
            event.id,
            event.api_version,
            stripe_gateway.API_VERSION,
        )
        return _error(400, "Unsupported API version")
    try:
        outcome = event_process(event)
    except Exception:
        logger.exception(
            "Stripe webhook handler failed", extra={"stripe_event_id": event.id, "stripe_event_type": event.type}
        )
        metrics.stripe_webhook_count(event_type=event.type, outcome="error")
        return _error(500, "Webhook processing failed")
    metrics.stripe_webhook_count(event_type=event.type, outcome=outcome)
    body: dict[str, Any] = {"received": True, "outcome": outcome}
    return JsonResponse(body, status=200)
