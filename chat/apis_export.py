"""`GET /api/chat/sessions/{id}/export?format=md|json`: the transcript as a download (see `chat.export`)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.openapi import api_errors

from .export import export_filename, session_export_json, session_export_markdown
from .selectors import session_get_for_user


class ExportContentNegotiation(BaseContentNegotiation):
    """The export's success is a file the view builds itself; every other answer is JSON.

    DRF reads a `format` query parameter as a renderer choice (and answers 404 for an
    unknown one); here `format` names the file format instead, so it is ignored for
    rendering, as is `Accept` (a download is wanted whatever the client prefers).
    """

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        renderer = next((r for r in renderers if r.media_type == "application/json"), renderers[0])
        return renderer, renderer.media_type


@extend_schema_serializer(component_name="ExportToolCall")
class ExportToolCallSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    name = serializers.CharField()
    input = serializers.JSONField(help_text="The call's arguments, decoded from JSON (text when they were not JSON).")


@extend_schema_serializer(component_name="ExportToolResult")
class ExportToolResultSerializer(serializers.Serializer[Any]):
    tool_call_id = serializers.CharField()
    name = serializers.CharField()
    output = serializers.JSONField(allow_null=True, help_text="The output, decoded when it is JSON.")


@extend_schema_serializer(component_name="ExportMessage")
class ExportMessageSerializer(serializers.Serializer[Any]):
    sequence = serializers.IntegerField()
    # Text, not an enum: a second `role` enum would collide with the Message one's name.
    role = serializers.CharField(help_text="`user`, `assistant`, `reasoning` or `tool`.")
    kind = serializers.ChoiceField(choices=["message", "stopped", "error_notice"])
    created_at = serializers.DateTimeField()
    turn_id = serializers.UUIDField(allow_null=True)
    text = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    tool_calls = ExportToolCallSerializer(many=True)
    tool_result = ExportToolResultSerializer(allow_null=True)


@extend_schema_serializer(component_name="ExportSession")
class ExportSessionSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    title = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ChatExport")
class ExportOutputSerializer(serializers.Serializer[Any]):
    format = serializers.ChoiceField(choices=["copilot.chat-export"])
    version = serializers.IntegerField()
    session = ExportSessionSerializer()
    messages = ExportMessageSerializer(many=True)


_DESCRIPTION = (
    "The transcript as a download (`Content-Disposition: attachment`): Markdown for `format=md`, "
    "JSON for `format=json`."
)


class SessionExportApi(APIView):
    content_negotiation_class = ExportContentNegotiation

    class FilterSerializer(serializers.Serializer[Any]):
        format = serializers.ChoiceField(choices=["md", "json"], default="md", help_text="`md` (default) or `json`.")

    @extend_schema(
        operation_id="chat_sessions_export",
        parameters=[FilterSerializer],
        responses={
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR, description=_DESCRIPTION),
            (200, "application/json"): OpenApiResponse(ExportOutputSerializer, description=_DESCRIPTION),
            **api_errors(400, 404),
        },
    )
    def get(self, request: Request, session_id: str) -> Response | HttpResponse:
        """The session's transcript with tool calls and outputs, reasoning and timestamps."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
        if filters.validated_data["format"] == "json":
            body = json.dumps(session_export_json(session=session), ensure_ascii=False, indent=2) + "\n"
            response = HttpResponse(body, content_type="application/json; charset=utf-8")
            filename = export_filename(session=session, extension="json")
        else:
            body = session_export_markdown(session=session)
            response = HttpResponse(body, content_type="text/markdown; charset=utf-8")
            filename = export_filename(session=session, extension="md")
        response["Content-Disposition"] = str(content_disposition_header(as_attachment=True, filename=filename))
        response["Cache-Control"] = "private, no-store"
        return response
