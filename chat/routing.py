from __future__ import annotations

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/chat/<str:session_id>/", consumers.ChatConsumer.as_asgi()),
    path("ws/chat/", consumers.SubscribeConsumer.as_asgi()),
]
