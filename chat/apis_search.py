"""`GET /api/chat/search?q=`: the user's chats by title and message text (see `chat.search`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.openapi import api_errors
from copilot_site.core.pagination import OffsetField
from copilot_site.core.serializers import StrictCharField

from .apis import SessionOutputSerializer
from .search import SearchHit, chat_search, search_terms
from .turns.scripts import turn_statuses

_RANGES_HELP = "`[start, end)` ranges to highlight, in Unicode code points."


def _ranges_field() -> serializers.ListField:
    pair = serializers.ListField(child=serializers.IntegerField(), min_length=2, max_length=2)
    return serializers.ListField(child=pair, help_text=_RANGES_HELP)


@extend_schema_serializer(component_name="SearchSnippet")
class SnippetOutputSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(help_text="Plain text (never markup): part of the message, whitespace collapsed.")
    highlights = _ranges_field()
    sequence = serializers.IntegerField(help_text="The message's sequence in its session.")
    role = serializers.ChoiceField(choices=["user", "assistant"])


@extend_schema_serializer(component_name="SearchResult")
class SearchResultOutputSerializer(serializers.Serializer[Any]):
    session = SessionOutputSerializer()
    title_highlights = _ranges_field()
    snippet = SnippetOutputSerializer(
        allow_null=True, help_text="The newest matching message; null on a title-only hit."
    )


@extend_schema_serializer(component_name="SearchResults")
class SearchOutputSerializer(serializers.Serializer[Any]):
    results = SearchResultOutputSerializer(many=True)
    total = serializers.IntegerField()


class ChatSearchApi(APIView):
    class FilterSerializer(serializers.Serializer[Any]):
        q = StrictCharField(max_length=200, help_text="Words to find; each must start a word (PostgreSQL).")
        limit = serializers.IntegerField(min_value=1, max_value=50, default=20)
        offset = OffsetField()

        def validate_q(self, value: str) -> str:
            if not search_terms(value):
                raise serializers.ValidationError("Enter at least one letter or digit to search for.")
            return value

    @extend_schema(
        operation_id="chat_search",
        parameters=[FilterSerializer],
        responses={200: SearchOutputSerializer, **api_errors(400)},
    )
    def get(self, request: Request) -> Response:
        """The user's chats whose title or user/assistant message text holds every word of `q`,
        most recently updated first, each with its newest matching message as a snippet."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        page = chat_search(
            user=authenticated_user(request), query=data["q"], limit=data["limit"], offset=data["offset"]
        )
        statuses = turn_statuses(hit.session.pk for hit in page.hits)
        return Response({"results": [_hit_data(hit, statuses) for hit in page.hits], "total": page.total})


def _hit_data(hit: SearchHit, statuses: dict[str, bool]) -> dict[str, Any]:
    snippet = hit.snippet
    return {
        "session": SessionOutputSerializer(hit.session, context={"turn_statuses": statuses}).data,
        "title_highlights": [list(r) for r in hit.title_highlights],
        "snippet": (
            None
            if snippet is None
            else {
                "text": snippet.text,
                "highlights": [list(r) for r in snippet.highlights],
                "sequence": snippet.sequence,
                "role": snippet.role,
            }
        ),
    }
