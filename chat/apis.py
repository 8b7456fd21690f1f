"""Chat REST API: one APIView per operation (HackSoft style).

Operations that share a URL are put behind it by ``copilot_site.core.api_routing``
(see ``chat/urls.py``). Each handler validates, calls one service or selector and
serializes; errors travel as exceptions to the one API exception handler.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from copilot_site.core.pagination import OffsetField
from copilot_site.core.serializers import StrictCharField, UnknownKeysRefusedMixin

from .models import ChatMessage, ChatSession
from .selectors import message_page, session_get_for_user, session_list, ui_message_page
from .services.sessions import session_create, session_delete, session_rename
from .services.turns import turn_running
from .turns.dispatch import turn_send
from .turns.follow import turn_listeners_disconnect
from .turns.pending import pending_peek
from .turns.registry import iso_from_unix, turn_cancel_request
from .turns.scripts import turn_statuses
from .turns.sse import StreamContentNegotiation, followup_sse_response, sse_response, stream_mark


class SessionOutputSerializer(serializers.Serializer[ChatSession]):
    id = serializers.UUIDField()
    title = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    turn_in_flight = serializers.SerializerMethodField()

    def get_turn_in_flight(self, obj: ChatSession) -> bool:
        statuses: dict[str, bool] = self.context.get("turn_statuses", {})
        return statuses.get(str(obj.pk), False)


class MessageOutputSerializer(serializers.Serializer[ChatMessage]):
    sequence = serializers.IntegerField()
    role = serializers.CharField()
    kind = serializers.ChoiceField(choices=ChatMessage.Kind.choices)
    content = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    tool_call_id = serializers.CharField()
    tool_calls = serializers.JSONField()
    client_message_id = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class ContextSerializer(serializers.Serializer[Any]):
    """Page context; unknown keys are accepted and dropped."""

    url = StrictCharField(max_length=2000, required=False, allow_blank=True)
    content = StrictCharField(max_length=32000, required=False, allow_blank=True)


def _session_data(session: ChatSession) -> dict[str, Any]:
    return dict(SessionOutputSerializer(session, context={"turn_statuses": turn_statuses([session.pk])}).data)


# --- sessions ---------------------------------------------------------------------------------


class SessionListApi(APIView):
    class FilterSerializer(serializers.Serializer[Any]):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=50)
        offset = OffsetField()

    @extend_schema(parameters=[FilterSerializer])
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        sessions = session_list(user=request.user)
        limit, offset = filters.validated_data["limit"], filters.validated_data["offset"]
        page = list(sessions[offset : offset + limit])
        context = {"turn_statuses": turn_statuses(s.pk for s in page)}
        sessions_data = SessionOutputSerializer(page, many=True, context=context).data  # type: ignore[arg-type]
        return Response({"sessions": sessions_data, "total": sessions.count()})


class SessionCreateApi(APIView):
    class InputSerializer(UnknownKeysRefusedMixin, serializers.Serializer[Any]):
        title = StrictCharField(required=False, allow_blank=True, max_length=200)

    @extend_schema(request=InputSerializer, responses={201: SessionOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_create(user=request.user, title=serializer.validated_data.get("title") or None)
        return Response(_session_data(session), status=status.HTTP_201_CREATED)


class SessionGetApi(APIView):
    class FilterSerializer(serializers.Serializer[Any]):
        limit = serializers.IntegerField(min_value=1, max_value=200, default=50)
        before_sequence = serializers.IntegerField(min_value=0, required=False)

    @extend_schema(parameters=[FilterSerializer])
    def get(self, request: Request, session_id: str) -> Response:
        """The session, a page of its messages and, on the newest page, its running turn."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        session = session_get_for_user(session_id=session_id, user=request.user)
        before_sequence = filters.validated_data.get("before_sequence")
        page = message_page(session=session, limit=filters.validated_data["limit"], before_sequence=before_sequence)
        active = turn_running(session.pk, reap=True) if before_sequence is None else None
        return Response(
            {
                "session": _session_data(session),
                "messages": MessageOutputSerializer(page.messages, many=True).data,  # type: ignore[arg-type]
                "has_more": page.has_more,
                "oldest_sequence": page.oldest_sequence,
                "active_turn": (
                    {"turn_id": active.turn_id, "started_at": iso_from_unix(active.created_at)} if active else None
                ),
            }
        )


