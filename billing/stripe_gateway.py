"""The only module that imports ``stripe``.

Every call goes through a ``StripeClient`` built from settings (``STRIPE_SECRET_KEY``,
``STRIPE_API_BASE``, so tests can point it at the project's fake Stripe server) with
the API version pinned below. Creates carry an idempotency key the caller derives
from our primary keys. ``StripeError`` becomes ``PaymentProviderError``, logged with
structured ``extra`` and never with the exception object, and results come back as
this module's dataclasses, so no SDK object leaves it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from copilot_site.core.parsers import JsonBodyRejected, json_depth_check

from .errors import InvalidWebhook, PaymentProviderError

logger = logging.getLogger(__name__)

# Pinned explicitly (not the SDK's default) so an SDK upgrade cannot change the
# shape of the objects we parse; webhook events of another version are rejected.
# https://docs.stripe.com/api/versioning
API_VERSION = "2026-02-25.clover"

ACTIVE_STATUSES = ("active", "trialing")
ENDED_STATUSES = ("canceled", "unpaid", "incomplete_expired")
SCHEDULE_TERMINAL_STATUSES = ("released", "canceled", "completed")


# --- our own shapes ------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    id: str
    customer_id: str
    status: str
    price_id: str | None
    item_id: str | None
    cancel_at_period_end: bool
    schedule_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True)
class SchedulePhase:
    start_date: datetime | None
    end_date: datetime | None
    price_id: str | None


@dataclass(frozen=True)
class SubscriptionSchedule:
    id: str
    status: str
    subscription_id: str | None
    customer_id: str | None
    phases: tuple[SchedulePhase, ...]
    current_phase_start: datetime | None

    @property
    def is_terminal(self) -> bool:
        return self.status in SCHEDULE_TERMINAL_STATUSES

    def next_phase(self) -> SchedulePhase | None:
        """The phase after the current one (the pending change), if any."""
        if self.current_phase_start is not None:
            for index, phase in enumerate(self.phases):
                if phase.start_date == self.current_phase_start:
                    return self.phases[index + 1] if index + 1 < len(self.phases) else None
        now = datetime.now(tz=UTC)
        upcoming = [p for p in self.phases if p.start_date is not None and p.start_date > now]
        return upcoming[0] if upcoming else None


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    mode: str
    status: str
    payment_status: str
    customer_id: str | None
    subscription_id: str | None
    payment_intent_id: str | None
    amount_total: int | None
    metadata: dict[str, str] = field(default_factory=dict)
    client_reference_id: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    created: datetime
    api_version: str | None
    data_object: Any  # the event's ``data.object``; handlers check it is a dict
    payload: dict[str, Any]


# --- parsing (API responses and webhook objects share these) ---------------------------


def reference_id(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object carrying ``id``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        ref = value.get("id")
        return ref if isinstance(ref, str) else None
    return None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _metadata(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    return {}


def subscription_from_dict(obj: Mapping[str, Any]) -> Subscription:
    items = obj.get("items")
    first_item: Mapping[str, Any] = {}
    if isinstance(items, Mapping) and isinstance(items.get("data"), list) and items["data"]:
        first_item = items["data"][0] if isinstance(items["data"][0], Mapping) else {}
    # Current API versions keep the period on each item; older ones on the subscription.
    period_start = obj.get("current_period_start", first_item.get("current_period_start"))
    period_end = obj.get("current_period_end", first_item.get("current_period_end"))
    return Subscription(
        id=str(obj.get("id") or ""),
        customer_id=reference_id(obj.get("customer")) or "",
        status=str(obj.get("status") or ""),
        price_id=reference_id(first_item.get("price")),
        item_id=reference_id(first_item.get("id")),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        schedule_id=reference_id(obj.get("schedule")),
        current_period_start=_timestamp(period_start),
        current_period_end=_timestamp(period_end),
        metadata=_metadata(obj.get("metadata")),
    )


def schedule_from_dict(obj: Mapping[str, Any]) -> SubscriptionSchedule:
    phases: list[SchedulePhase] = []
    for raw in obj.get("phases") or []:
        if not isinstance(raw, Mapping):
            continue
        items = raw.get("items") or []
        first = items[0] if items and isinstance(items[0], Mapping) else {}
        phases.append(
            SchedulePhase(
                start_date=_timestamp(raw.get("start_date")),
                end_date=_timestamp(raw.get("end_date")),
                price_id=reference_id(first.get("price")),
            )
        )
    current = obj.get("current_phase")
    return SubscriptionSchedule(
        id=str(obj.get("id") or ""),
        status=str(obj.get("status") or ""),
        subscription_id=reference_id(obj.get("subscription")),
        customer_id=reference_id(obj.get("customer")),
        phases=tuple(phases),
        current_phase_start=_timestamp(current.get("start_date")) if isinstance(current, Mapping) else None,
    )


def checkout_session_from_dict(obj: Mapping[str, Any]) -> CheckoutSession:
    amount_total = obj.get("amount_total")
    return CheckoutSession(
        id=str(obj.get("id") or ""),
        url=str(obj.get("url") or ""),
        mode=str(obj.get("mode") or ""),
        status=str(obj.get("status") or ""),
        payment_status=str(obj.get("payment_status") or ""),
        customer_id=reference_id(obj.get("customer")),
        subscription_id=reference_id(obj.get("subscription")),
        payment_intent_id=reference_id(obj.get("payment_intent")),
        amount_total=amount_total if isinstance(amount_total, int) and not isinstance(amount_total, bool) else None,
        metadata=_metadata(obj.get("metadata")),
        client_reference_id=obj.get("client_reference_id") if isinstance(obj.get("client_reference_id"), str) else None,
    )


def _plain(obj: Any) -> dict[str, Any]:
    """An SDK object as plain dicts and lists (``str()`` of a StripeObject is its JSON)."""
    result: dict[str, Any] = json.loads(str(obj))
    return result


# --- the client ----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _build_client(api_key: str, api_base: str, timeout_s: float, max_retries: int) -> stripe.StripeClient:
    base_addresses: dict[str, str] = {}
    if api_base:
        base_addresses = {"api": api_base, "connect": api_base, "files": api_base}
    return stripe.StripeClient(
        api_key,
        stripe_version=API_VERSION,
        base_addresses=base_addresses,  # type: ignore[arg-type]
        max_network_retries=max_retries,
        http_client=stripe.RequestsClient(timeout=timeout_s),
    )


def _client(*, timeout_s: float | None = None, max_retries: int | None = None) -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        # Without a key the SDK would still call api.stripe.com; fail closed, offline.
        logger.warning("Stripe call attempted without STRIPE_SECRET_KEY", extra={"stripe_operation": "client"})
        raise PaymentProviderError(operation="client", stripe_error="NotConfigured")
    return _build_client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        float(timeout_s if timeout_s is not None else settings.STRIPE_TIMEOUT_S),
        int(max_retries if max_retries is not None else settings.STRIPE_MAX_NETWORK_RETRIES),
    )


@contextmanager
def _stripe_call(operation: str, **context: Any) -> Iterator[None]:
    """Translate SDK errors into ``PaymentProviderError``, logging only structured fields."""
    try:
        yield
    except stripe.StripeError as exc:
        error = PaymentProviderError(
            operation=operation,
            stripe_error=type(exc).__name__,
            stripe_code=getattr(exc, "code", None),
            http_status_from_stripe=exc.http_status,
        )
        logger.warning(
            "Stripe call failed: %s",
            operation,
            extra={
                "stripe_operation": operation,
                "stripe_error": error.stripe_error,
                "stripe_code": error.stripe_code,
                "stripe_http_status": exc.http_status,
                "stripe_request_id": exc.request_id,
                **{f"stripe_{key}": value for key, value in context.items()},
            },
        )
        raise error from None


# --- operations ------------------------------------------------------------------------


def price_unit_amount(price_id: str) -> int | None:
    """The price's ``unit_amount`` in cents (None for a price without one)."""
    with _stripe_call("price_retrieve", price_id=price_id):
        price = _client().v1.prices.retrieve(price_id)
    amount = price.unit_amount
    return int(amount) if amount is not None else None


