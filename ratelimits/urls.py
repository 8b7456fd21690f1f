"""Mounted at ``/api/`` (copilot_site/urls.py)."""

from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("chat/usage", apis.UsageGetApi.as_view(), name="chat-usage"),
    path("chat/usage/reset", apis.UsageResetApi.as_view(), name="chat-usage-reset"),
    path("chat/usage/personal-cap", apis.PersonalCapSetApi.as_view(), name="chat-usage-personal-cap"),
    path("admin/users/<str:user_ref>/rate-limit", apis.StaffRateLimitGetApi.as_view(), name="staff-rate-limit"),
    path(
        "admin/users/<str:user_ref>/rate-limit/reset",
        apis.StaffRateLimitResetApi.as_view(),
        name="staff-rate-limit-reset",
    ),
    path("admin/users/<str:user_ref>/tier", apis.StaffTierSetApi.as_view(), name="staff-tier-set"),
]