class SessionRenameApi(APIView):
    @extend_schema_serializer(component_name="SessionRenameInput")
    class InputSerializer(serializers.Serializer[Any]):
        title = StrictCharField(max_length=200, allow_blank=True)

        def validate_title(self, value: str) -> str:
            if not value.strip():
                raise serializers.ValidationError("Title must not be blank")
            return value

    @extend_schema(request=InputSerializer, responses={200: SessionOutputSerializer})
    def patch(self, request: Request, session_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_rename(session_id=session_id, user=request.user, title=serializer.validated_data["title"])
        return Response(_session_data(session))


class SessionDeleteApi(APIView):
    def delete(self, request: Request, session_id: str) -> Response:
        session_delete(session_id=session_id, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UIMessageOutputSerializer(serializers.Serializer[Any]):
    """An AI SDK ``UIMessage``."""

    id = serializers.CharField()
    role = serializers.ChoiceField(choices=["user", "assistant"])
    parts = serializers.ListField(child=serializers.DictField(), help_text="UIMessage parts (text, reasoning, …).")
    metadata = serializers.DictField()


class ActiveTurnOutputSerializer(serializers.Serializer[Any]):
    turn_id = serializers.CharField()
    started_at = serializers.DateTimeField()


class UIMessagePageOutputSerializer(serializers.Serializer[Any]):
    session = SessionOutputSerializer()
    messages = UIMessageOutputSerializer(many=True)
    has_more = serializers.BooleanField()
    oldest_sequence = serializers.IntegerField(allow_null=True)
    active_turn = ActiveTurnOutputSerializer(allow_null=True)


class UIMessageListApi(APIView):
    """The transcript as AI SDK ``UIMessage`` objects, for ``useChat({messages, resume: true})``.

    Same query parameters and envelope as the transcript (`SessionGetApi`); ``messages``
    holds UIMessages. A page is widened back to the start of the turn its oldest row
    belongs to, so a message is never split across pages. While a turn runs its
    assistant message is left out: resuming the stream (`GET …/stream`) replays it whole,
    under the same id.
    """

    class FilterSerializer(serializers.Serializer[Any]):
        limit = serializers.IntegerField(min_value=1, max_value=200, default=50)
        before_sequence = serializers.IntegerField(min_value=0, required=False)

    @extend_schema(parameters=[FilterSerializer], responses={200: UIMessagePageOutputSerializer})
    def get(self, request: Request, session_id: str) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        session = session_get_for_user(session_id=session_id, user=request.user)
        before_sequence = filters.validated_data.get("before_sequence")
        active = turn_running(session.pk, reap=True)
        page = ui_message_page(
            session=session,
            limit=filters.validated_data["limit"],
            before_sequence=before_sequence,
            running_turn_id=str(active.turn_id) if active else None,
        )
        return Response(
            {
                "session": _session_data(session),
                "messages": page.messages,
                "has_more": page.has_more,
                "oldest_sequence": page.oldest_sequence,
                "active_turn": (
                    {"turn_id": active.turn_id, "started_at": iso_from_unix(active.created_at)}
                    if active and before_sequence is None
                    else None
                ),
            }
        )


# --- turns ----------------------------------------------------------------------------------------


class TurnSendApi(APIView):
    class InputSerializer(serializers.Serializer[Any]):
        message = StrictCharField(trim_whitespace=False)  # length: COPILOT_MESSAGE_MAX_CHARS, in validate_message
        client_message_id = StrictCharField(max_length=100, required=False, allow_null=True)
        context = ContextSerializer(required=False, allow_null=True)  # type: ignore[assignment]
        file_ids = serializers.ListField(child=StrictCharField(), required=False, max_length=20)
        mode = serializers.ChoiceField(choices=["fast", "extended_thinking"], required=False, allow_null=True)
        model = serializers.ChoiceField(choices=["standard", "advanced"], required=False, allow_null=True)
        delivery = serializers.ChoiceField(choices=["now", "next_turn"], required=False, default="now")

        def validate_message(self, value: str) -> str:
            if not value.strip():
                raise serializers.ValidationError("Message must not be blank.")
            limit = settings.COPILOT_MESSAGE_MAX_CHARS
            if len(value) > limit:
                raise serializers.ValidationError(f"Ensure this field has no more than {limit} characters.")
            return value

        def validate_file_ids(self, value: list[str]) -> list[str]:
            if value:
                raise serializers.ValidationError("File attachments are not supported yet.")
            return value

    content_negotiation_class = StreamContentNegotiation

    @extend_schema(request=InputSerializer, responses={200: None, 202: None})
    def post(self, request: Request, session_id: str) -> Response | StreamingHttpResponse:
        """Send a message. A new turn answers 200 with its stream (SSE). A follow-up sent while a
        turn runs is queued; a client that accepts `text/event-stream` (no `Accept`, `*/*`,
        any q > 0) gets 200 with `followup_body`'s stream (`data-queued`, then the session's
        turns from now until the follow-up is answered), one that accepts only JSON gets 202
        `{buffer_length, max_buffer_length, turn_in_flight}`."""
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        context = data.get("context") or None
        wants_stream = getattr(request, "accepts_event_stream", True)
        # Read before the send queues anything: the follow-up's stream relays what comes after.
        mark = stream_mark(session_id) if wants_stream else None
        result = turn_send(
            user=request.user,
            session_id=session_id,
            message=data["message"],
            client_message_id=data.get("client_message_id"),
            context={k: v for k, v in context.items() if v} if context else None,
            mode=data.get("mode"),
            model=data.get("model"),
            next_turn=data["delivery"] == "next_turn",
        )
        if result.outcome == "queued" and wants_stream:
            return followup_sse_response(
                session_id,
                mark=mark,
                position=result.buffer_length,
                message=data["message"],
                client_message_id=data.get("client_message_id"),
            )
        if result.outcome == "queued":
            return Response(result.queued_body(), status=status.HTTP_202_ACCEPTED)
        return sse_response(session_id, turn_id=result.turn_id or None)


class TurnStreamApi(APIView):
    content_negotiation_class = StreamContentNegotiation

    @extend_schema(responses={200: None, 204: None})
    def get(self, request: Request, session_id: str) -> Response | StreamingHttpResponse:
        """Re-attach to the running turn's stream (from ``Last-Event-ID`` or ``after``); 204 when none runs."""
        session = session_get_for_user(session_id=session_id, user=request.user)
        meta = turn_running(session.pk, reap=True)
        if meta is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        after = request.headers.get("Last-Event-ID") or request.query_params.get("after") or None
        return sse_response(str(session.pk), after=after, turn_id=meta.turn_id)


class TurnListenersDisconnectApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, session_id: str) -> Response:
        """Close every SSE and WebSocket listener of the session's turn; the turn keeps running.

        SSE responses end; WebSockets close with 4000 (a client that reconnects re-attaches).
        """
        session = session_get_for_user(session_id=session_id, user=request.user)
        turn_listeners_disconnect(session.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TurnCancelApi(APIView):
    def post(self, request: Request, session_id: str) -> Response:
        session = session_get_for_user(session_id=session_id, user=request.user)
        return Response(turn_cancel_request(session.pk))


class PendingListApi(APIView):
    def get(self, request: Request, session_id: str) -> Response:
        """The messages queued behind the running turn, oldest first."""
        session = session_get_for_user(session_id=session_id, user=request.user)
        messages = [m.content for m in pending_peek(session.pk)]
        return Response({"messages": messages, "count": len(messages)})