def customer_create(*, user_id: int, email: str, name: str) -> str:
    """A new Stripe customer for our user; the key makes concurrent first calls yield one."""
    params: dict[str, Any] = {"metadata": {"user_id": str(user_id)}}
    if email:
        params["email"] = email
    if name:
        params["name"] = name
    with _stripe_call("customer_create", user_id=user_id):
        customer = _client().v1.customers.create(
            params,  # type: ignore[arg-type]
            {"idempotency_key": f"customer-create-{user_id}"},
        )
    return str(customer.id)


def subscriptions_for_customer(
    customer_id: str, *, status: str, timeout_s: float | None = None, max_retries: int | None = None
) -> list[Subscription]:
    """The customer's subscriptions with one status (Stripe's list filter), newest first."""
    client = _client(timeout_s=timeout_s, max_retries=max_retries)
    with _stripe_call("subscription_list", customer_id=customer_id, status=status):
        page = client.v1.subscriptions.list({"customer": customer_id, "status": status, "limit": 100})  # type: ignore[arg-type]
    return [subscription_from_dict(_plain(sub)) for sub in page.data]


def first_active_subscription(customer_id: str) -> Subscription | None:
    """The customer's current subscription: the first active one, else the first trialing one."""
    for status in ACTIVE_STATUSES:
        subs = subscriptions_for_customer(customer_id, status=status)
        if subs:
            return subs[0]
    return None


