"""Share links: create (`POST /api/chat/sessions/{id}/shares`), list (`GET /api/chat/shares`),
revoke (`DELETE /api/chat/shares/{id}`). The public page is `chat.share_views`."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.openapi import api_errors
from copilot_site.core.pagination import OffsetField
from copilot_site.core.serializers import UnknownKeysRefusedMixin

from .models import SharedChat
from .services.shares import share_create, share_revoke
from .shares import share_list_for_user


class StrictBooleanField(serializers.BooleanField):
    """A JSON `true` or `false` only (DRF's also takes "yes", 1, "on", …)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_serializer(component_name="Share")
class ShareOutputSerializer(serializers.Serializer[SharedChat]):
    id = serializers.UUIDField()
    session_id = serializers.UUIDField()
    title = serializers.CharField(allow_blank=True, help_text="The chat's title when the snapshot was taken.")
    hide_tool_internals = serializers.BooleanField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ShareCreated")
class ShareCreatedOutputSerializer(ShareOutputSerializer):
    url = serializers.URLField(help_text="The public link. Shown only now: the server keeps only a hash of it.")


@extend_schema_serializer(component_name="ShareList")
class ShareListOutputSerializer(serializers.Serializer[Any]):
    shares = ShareOutputSerializer(many=True)
    total = serializers.IntegerField()


class ShareCreateApi(APIView):
    @extend_schema_serializer(component_name="ShareCreateInput")
    class InputSerializer(UnknownKeysRefusedMixin, serializers.Serializer[Any]):
        """Any other key is refused (400)."""

        hide_tool_internals = StrictBooleanField(
            required=False, default=False, help_text="Leave tool calls and their outputs out of the snapshot."
        )

    @extend_schema(
        operation_id="chat_sessions_shares_create",
        request=InputSerializer,
        responses={201: ShareCreatedOutputSerializer, **api_errors(400, 403, 404, 413)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        """A read-only public link to a snapshot of the chat as it is now (a running turn's
        unfinished answer is left out). Later messages never reach it; revoke it to end it."""
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = share_create(
            user=authenticated_user(request),
            session_id=session_id,
            hide_tool_internals=serializer.validated_data["hide_tool_internals"],
        )
        data = dict(ShareOutputSerializer(created.share).data)
        data["url"] = request.build_absolute_uri(reverse("chat-share", kwargs={"token": created.token}))
        return Response(data, status=status.HTTP_201_CREATED)


class ShareListApi(APIView):
    class FilterSerializer(serializers.Serializer[Any]):
        session_id = serializers.UUIDField(required=False, help_text="Only this chat's links.")
        limit = serializers.IntegerField(min_value=1, max_value=100, default=50)
        offset = OffsetField()

    @extend_schema(
        operation_id="chat_shares_list",
        parameters=[FilterSerializer],
        responses={200: ShareListOutputSerializer, **api_errors(400)},
    )
    def get(self, request: Request) -> Response:
        """The user's live share links, newest first (their links are not included: see `url`)."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        shares = share_list_for_user(user=authenticated_user(request), session_id=data.get("session_id"))
        page = list(shares.defer("messages")[data["offset"] : data["offset"] + data["limit"]])
        return Response(
            {"shares": ShareOutputSerializer(page, many=True).data, "total": shares.count()}  # type: ignore[arg-type]
        )


class ShareRevokeApi(APIView):
    @extend_schema(operation_id="chat_shares_revoke", responses={204: None, **api_errors(403, 404)})
    def delete(self, request: Request, share_id: str) -> Response:
        """Revoke a share link: it answers 404 from now on. Another user's share is 404."""
        share_revoke(user=authenticated_user(request), share_id=share_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
