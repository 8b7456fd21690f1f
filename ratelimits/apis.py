"""Usage and rate-limit REST API: one APIView per operation (HackSoft style).

User-facing payloads carry percentages and times only, so a client cannot infer
per-turn cost or margins; the staff endpoints carry raw microdollars for debugging.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import Tier
from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.openapi import api_errors

from .selectors import rate_limit_staff_view, usage_public, user_get_by_reference
from .services import personal_cap_set, usage_reset_by_staff, usage_reset_paid, user_tier_set


@extend_schema_serializer(component_name="UsageWindow")
class UsageWindowOutputSerializer(serializers.Serializer[Any]):
    percent_used = serializers.FloatField()
    resets_at = serializers.DateTimeField()
    projected_exhaustion_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="PersonalCap")
class PersonalCapOutputSerializer(serializers.Serializer[Any]):
    daily_cap_microdollars = serializers.IntegerField()
    reached = serializers.BooleanField()


@extend_schema_serializer(component_name="Usage")
class UsageOutputSerializer(serializers.Serializer[Any]):
    daily = UsageWindowOutputSerializer(allow_null=True)
    weekly = UsageWindowOutputSerializer(allow_null=True)
    tier = serializers.CharField()
    reset_cost = serializers.IntegerField(help_text="Credit price of a daily reset, in cents (0 = not offered).")
    past_due = serializers.BooleanField(help_text="Payment failed: FREE limits apply until it is settled.")
    personal_cap = PersonalCapOutputSerializer(allow_null=True)


class UsageGetApi(APIView):
    @extend_schema(responses={200: UsageOutputSerializer, **api_errors()})
    def get(self, request: Request) -> Response:
        return Response(UsageOutputSerializer(usage_public(user=authenticated_user(request))).data)


class UsageResetApi(APIView):
    @extend_schema_serializer(component_name="UsageReset")
    class OutputSerializer(serializers.Serializer[Any]):
        success = serializers.BooleanField()
        credits_charged = serializers.IntegerField()
        remaining_balance = serializers.IntegerField()
        usage = UsageOutputSerializer()

    @extend_schema(request=None, responses={200: OutputSerializer, **api_errors(400, 402, 403, 503)})
    def post(self, request: Request) -> Response:
        result = usage_reset_paid(user=authenticated_user(request))
        return Response(self.OutputSerializer(result).data)


class PersonalCapSetApi(APIView):
    @extend_schema_serializer(component_name="PersonalCapSetInput")
    class InputSerializer(serializers.Serializer[Any]):
        daily_cap_microdollars = serializers.IntegerField(min_value=1, allow_null=True)

    @extend_schema_serializer(component_name="PersonalCapSet")
    class OutputSerializer(serializers.Serializer[Any]):
        personal_daily_cap_microdollars = serializers.IntegerField(allow_null=True)
        usage = UsageOutputSerializer()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, **api_errors(400, 403, 413)})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cap = personal_cap_set(
            user=authenticated_user(request), daily_cap_microdollars=serializer.validated_data["daily_cap_microdollars"]
        )
        data = {
            "personal_daily_cap_microdollars": cap.daily_cap_microdollars if cap else None,
            "usage": usage_public(user=authenticated_user(request)),
        }
        return Response(self.OutputSerializer(data).data)


@extend_schema_serializer(component_name="StaffRateLimitOverride")
class StaffOverrideOutputSerializer(serializers.Serializer[Any]):
    daily_limit_microdollars = serializers.IntegerField(allow_null=True)
    weekly_limit_microdollars = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    updated_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="StaffRateLimit")
class StaffRateLimitOutputSerializer(serializers.Serializer[Any]):
    user_id = serializers.IntegerField()
    user_email = serializers.CharField()
    tier = serializers.CharField()
    past_due = serializers.BooleanField()
    daily_cost_limit_microdollars = serializers.IntegerField()
    weekly_cost_limit_microdollars = serializers.IntegerField()
    daily_cost_used_microdollars = serializers.IntegerField()
    weekly_cost_used_microdollars = serializers.IntegerField()
    override = StaffOverrideOutputSerializer(allow_null=True)
    personal_daily_cap_microdollars = serializers.IntegerField(allow_null=True)
    redis_available = serializers.BooleanField()


class StaffRateLimitGetApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: StaffRateLimitOutputSerializer, **api_errors(403, 404)})
    def get(self, request: Request, user_ref: str) -> Response:
        user = user_get_by_reference(reference=user_ref)
        return Response(StaffRateLimitOutputSerializer(rate_limit_staff_view(user=user)).data)


class StaffRateLimitResetApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema_serializer(component_name="StaffRateLimitResetInput")
    class InputSerializer(serializers.Serializer[Any]):
        reset_weekly = serializers.BooleanField(default=False)
        reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    @extend_schema(
        request=InputSerializer, responses={200: StaffRateLimitOutputSerializer, **api_errors(400, 403, 404, 413, 500)}
    )
    def post(self, request: Request, user_ref: str) -> Response:
        user = user_get_by_reference(reference=user_ref)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        usage_reset_by_staff(
            user=user,
            actor=authenticated_user(request),
            include_weekly=serializer.validated_data["reset_weekly"],
            reason=serializer.validated_data["reason"],
        )
        return Response(StaffRateLimitOutputSerializer(rate_limit_staff_view(user=user)).data)


class StaffTierSetApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema_serializer(component_name="StaffTierSetInput")
    class InputSerializer(serializers.Serializer[Any]):
        tier = serializers.ChoiceField(choices=Tier.choices)
        reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    @extend_schema(
        request=InputSerializer, responses={200: StaffRateLimitOutputSerializer, **api_errors(400, 403, 404, 413)}
    )
    def post(self, request: Request, user_ref: str) -> Response:
        user = user_get_by_reference(reference=user_ref)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_tier_set(
            user=user,
            tier=serializer.validated_data["tier"],
            actor=authenticated_user(request),
            reason=serializer.validated_data["reason"],
        )
        return Response(StaffRateLimitOutputSerializer(rate_limit_staff_view(user=user)).data)
