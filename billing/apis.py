"""Billing REST API: one APIView per operation (HackSoft style). Money is integer cents."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.openapi import api_errors
from copilot_site.core.pagination import OffsetField
from copilot_site.core.serializers import StrictCharField

from .models import Tier
from .selectors import SubscriptionStatus, credit_balance, credit_transactions, credits_enabled, subscription_status
from .services import credits_top_up_checkout_create, subscription_change

# DRF trims whitespace by default, which would hide a trailing control character
# from the redirect check (which refuses control characters); the service sees the URL as sent.
_URL_FIELD: dict[str, Any] = {"max_length": 2048, "trim_whitespace": False}


@extend_schema_serializer(component_name="SubscriptionStatus")
class SubscriptionStatusOutputSerializer(serializers.Serializer[SubscriptionStatus]):
    tier = serializers.CharField()
    monthly_cost = serializers.IntegerField(help_text="Cents per month of the current tier.")
    tier_costs = serializers.DictField(child=serializers.IntegerField(), help_text="Cents per month, by tier.")
    proration_credit_cents = serializers.IntegerField()
    pending_tier = serializers.CharField(allow_null=True)
    pending_tier_effective_at = serializers.DateTimeField(allow_null=True)
    url = serializers.CharField(allow_blank=True, help_text="Stripe Checkout URL to open, or empty.")


class CreditsApi(APIView):
    @extend_schema_serializer(component_name="CreditsFilter")
    class FilterSerializer(serializers.Serializer[Any]):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=50)
        offset = OffsetField()

    @extend_schema_serializer(component_name="Credits")
    class OutputSerializer(serializers.Serializer[Any]):
        @extend_schema_serializer(component_name="CreditTransaction")
        class TransactionSerializer(serializers.Serializer[Any]):
            id = serializers.IntegerField()
            kind = serializers.CharField()
            amount_cents = serializers.IntegerField()
            balance_after_cents = serializers.IntegerField()
            reason = serializers.CharField()
            created_at = serializers.DateTimeField()

        balance = serializers.IntegerField(help_text="Cents.")
        enabled = serializers.BooleanField()
        transactions = TransactionSerializer(many=True)
        total = serializers.IntegerField()
        limit = serializers.IntegerField()
        offset = serializers.IntegerField()

    @extend_schema(parameters=[FilterSerializer], responses={200: OutputSerializer, **api_errors(400)})
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        limit, offset = filters.validated_data["limit"], filters.validated_data["offset"]
        transactions = credit_transactions(user=authenticated_user(request))
        data = {
            "balance": credit_balance(user=authenticated_user(request)),
            "enabled": credits_enabled(),
            "transactions": list(transactions[offset : offset + limit]),
            "total": transactions.count(),
            "limit": limit,
            "offset": offset,
        }
        return Response(self.OutputSerializer(data).data)


class CreditTopUpApi(APIView):
    @extend_schema_serializer(component_name="CreditTopUpInput")
    class InputSerializer(serializers.Serializer[Any]):
        amount = serializers.IntegerField(min_value=1, help_text="Cents of credit to buy.")
        success_url = StrictCharField(**_URL_FIELD)
        cancel_url = StrictCharField(**_URL_FIELD)

    @extend_schema_serializer(component_name="CreditTopUp")
    class OutputSerializer(serializers.Serializer[Any]):
        url = serializers.CharField()

    @extend_schema(
        request=InputSerializer, responses={200: OutputSerializer, **api_errors(400, 403, 413, 422, 502, 503)}
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        url = credits_top_up_checkout_create(
            user=authenticated_user(request),
            amount_cents=serializer.validated_data["amount"],
            success_url=serializer.validated_data["success_url"],
            cancel_url=serializer.validated_data["cancel_url"],
        )
        return Response(self.OutputSerializer({"url": url}).data)


class SubscriptionApi(APIView):
    """GET the subscription status; POST a tier to move to (the state machine of ``subscription_change``)."""

    @extend_schema_serializer(component_name="SubscriptionChangeInput")
    class InputSerializer(serializers.Serializer[Any]):
        tier = serializers.ChoiceField(choices=[Tier.FREE, Tier.PRO, Tier.BUSINESS])
        success_url = StrictCharField(required=False, allow_blank=True, default="", **_URL_FIELD)
        cancel_url = StrictCharField(required=False, allow_blank=True, default="", **_URL_FIELD)

    @extend_schema(responses={200: SubscriptionStatusOutputSerializer, **api_errors()})
    def get(self, request: Request) -> Response:
        return Response(SubscriptionStatusOutputSerializer(subscription_status(user=authenticated_user(request))).data)

    @extend_schema(
        request=InputSerializer,
        responses={200: SubscriptionStatusOutputSerializer, **api_errors(400, 403, 413, 422, 502, 503)},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        url = subscription_change(
            user=authenticated_user(request),
            tier=serializer.validated_data["tier"],
            success_url=serializer.validated_data["success_url"],
            cancel_url=serializer.validated_data["cancel_url"],
        )
        return Response(
            SubscriptionStatusOutputSerializer(subscription_status(user=authenticated_user(request), url=url)).data
        )
