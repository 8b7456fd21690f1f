from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("sessions", apis.SessionListCreateApi.as_view(), name="chat-sessions"),
    path("sessions/<str:session_id>", apis.SessionDetailApi.as_view(), name="chat-session-detail"),
    path("sessions/<str:session_id>/ui-messages", apis.SessionUIMessagesApi.as_view(), name="chat-session-ui-messages"),
    path("sessions/<str:session_id>/stream", apis.SessionStreamApi.as_view(), name="chat-session-stream"),
    path("sessions/<str:session_id>/cancel", apis.SessionCancelApi.as_view(), name="chat-session-cancel"),
    path("sessions/<str:session_id>/messages/pending", apis.SessionPendingApi.as_view(), name="chat-session-pending"),
]
