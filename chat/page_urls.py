from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from . import share_views, views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat-home", permanent=False)),
    path("copilot", views.chat_page, name="chat-home"),
    path("chat/<uuid:session_id>/", views.chat_page, name="chat-session"),
    path("share/<str:token>", share_views.shared_chat_page, name="chat-share"),
    path("account/approval-threshold/", views.approval_threshold_set_view, name="approval-threshold-set"),
]
