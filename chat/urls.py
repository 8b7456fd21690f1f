from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("sessions", apis.SessionListCreateApi.as_view(), name="chat-sessions"),
    path("sessions/<str:session_id>", apis.SessionDetailApi.as_view(), name="chat-session-detail"),
]
