from __future__ import annotations

from django.urls import path

from . import apis, webhooks

urlpatterns = [
    path("credits", apis.CreditsApi.as_view(), name="billing-credits"),
    path("credits/top-up", apis.CreditTopUpApi.as_view(), name="billing-credits-top-up"),
    path("subscription", apis.SubscriptionApi.as_view(), name="billing-subscription"),
    path("stripe/webhook", webhooks.stripe_webhook, name="billing-stripe-webhook"),
]
