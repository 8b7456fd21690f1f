from __future__ import annotations

from django.urls import path

from copilot_site.core.api_routing import method_router

from . import apis

urlpatterns = [
    path(
        "sessions",
        method_router("SessionsApi", get=apis.SessionListApi, post=apis.SessionCreateApi),
        name="chat-sessions",
    ),
    path(
        "sessions/<str:session_id>",
        method_router("SessionApi", get=apis.SessionGetApi, patch=apis.SessionRenameApi, delete=apis.SessionDeleteApi),
        name="chat-session-detail",
    ),
    path("sessions/<str:session_id>/ui-messages", apis.UIMessageListApi.as_view(), name="chat-session-ui-messages"),
    path(
        "sessions/<str:session_id>/stream",
        method_router(
            "SessionStreamApi",
            post=apis.TurnSendApi,
            get=apis.TurnStreamApi,
            delete=apis.TurnListenersDisconnectApi,
        ),
        name="chat-session-stream",
    ),
    path("sessions/<str:session_id>/cancel", apis.TurnCancelApi.as_view(), name="chat-session-cancel"),
    path("sessions/<str:session_id>/messages/pending", apis.PendingListApi.as_view(), name="chat-session-pending"),
    path(
        "sessions/<str:session_id>/messages/<str:sequence>/versions",
        apis.MessageVersionCreateApi.as_view(),
        name="chat-message-versions",
    ),
    path("sessions/<str:session_id>/branch", apis.SessionBranchSwitchApi.as_view(), name="chat-session-branch"),
]