def active_subscriptions(
    customer_id: str, *, timeout_s: float | None = None, max_retries: int | None = None
) -> list[Subscription]:
    """Active then trialing subscriptions of the customer; every caller takes the first as "the" subscription."""
    return [
        sub
        for status in ACTIVE_STATUSES
        for sub in subscriptions_for_customer(customer_id, status=status, timeout_s=timeout_s, max_retries=max_retries)
    ]


def subscription_retrieve(subscription_id: str) -> Subscription:
    with _stripe_call("subscription_retrieve", subscription_id=subscription_id):
        sub = _client().v1.subscriptions.retrieve(subscription_id)
    return subscription_from_dict(_plain(sub))


def subscription_change_price(*, subscription: Subscription, price_id: str) -> Subscription:
    """Move the subscription's item to ``price_id`` now, invoicing the proration at once.

    An update, not a create: the SDK adds its own idempotency key to its retries.
    """
    params = {
        "items": [{"id": subscription.item_id, "price": price_id}],
        # Upgrades bill the prorated difference at once, on a new invoice.
        "proration_behavior": "always_invoice",
    }
    with _stripe_call("subscription_change_price", subscription_id=subscription.id, price_id=price_id):
        sub = _client().v1.subscriptions.update(subscription.id, params)  # type: ignore[arg-type]
    return subscription_from_dict(_plain(sub))


def subscription_set_cancel_at_period_end(*, subscription_id: str, cancel: bool) -> Subscription:
    with _stripe_call("subscription_cancel_at_period_end", subscription_id=subscription_id, cancel=cancel):
        sub = _client().v1.subscriptions.update(subscription_id, {"cancel_at_period_end": cancel})
    return subscription_from_dict(_plain(sub))


def subscription_cancel_now(subscription_id: str) -> None:
    with _stripe_call("subscription_cancel", subscription_id=subscription_id):
        _client().v1.subscriptions.cancel(subscription_id)


def schedule_retrieve(schedule_id: str) -> SubscriptionSchedule:
    with _stripe_call("schedule_retrieve", schedule_id=schedule_id):
        schedule = _client().v1.subscription_schedules.retrieve(schedule_id)
    return schedule_from_dict(_plain(schedule))


def schedule_release(schedule_id: str) -> SubscriptionSchedule:
    with _stripe_call("schedule_release", schedule_id=schedule_id):
        schedule = _client().v1.subscription_schedules.release(schedule_id)
    return schedule_from_dict(_plain(schedule))


def schedule_create_downgrade(
    *, subscription: Subscription, current_price_id: str, target_price_id: str, idempotency_key: str
) -> SubscriptionSchedule:
    """Two phases: the current price until the period ends, then the target price.

    Stripe builds a schedule from a subscription with one phase mirroring it; the
    update then keeps that phase (same start, ending at the period end) and appends
    the target. ``end_behavior=release`` leaves a plain subscription afterwards.
    """
    client = _client()
    with _stripe_call("schedule_create", subscription_id=subscription.id):
        created = client.v1.subscription_schedules.create(
            {"from_subscription": subscription.id},
            {"idempotency_key": idempotency_key},
        )
    schedule = schedule_from_dict(_plain(created))
    first = schedule.phases[0] if schedule.phases else None
    start = first.start_date if first is not None and first.start_date else subscription.current_period_start
    end = first.end_date if first is not None and first.end_date else subscription.current_period_end
    phases: list[dict[str, Any]] = [
        {"items": [{"price": current_price_id, "quantity": 1}], "end_date": int(end.timestamp()) if end else None},
        {"items": [{"price": target_price_id, "quantity": 1}]},
    ]
    if start is not None:
        phases[0]["start_date"] = int(start.timestamp())
    with _stripe_call("schedule_update", schedule_id=schedule.id, target_price_id=target_price_id):
        updated = client.v1.subscription_schedules.update(
            schedule.id,
            {"phases": phases, "end_behavior": "release"},  # type: ignore[arg-type]
            {"idempotency_key": f"{idempotency_key}-phases"},
        )
    return schedule_from_dict(_plain(updated))


