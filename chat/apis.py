"""Chat REST API: one APIView per operation (HackSoft style).

Operations that share a URL are put behind it by ``copilot_site.core.api_routing``
(see ``chat/urls.py``). Each handler validates, calls one service or selector and
serializes; errors travel as exceptions to the one API exception handler.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.openapi import ErrorSerializer, api_errors
from copilot_site.core.pagination import OffsetField
from copilot_site.core.serializers import StrictCharField, UnknownKeysRefusedMixin
from ratelimits import user_caps

from .errors import MessageNotFound
from .models import Attachment, ChatMessage, ChatSession, ToolApproval
from .selectors import (
    MAX_SEQUENCE,
    MessagePage,
    approvals_pending,
    attachment_get_for_user,
    attachment_list,
    attachment_usage_bytes,
    message_attachments,
    message_page,
    row_attachments,
    session_get_for_user,
    session_list,
    turn_usage_shares,
    ui_message_page,
)
from .services.approvals import approval_decide
from .services.attachments import (
    UPLOAD_FRAMING_BYTES,
    attachment_create,
    attachment_delete,
    attachment_open,
    attachment_quota_bytes,
    upload_size_check,
)
from .services.messages import session_branch_switch
from .services.sessions import session_create, session_delete, session_rename
from .services.turns import reap_if_dead, turn_running
from .turns.dispatch import turn_edit, turn_regenerate, turn_send
from .turns.follow import turn_listeners_disconnect
from .turns.pending import pending_peek
from .turns.registry import iso_from_unix, turn_cancel_request
from .turns.scripts import turn_statuses
from .turns.sse import StreamContentNegotiation, followup_sse_response, sse_response, stream_mark


@extend_schema_serializer(component_name="Session")
class SessionOutputSerializer(serializers.Serializer[ChatSession]):
    id = serializers.UUIDField()
    title = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    turn_in_flight = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField(help_text="The model this chat's last message asked for; null: none yet.")
    mode = serializers.SerializerMethodField(help_text="The mode this chat's last message asked for; null: none yet.")

    def get_model(self, obj: ChatSession) -> str | None:
        return obj.model or None

    def get_mode(self, obj: ChatSession) -> str | None:
        return obj.mode or None

    def get_turn_in_flight(self, obj: ChatSession) -> bool:
        statuses: dict[str, bool] = self.context.get("turn_statuses", {})
        return statuses.get(str(obj.pk), False)


@extend_schema_serializer(component_name="MessageAttachment")
class MessageAttachmentSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    mime_type = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()
    deleted = serializers.BooleanField()


@extend_schema_serializer(component_name="MessageVersions")
class VersionsOutputSerializer(serializers.Serializer[Any]):
    """The versions of a message (it and its siblings: edits of it, or regenerated answers)."""

    position = serializers.IntegerField(help_text="This version's place among them, from 1 (oldest).")
    count = serializers.IntegerField(help_text="How many versions there are.")
    sequences = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="The sequence of each version, oldest first: `PUT …/branch {sequence}` shows one.",
    )


@extend_schema_serializer(component_name="AnswerUsage")
class AnswerUsageOutputSerializer(serializers.Serializer[Any]):
    """What the answer's turn cost the user's limits: percentages of the windows, never dollars."""

    charged = serializers.BooleanField(help_text="False: the turn spent nothing (e.g. it failed before any output).")
    outcome = serializers.ChoiceField(choices=["completed", "failed", "cancelled"])
    daily_percent = serializers.FloatField(
        allow_null=True, help_text="Percent of the daily limit, to 0.01; null when unlimited."
    )
    weekly_percent = serializers.FloatField(
        allow_null=True, help_text="Percent of the weekly limit, to 0.01; null when unlimited."
    )


@extend_schema_serializer(component_name="Message")
class MessageOutputSerializer(serializers.Serializer[ChatMessage]):
    sequence = serializers.IntegerField()
    parent_sequence = serializers.IntegerField(
        allow_null=True, help_text="The message this one follows in the transcript tree; null for a first message."
    )
    versions = serializers.SerializerMethodField(
        help_text="Set on a message that has other versions (siblings under the same parent); null otherwise."
    )
    role = serializers.CharField()
    kind = serializers.ChoiceField(choices=ChatMessage.Kind.choices)
    content = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    tool_call_id = serializers.CharField()
    tool_calls = serializers.JSONField()
    client_message_id = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    model = serializers.SerializerMethodField(
        help_text="On an assistant row: the model it was written with (`standard` | `advanced`); else null."
    )
    mode = serializers.SerializerMethodField(
        help_text="On an assistant row: the mode it was written in (`fast` | `extended_thinking`); else null."
    )
    created_at = serializers.DateTimeField()
    attachments = serializers.SerializerMethodField(
        help_text="User messages: the files the message carried, in order (`deleted` once the owner deleted one; "
        "files deleted for good are left out)."
    )

    @extend_schema_field(MessageAttachmentSerializer(many=True))
    def get_attachments(self, obj: ChatMessage) -> list[dict[str, Any]]:
        found: dict[str, Attachment] = self.context.get("attachments", {})
        return row_attachments(obj, found)

    def get_model(self, obj: ChatMessage) -> str | None:
        return obj.model or None

    def get_mode(self, obj: ChatMessage) -> str | None:
        return obj.mode or None

    usage = serializers.SerializerMethodField(
        help_text="On an assistant row of a finished turn: what that turn cost the user's limits; else null."
    )

    @extend_schema_field(VersionsOutputSerializer(allow_null=True))
    def get_versions(self, obj: ChatMessage) -> dict[str, Any] | None:
        page: MessagePage | None = self.context.get("page")
        return page.versions(obj) if page is not None else None

    @extend_schema_field(AnswerUsageOutputSerializer(allow_null=True))
    def get_usage(self, obj: ChatMessage) -> dict[str, Any] | None:
        page: MessagePage | None = self.context.get("page")
        return page.usage(obj, self.context.get("shares", {})) if page is not None else None


@extend_schema_serializer(component_name="PageContext")
class ContextSerializer(serializers.Serializer[Any]):
    """Page context; unknown keys are accepted and dropped."""

    url = StrictCharField(max_length=2000, required=False, allow_blank=True)
    content = StrictCharField(max_length=32000, required=False, allow_blank=True)


@extend_schema_serializer(component_name="SessionList")
class SessionListOutputSerializer(serializers.Serializer[Any]):
    sessions = SessionOutputSerializer(many=True)
    total = serializers.IntegerField()


@extend_schema_serializer(component_name="ActiveTurn")
class ActiveTurnOutputSerializer(serializers.Serializer[Any]):
    turn_id = serializers.CharField()
    started_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ToolApproval")
class ApprovalOutputSerializer(serializers.Serializer[ToolApproval]):
    id = serializers.UUIDField()
    tool_call_id = serializers.CharField()
    tool_name = serializers.CharField()
    input = serializers.JSONField()
    reason = serializers.ChoiceField(choices=ToolApproval.Reason.choices, help_text="Why the call asks first.")
    cost_cents = serializers.IntegerField(help_text="The credit price of one run of the tool.")
    status = serializers.ChoiceField(choices=ToolApproval.Status.choices)
    decision_reason = serializers.CharField(help_text="The user's reason, on a denial.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="No answer by then counts as a denial.")
    decided_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="SessionDetail")
class SessionDetailOutputSerializer(serializers.Serializer[Any]):
    session = SessionOutputSerializer()
    messages = MessageOutputSerializer(many=True)
    has_more = serializers.BooleanField()
    oldest_sequence = serializers.IntegerField(allow_null=True)
    active_turn = ActiveTurnOutputSerializer(allow_null=True, help_text="The running turn; null on older pages.")
    pending_approvals = ApprovalOutputSerializer(
        many=True,
        help_text="Tool calls of the running turn that wait for the user's Approve / Deny; [] on older pages.",
    )


def _session_data(session: ChatSession) -> dict[str, Any]:
    return dict(SessionOutputSerializer(session, context={"turn_statuses": turn_statuses([session.pk])}).data)


# --- sessions ---------------------------------------------------------------------------------


class SessionListApi(APIView):
    class FilterSerializer(serializers.Serializer[Any]):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=50)
        offset = OffsetField()

    @extend_schema(
        operation_id="chat_sessions_list",
        parameters=[FilterSerializer],
        responses={200: SessionListOutputSerializer, **api_errors(400)},
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        sessions = session_list(user=authenticated_user(request))
        limit, offset = filters.validated_data["limit"], filters.validated_data["offset"]
        page = list(sessions[offset : offset + limit])
        context = {"turn_statuses": turn_statuses(s.pk for s in page)}
        sessions_data = SessionOutputSerializer(page, many=True, context=context).data  # type: ignore[arg-type]
        return Response({"sessions": sessions_data, "total": sessions.count()})


class SessionCreateApi(APIView):
    @extend_schema_serializer(component_name="SessionCreateInput")
    class InputSerializer(UnknownKeysRefusedMixin, serializers.Serializer[Any]):
        """An optional title; any other key is refused (400)."""

        title = StrictCharField(required=False, allow_blank=True, max_length=200)

    @extend_schema(request=InputSerializer, responses={201: SessionOutputSerializer, **api_errors(400, 403, 413)})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticated_user(request)
        user_caps.user_session_create_check(user=user)
        session = session_create(user=user, title=serializer.validated_data.get("title") or None)
        return Response(_session_data(session), status=status.HTTP_201_CREATED)


class SessionGetApi(APIView):
    class FilterSerializer(serializers.Serializer[Any]):
        limit = serializers.IntegerField(min_value=1, max_value=200, default=50)
        before_sequence = serializers.IntegerField(min_value=0, required=False)

    @extend_schema(
        parameters=[FilterSerializer], responses={200: SessionDetailOutputSerializer, **api_errors(400, 404)}
    )
    def get(self, request: Request, session_id: str) -> Response:
        """The session, a page of its current branch's messages (each with its versions when
        it has siblings) and, on the newest page, its running turn."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
        return Response(
            _session_detail(
                session, limit=filters.validated_data["limit"], before=filters.validated_data.get("before_sequence")
            )
        )


