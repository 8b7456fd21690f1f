from __future__ import annotations

from django.urls import path

from copilot_site.core.api_routing import method_router

from . import apis, apis_export, apis_search, apis_shares

urlpatterns = [
    path("search", apis_search.ChatSearchApi.as_view(), name="chat-search"),
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
    path("sessions/<str:session_id>/export", apis_export.SessionExportApi.as_view(), name="chat-session-export"),
    path("sessions/<str:session_id>/shares", apis_shares.ShareCreateApi.as_view(), name="chat-session-shares"),
    path("shares", apis_shares.ShareListApi.as_view(), name="chat-shares"),
    path("shares/<str:share_id>", apis_shares.ShareRevokeApi.as_view(), name="chat-share-detail"),
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
    path(
        "sessions/<str:session_id>/approvals/<str:approval_id>",
        apis.ApprovalDecideApi.as_view(),
        name="chat-session-approval-decide",
    ),
    path("sessions/<str:session_id>/messages/pending", apis.PendingListApi.as_view(), name="chat-session-pending"),
    path("files", method_router("FilesApi", get=apis.FileListApi, post=apis.FileUploadApi), name="chat-files"),
    path(
        "files/<str:file_id>",
        method_router("FileApi", get=apis.FileGetApi, delete=apis.FileDeleteApi),
        name="chat-file-detail",
    ),
    path("files/<str:file_id>/content", apis.FileContentApi.as_view(), name="chat-file-content"),
    path(
        "sessions/<str:session_id>/messages/<str:sequence>/versions",
        apis.MessageVersionCreateApi.as_view(),
        name="chat-message-versions",
    ),
    path("sessions/<str:session_id>/branch", apis.SessionBranchSwitchApi.as_view(), name="chat-session-branch"),
]