def checkout_session_create(
    *,
    mode: str,
    line_item: Mapping[str, Any],
    customer_id: str,
    success_url: str,
    cancel_url: str,
    metadata: Mapping[str, str],
    idempotency_key: str,
    client_reference_id: str,
) -> CheckoutSession:
    """A hosted Checkout Session (``payment`` for credit top-ups, ``subscription`` for tiers)."""
    params: dict[str, Any] = {
        "mode": mode,
        "customer": customer_id,
        "line_items": [dict(line_item)],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": dict(metadata),
        "client_reference_id": client_reference_id,
    }
    # Copy our metadata onto the object the checkout creates, so its own events
    # (subscription updates, refunds of the payment) can be traced back to us.
    if mode == "subscription":
        params["subscription_data"] = {"metadata": dict(metadata)}
    else:
        params["payment_intent_data"] = {"metadata": dict(metadata)}
    with _stripe_call("checkout_session_create", mode=mode, customer_id=customer_id):
        session = _client().v1.checkout.sessions.create(
            params,  # type: ignore[arg-type]
            {"idempotency_key": idempotency_key},
        )
    return checkout_session_from_dict(_plain(session))


def checkout_session_retrieve(session_id: str) -> CheckoutSession:
    with _stripe_call("checkout_session_retrieve", session_id=session_id):
        session = _client().v1.checkout.sessions.retrieve(session_id)
    return checkout_session_from_dict(_plain(session))


def event_construct(*, payload: bytes, signature_header: str, secret: str) -> WebhookEvent:
    """Verify a webhook delivery and parse it; ``InvalidWebhook`` carries the fixed 400 text."""
    try:
        text = payload.decode("utf-8")
        # Verify first, then bound the nesting before anything (the SDK included) decodes it.
        stripe.WebhookSignature.verify_header(text, signature_header, secret, stripe.Webhook.DEFAULT_TOLERANCE)  # type: ignore[no-untyped-call]
        json_depth_check(text)
        stripe.Webhook.construct_event(text, signature_header, secret)  # type: ignore[no-untyped-call]
    except stripe.SignatureVerificationError:
        raise InvalidWebhook("Invalid signature") from None
    except JsonBodyRejected as exc:
        raise InvalidWebhook(exc.detail) from None
    except (ValueError, TypeError, AttributeError, KeyError):
        # Undecodable or non-JSON body (UnicodeDecodeError and JSONDecodeError are
        # ValueErrors), or JSON the SDK cannot turn into an event.
        raise InvalidWebhook("Invalid payload") from None
    return webhook_event_from_payload(json.loads(text))


def webhook_event_from_payload(data: Any) -> WebhookEvent:
    """Our event from a decoded (already verified, or stored) payload."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise InvalidWebhook("Invalid payload")
    inner = data.get("data")
    return WebhookEvent(
        id=data["id"],
        type=data["type"],
        created=_timestamp(data.get("created")) or datetime.now(tz=UTC),
        api_version=data.get("api_version") if isinstance(data.get("api_version"), str) else None,
        data_object=inner.get("object") if isinstance(inner, dict) else None,
        payload=data,
    )


def dashboard_url(kind: str, object_id: str) -> str:
    """A link to the object in the Stripe dashboard (test mode unless the key is live)."""
    mode = "" if settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_")) else "test/"
    return f"https://dashboard.stripe.com/{mode}{kind}/{object_id}"


__all__ = [
    "API_VERSION",
    "CheckoutSession",
    "SchedulePhase",
    "Subscription",
    "SubscriptionSchedule",
    "WebhookEvent",
    "active_subscriptions",
    "checkout_session_create",
    "checkout_session_from_dict",
    "checkout_session_retrieve",
    "customer_create",
    "dashboard_url",
    "event_construct",
    "first_active_subscription",
    "webhook_event_from_payload",
    "price_unit_amount",
    "reference_id",
    "schedule_create_downgrade",
    "schedule_from_dict",
    "schedule_release",
    "schedule_retrieve",
    "subscription_cancel_now",
    "subscription_change_price",
    "subscription_from_dict",
    "subscription_retrieve",
    "subscription_set_cancel_at_period_end",
    "subscriptions_for_customer",
]