def _session_detail(session: ChatSession, *, limit: int, before: int | None = None) -> dict[str, Any]:
    page = message_page(session=session, limit=limit, before_sequence=before)
    active = turn_running(session.pk, reap=True) if before is None else None
    shares = turn_usage_shares(user_id=session.user_id, turn_ids={row.turn_id for row in page.messages})
    context = {"page": page, "shares": shares, "attachments": message_attachments(page.messages)}
    return {
        "session": _session_data(session),
        "messages": MessageOutputSerializer(page.messages, many=True, context=context).data,  # type: ignore[arg-type]
        "has_more": page.has_more,
        "oldest_sequence": page.oldest_sequence,
        "active_turn": (
            {"turn_id": active.turn_id, "started_at": iso_from_unix(active.created_at)} if active else None
        ),
        "pending_approvals": ApprovalOutputSerializer(
            approvals_pending(session=session, turn_id=active.turn_id if active else None),  # type: ignore[arg-type]
            many=True,
        ).data,
    }


class SessionRenameApi(APIView):
    @extend_schema_serializer(component_name="SessionRenameInput")
    class InputSerializer(serializers.Serializer[Any]):
        title = StrictCharField(max_length=200, allow_blank=True)

        def validate_title(self, value: str) -> str:
            if not value.strip():
                raise serializers.ValidationError("Title must not be blank")
            return value

    @extend_schema(request=InputSerializer, responses={200: SessionOutputSerializer, **api_errors(400, 403, 404, 413)})
    def patch(self, request: Request, session_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_rename(
            session_id=session_id, user=authenticated_user(request), title=serializer.validated_data["title"]
        )
        return Response(_session_data(session))


class SessionDeleteApi(APIView):
    @extend_schema(responses={204: None, **api_errors(403, 404)})
    def delete(self, request: Request, session_id: str) -> Response:
        session_delete(session_id=session_id, user=authenticated_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_serializer(component_name="UIMessage")
class UIMessageOutputSerializer(serializers.Serializer[Any]):
    """An AI SDK ``UIMessage``."""

    id = serializers.CharField()
    role = serializers.ChoiceField(choices=["user", "assistant"])
    parts = serializers.ListField(child=serializers.DictField(), help_text="UIMessage parts (text, reasoning, …).")
    metadata = serializers.DictField()


@extend_schema_serializer(component_name="UIMessagePage")
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

    @extend_schema(
        parameters=[FilterSerializer], responses={200: UIMessagePageOutputSerializer, **api_errors(400, 404)}
    )
    def get(self, request: Request, session_id: str) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
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


@extend_schema_serializer(component_name="StreamEvent")
class StreamEventSerializer(serializers.Serializer[Any]):
    """One server-sent event of a turn's stream (heartbeats are `: heartbeat` comments, not events)."""

    id = serializers.CharField(
        required=False, help_text="The event id: send the last one back as `Last-Event-ID` (or `after`) to resume."
    )
    event = serializers.CharField(required=False, help_text="Always the default, `message`.")
    # Schema only (never instantiated); DRF's metaclass moves declared fields off the
    # class, so this does not shadow `Serializer.data`.
    data = serializers.CharField(  # type: ignore[assignment]
        help_text="A UI message stream chunk as JSON, or `[DONE]` after the last one."
    )


_SSE_RESPONSE = OpenApiResponse(
    StreamEventSerializer,
    description="The turn as server-sent events in the AI SDK UI message stream protocol v1 "
    "(`x-vercel-ai-ui-message-stream: v1`), each event as described: `id:` + `data: <chunk JSON>` per "
    "chunk, `: heartbeat` comments, `data: [DONE]` at the end.",
)


@extend_schema_serializer(component_name="MessageQueued")
class QueuedOutputSerializer(serializers.Serializer[Any]):
    buffer_length = serializers.IntegerField()
    max_buffer_length = serializers.IntegerField()
    turn_in_flight = serializers.BooleanField()


class StreamResumeSerializer(serializers.Serializer[Any]):
    after = serializers.CharField(
        required=False, help_text="The last event id received, for clients that cannot set `Last-Event-ID`."
    )


class TurnSendApi(APIView):
    @extend_schema_serializer(component_name="MessageSendInput")
    class InputSerializer(serializers.Serializer[Any]):
        # Blank only with files attached (`validate`); length: COPILOT_MESSAGE_MAX_CHARS, in validate_message.
        message = StrictCharField(trim_whitespace=False, allow_blank=True)
        client_message_id = StrictCharField(max_length=100, required=False, allow_null=True)
        context = ContextSerializer(required=False, allow_null=True)  # type: ignore[assignment]
        file_ids = serializers.ListField(
            child=StrictCharField(max_length=100),
            required=False,
            help_text="Ids of the sender's own files to attach (at most COPILOT_MAX_FILE_IDS, 20; more is a 400). "
            "Ids that are not UUIDs of the sender's own files that are not deleted are dropped.",
        )
        mode = serializers.ChoiceField(choices=["fast", "extended_thinking"], required=False, allow_null=True)
        model = serializers.ChoiceField(choices=["standard", "advanced"], required=False, allow_null=True)
        delivery = serializers.ChoiceField(choices=["now", "next_turn"], required=False, default="now")

        def validate_message(self, value: str) -> str:
            limit = settings.COPILOT_MESSAGE_MAX_CHARS
            if len(value) > limit:
                raise serializers.ValidationError(f"Ensure this field has no more than {limit} characters.")
            return value

        def validate_file_ids(self, value: list[str]) -> list[str]:
            limit = int(settings.COPILOT_MAX_FILE_IDS)
            if len(value) > limit:
                raise serializers.ValidationError(f"A message can carry at most {limit} files.")
            return value

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            """Blank text is allowed only with files attached (kept files: checked when sent)."""
            if not attrs["message"].strip() and not attrs.get("file_ids"):
                raise serializers.ValidationError({"message": ["Message must not be blank."]})
            return attrs

    content_negotiation_class = StreamContentNegotiation

    @extend_schema(
        request=InputSerializer,
        responses={
            (200, "text/event-stream"): _SSE_RESPONSE,
            202: OpenApiResponse(
                QueuedOutputSerializer,
                description="A turn is running: the message was queued as a follow-up (a client that accepts "
                "JSON and not `text/event-stream`; any other gets 200 with the follow-up's stream).",
            ),
            **api_errors(400, 403, 404, 413, 503),
        },
    )
    def post(self, request: Request, session_id: str) -> Response | StreamingHttpResponse:
        """Send a message. A new turn answers 200 with its stream (SSE). A follow-up sent while a
        turn runs is queued; a client that accepts `text/event-stream` (no `Accept`, `*/*`,
        any q > 0) gets 200 with `followup_body`'s stream (`data-queued`, then each turn the
        session starts after it, from its `start`, until the follow-up is answered; the running
        turn is not relayed again), one that accepts only JSON gets 202
        `{buffer_length, max_buffer_length, turn_in_flight}`."""
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        context = data.get("context") or None
        wants_stream = getattr(request, "accepts_event_stream", True)
        # Read before the send queues anything: the follow-up's stream relays what comes after.
        mark = stream_mark(session_id) if wants_stream else None
        result = turn_send(
            user=authenticated_user(request),
            session_id=session_id,
            message=data["message"],
            client_message_id=data.get("client_message_id"),
            context={k: v for k, v in context.items() if v} if context else None,
            mode=data.get("mode"),
            model=data.get("model"),
            next_turn=data["delivery"] == "next_turn",
            file_ids=data.get("file_ids") or (),
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

    @extend_schema(
        parameters=[
            StreamResumeSerializer,
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="The last event id received: the stream resumes after it (wins over `after`).",
            ),
        ],
        responses={
            (200, "text/event-stream"): _SSE_RESPONSE,
            204: OpenApiResponse(description="No turn is running."),
            **api_errors(404),
        },
    )
    def get(self, request: Request, session_id: str) -> Response | StreamingHttpResponse:
        """Re-attach to the running turn's stream (from ``Last-Event-ID`` or ``after``); 204 when none runs."""
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
        meta = turn_running(session.pk, reap=True)
        if meta is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        after = request.headers.get("Last-Event-ID") or request.query_params.get("after") or None
        return sse_response(str(session.pk), after=after, turn_id=meta.turn_id)


class TurnListenersDisconnectApi(APIView):
    @extend_schema(responses={204: None, **api_errors(403, 404)})
    def delete(self, request: Request, session_id: str) -> Response:
        """Close every SSE and WebSocket listener of the session's turn; the turn keeps running.

        SSE responses end; WebSockets close with 4000 (a client that reconnects re-attaches).
        """
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
        turn_listeners_disconnect(session.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TurnCancelApi(APIView):
    @extend_schema_serializer(component_name="TurnCancel")
    class OutputSerializer(serializers.Serializer[Any]):
        cancelled = serializers.BooleanField()
        reason = serializers.CharField(allow_null=True, help_text="`no_active_session` when nothing was running.")

    @extend_schema(request=None, responses={200: OutputSerializer, **api_errors(403, 404)})
    def post(self, request: Request, session_id: str) -> Response:
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
        return Response(turn_cancel_request(session.pk))


class PendingListApi(APIView):
    @extend_schema_serializer(component_name="PendingMessages")
    class OutputSerializer(serializers.Serializer[Any]):
        messages = serializers.ListField(child=serializers.CharField())
        count = serializers.IntegerField()

    @extend_schema(responses={200: OutputSerializer, **api_errors(404)})
    def get(self, request: Request, session_id: str) -> Response:
        """The messages queued behind the running turn, oldest first."""
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
        messages = [m.content for m in pending_peek(session.pk)]
        return Response({"messages": messages, "count": len(messages)})


# --- files (attachments) -------------------------------------------------------------------


@extend_schema_serializer(component_name="File")
class FileOutputSerializer(serializers.Serializer[Attachment]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    mime_type = serializers.CharField(help_text="Sniffed from the content when it was uploaded.")
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="FileList")
class FileListOutputSerializer(serializers.Serializer[Any]):
    files = FileOutputSerializer(many=True)
    total = serializers.IntegerField()
    used_bytes = serializers.IntegerField(help_text="What the user's files (not deleted) take.")
    quota_bytes = serializers.IntegerField(allow_null=True, help_text="The plan's storage quota; null: none.")


_UPLOAD_ERRORS = {
    413: OpenApiResponse(
        ErrorSerializer,
        description="The file is larger than COPILOT_MAX_UPLOAD_BYTES (`code`: `file_too_large`, `max_bytes`), or "
        "it would take the user's files over their plan's storage quota (`code`: `quota_exceeded`, "
        "`quota_bytes`, `used_bytes`).",
    ),
    415: OpenApiResponse(
        ErrorSerializer,
        description="The content is not an allowed type (`code`: `unsupported_type`, `mime_type` as sniffed), "
        "or the body is not multipart.",
    ),
    429: OpenApiResponse(
        ErrorSerializer,
        description="More uploads this minute than COPILOT_UPLOADS_PER_MINUTE (`code`: `too_many_uploads`, with "
        "`Retry-After`), or too many wrong API keys from this address.",
    ),
}


class FileListApi(APIView):
    class FilterSerializer(serializers.Serializer[Any]):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=50)
        offset = OffsetField()

    @extend_schema(
        operation_id="chat_files_list",
        parameters=[FilterSerializer],
        responses={200: FileListOutputSerializer, **api_errors(400)},
    )
    def get(self, request: Request) -> Response:
        """The user's files, newest first (deleted ones are not listed)."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        user = authenticated_user(request)
        files = attachment_list(user=user)
        limit, offset = filters.validated_data["limit"], filters.validated_data["offset"]
        page = list(files[offset : offset + limit])
        data = FileOutputSerializer(page, many=True).data  # type: ignore[arg-type]
        quota = attachment_quota_bytes(user=user)
        return Response(
            {
                "files": data,
                "total": files.count(),
                "used_bytes": attachment_usage_bytes(user_id=user.pk),
                "quota_bytes": quota or None,
            }
        )


class FileUploadApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="FileUploadInput")
    class InputSerializer(serializers.Serializer[Any]):
        file = serializers.FileField(help_text="The file; its type is sniffed from the content.")

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: FileOutputSerializer, **api_errors(400, 403), **_UPLOAD_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """Upload one file (multipart field `file`). Refused uploads leave nothing stored."""
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        # A body far over the file limit is refused before it is parsed (multipart framing aside).
        upload_size_check(max(0, declared - UPLOAD_FRAMING_BYTES))
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        attachment = attachment_create(owner=authenticated_user(request), name=upload.name or "", stream=upload)
        return Response(FileOutputSerializer(attachment).data, status=status.HTTP_201_CREATED)


class FileGetApi(APIView):
    @extend_schema(responses={200: FileOutputSerializer, **api_errors(404)})
    def get(self, request: Request, file_id: str) -> Response:
        attachment = attachment_get_for_user(attachment_id=file_id, user=authenticated_user(request))
        return Response(FileOutputSerializer(attachment).data)


class FileDeleteApi(APIView):
    @extend_schema(responses={204: None, **api_errors(403, 404)})
    def delete(self, request: Request, file_id: str) -> Response:
        """Delete the file: it is gone from the API, new messages and the model's tool at once."""
        attachment_delete(attachment_id=file_id, user=authenticated_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FileContentApi(APIView):
    @extend_schema(
        responses={
            **{
                (200, media_type): OpenApiResponse(
                    OpenApiTypes.ANY if media_type == "application/json" else OpenApiTypes.BINARY,
                    description="The bytes, with the stored (sniffed) type as `Content-Type`, "
                    "`Content-Disposition: attachment` and `X-Content-Type-Options: nosniff`.",
                )
                for media_type in ("text/*", "application/json", "application/pdf", "image/*")
            },
            **api_errors(404),
        }
    )
    def get(self, request: Request, file_id: str) -> FileResponse:
        """The file's bytes, as a download."""
        attachment = attachment_get_for_user(attachment_id=file_id, user=authenticated_user(request))
        response = FileResponse(
            attachment_open(attachment),
            as_attachment=True,
            filename=attachment.name,
            content_type=attachment.mime_type,
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, max-age=3600"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response


# --- versions: edit, regenerate, switch ------------------------------------------------------------


def _sequence_from_path(raw: str) -> int:
    """A message's sequence from the URL; anything that is not one is a message not found (404)."""
    if not raw.isascii() or not raw.isdigit():
        raise MessageNotFound(raw)
    return int(raw)


class MessageVersionCreateApi(APIView):
    """A new version of a message, answered by a new turn on a new branch.

    On a user message, `message` is the edited text: it becomes a sibling of the message
    (same parent) and the turn answers it. On an answer (the `sequence` of any of its
    rows), leave `message` out: the turn answers the same user message again, and its
    rows become a sibling of the answer. Every earlier version is kept; the new branch
    becomes the current one. While a turn runs this is refused with 409
    `{detail, code: "turn_in_progress"}` and nothing is saved.
    """

    @extend_schema_serializer(component_name="MessageVersionInput")
    class InputSerializer(UnknownKeysRefusedMixin, serializers.Serializer[Any]):
        message = StrictCharField(
            trim_whitespace=False, required=False, help_text="The edited text (a user message only)."
        )
        client_message_id = StrictCharField(max_length=100, required=False, allow_null=True)
        mode = serializers.ChoiceField(choices=["fast", "extended_thinking"], required=False, allow_null=True)
        model = serializers.ChoiceField(choices=["standard", "advanced"], required=False, allow_null=True)

        def validate_message(self, value: str) -> str:
            return TurnSendApi.InputSerializer().validate_message(value)

    content_negotiation_class = StreamContentNegotiation

    @extend_schema(
        operation_id="chat_sessions_messages_versions_create",
        parameters=[
            OpenApiParameter(
                "sequence", OpenApiTypes.INT, OpenApiParameter.PATH, description="The message's `sequence`."
            )
        ],
        request=InputSerializer,
        responses={(200, "text/event-stream"): _SSE_RESPONSE, **api_errors(400, 403, 404, 409, 413, 429, 503)},
    )
    def post(self, request: Request, session_id: str, sequence: str) -> StreamingHttpResponse:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = authenticated_user(request)
        number = _sequence_from_path(sequence)
        if "message" in data:
            result = turn_edit(
                user=user,
                session_id=session_id,
                sequence=number,
                message=data["message"],
                client_message_id=data.get("client_message_id"),
                mode=data.get("mode"),
                model=data.get("model"),
            )
        else:
            result = turn_regenerate(
                user=user, session_id=session_id, sequence=number, mode=data.get("mode"), model=data.get("model")
            )
        return sse_response(session_id, turn_id=result.turn_id or None)


class SessionBranchSwitchApi(APIView):
    """Show another version: the current branch becomes the newest one through message
    `sequence` (a version from a message's `versions.sequences`). Answers the session
    like `GET /api/chat/sessions/{id}` (the newest page of the new branch). The next turn
    continues, and the model sees, exactly this branch. Refused with 409 while a turn
    runs (nothing changes)."""

    @extend_schema_serializer(component_name="BranchSwitchInput")
    class InputSerializer(UnknownKeysRefusedMixin, serializers.Serializer[Any]):
        sequence = serializers.IntegerField(
            min_value=0, max_value=MAX_SEQUENCE, help_text="A message of the version to show."
        )

    @extend_schema(
        operation_id="chat_sessions_branch_update",
        request=InputSerializer,
        responses={200: SessionDetailOutputSerializer, **api_errors(400, 403, 404, 409, 413)},
    )
    def put(self, request: Request, session_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_get_for_user(session_id=session_id, user=authenticated_user(request))
        reap_if_dead(session.pk)
        session_branch_switch(
            session=session,
            sequence=serializer.validated_data["sequence"],
            turn_running=lambda: turn_running(session.pk) is not None,
        )
        return Response(_session_detail(session, limit=50))


# --- tools that ask first -----------------------------------------------------------------------


class ApprovalDecideApi(APIView):
    @extend_schema_serializer(component_name="ApprovalDecisionInput")
    class InputSerializer(UnknownKeysRefusedMixin, serializers.Serializer[Any]):
        approved = serializers.BooleanField()
        reason = StrictCharField(required=False, allow_blank=True, max_length=1000)

    @extend_schema(
        request=InputSerializer, responses={200: ApprovalOutputSerializer, **api_errors(400, 403, 404, 409, 413)}
    )
    def post(self, request: Request, session_id: str, approval_id: str) -> Response:
        """Approve or deny a tool call that waits (its `tool-approval-request` chunk's `approvalId`).

        The waiting turn picks the decision up within a quarter of a second, on whichever
        worker runs it. 409 when the call is no longer waiting (decided, timed out, stopped);
        404 for an approval that is not in one of the caller's chats."""
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        approval = approval_decide(
            user=authenticated_user(request),
            session_id=session_id,
            approval_id=approval_id,
            approved=serializer.validated_data["approved"],
            reason=serializer.validated_data.get("reason", ""),
        )
        return Response(ApprovalOutputSerializer(approval).data)
