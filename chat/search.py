"""Finding a user's chats by title and message text (`GET /api/chat/search?q=`).

What is searched: the user's own sessions, by their title and by the text of their
`user` and `assistant` messages of kind `message`. Tool calls, tool outputs, reasoning
and the platform's notices (stopped, failed) are never searched, nor another user's chats.

How a query matches: it is split into words (runs of letters, digits and `_`; at most
`MAX_TERMS`); a chat matches when its title, or one of its messages, contains every word,
on PostgreSQL each as the start of a word ("depl" finds "deployment"; "ploy" does not).

- On PostgreSQL this is full-text search with the `simple` configuration (no stemming,
  no stop words, so it behaves the same in every language): `to_tsvector('simple', …)`
  matched against a prefix `tsquery`, served by the GIN expression indexes of migration
  `0004_message_search_index`.
- On SQLite (the portable fallback) each word is a case-insensitive substring
  (`icontains`, a `LIKE`; ASCII case folding only), anywhere in a word, and highlights
  mark every occurrence.

Results are chats, most recently updated first, each with the newest matching message
as a plain-text snippet (whitespace collapsed, about `SNIPPET_CHARS` characters) and the
ranges to highlight, as `[start, end)` offsets in Unicode code points into the snippet
(and into the title). Nothing is marked up: the page builds the highlighted text as DOM
text nodes, so a message containing HTML stays text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from .models import ChatMessage, ChatSession

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

MAX_TERMS = 8
SNIPPET_CHARS = 160
# Characters of context kept before the first hit in a snippet.
SNIPPET_LEAD = 50
SEARCH_CONFIG = "simple"

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def search_terms(query: str) -> list[str]:
    """The distinct lower-cased words of ``query``, in order, at most MAX_TERMS."""
    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in terms:
            terms.append(word)
    return terms[:MAX_TERMS]


@dataclass(frozen=True)
class Snippet:
    text: str
    highlights: list[tuple[int, int]]
    sequence: int
    role: str


@dataclass(frozen=True)
class SearchHit:
    session: ChatSession
    title_highlights: list[tuple[int, int]]
    snippet: Snippet | None


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    total: int


def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _tsquery(terms: list[str]) -> SearchQuery:
    # Terms are \w+ runs, so they hold no tsquery syntax; quoting keeps digits and
    # non-ASCII letters whole, `:*` makes each a prefix.
    raw = " & ".join(f"'{term}':*" for term in terms)
    return SearchQuery(raw, search_type="raw", config=SEARCH_CONFIG)


def highlight_ranges(text: str, terms: list[str], *, word_starts: bool) -> list[tuple[int, int]]:
    """Where the terms occur in ``text`` (only at word starts when ``word_starts``), as sorted,
    non-overlapping ``[start, end)`` code-point ranges; the longest term wins at one spot."""
    if not terms or not text:
        return []
    alternatives = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    lead = r"(?<![^\W_])" if word_starts else ""
    pattern = re.compile(rf"{lead}(?:{alternatives})", re.IGNORECASE)
    return [(match.start(), match.end()) for match in pattern.finditer(text)]


def _searchable_messages() -> QuerySet[ChatMessage]:
    return ChatMessage.objects.filter(
        role__in=[ChatMessage.Role.USER, ChatMessage.Role.ASSISTANT], kind=ChatMessage.Kind.MESSAGE
    )


def _matching_messages(terms: list[str]) -> QuerySet[ChatMessage]:
    return _matching(_searchable_messages(), "content", terms)


def _matching_titles(terms: list[str]) -> QuerySet[ChatSession]:
    return _matching(ChatSession.objects.all(), "title", terms)


_Row = TypeVar("_Row", ChatMessage, ChatSession)


def _matching(rows: QuerySet[_Row], field: str, terms: list[str]) -> QuerySet[_Row]:
    """`rows` whose `field` holds every term: full-text on PostgreSQL, substrings elsewhere."""
    if _is_postgresql():
        return rows.alias(search_vector=SearchVector(field, config=SEARCH_CONFIG)).filter(search_vector=_tsquery(terms))
    condition = Q()
    for term in terms:
        condition &= Q(**{f"{field}__icontains": term})
    return rows.filter(condition)


def _snippet(text: str, terms: list[str], word_starts: bool) -> tuple[str, list[tuple[int, int]]]:
    """About SNIPPET_CHARS of ``text`` (whitespace collapsed) from a little before its first hit,
    cut at spaces, with `…` where it was cut; and the hits' ranges in it."""
    flat = _SPACE.sub(" ", text).strip()
    hits = highlight_ranges(flat, terms, word_starts=word_starts)
    first = hits[0][0] if hits else 0
    start = 0 if first <= SNIPPET_LEAD else first - SNIPPET_LEAD
    if start:
        space = flat.find(" ", start, first)
        start = space + 1 if space != -1 else start
    end = min(len(flat), start + SNIPPET_CHARS)
    if end < len(flat):
        space = flat.rfind(" ", max(first + 1, start), end)
        end = space if space > first else end
    piece = flat[start:end].strip()
    text_out = ("…" if start else "") + piece + ("…" if end < len(flat) else "")
    return text_out, highlight_ranges(text_out, terms, word_starts=word_starts)


def chat_search(*, user: User, query: str, limit: int, offset: int) -> SearchPage:
    """The user's chats matching ``query`` (see the module docstring), newest first, one page.

    Three queries whatever the page size: the count, the page (with each chat's newest
    matching message's sequence), and those messages.
    """
    terms = search_terms(query)
    if not terms:
        return SearchPage(hits=[], total=0)
    own_messages = _matching_messages(terms).filter(session__user=user)
    sessions = ChatSession.objects.filter(user=user).filter(
        Q(pk__in=_matching_titles(terms).filter(user=user).values("pk"))
        | Exists(own_messages.filter(session=OuterRef("pk")))
    )
    total = sessions.count()
    newest_hit = own_messages.filter(session=OuterRef("pk")).order_by("-sequence").values("sequence")[:1]
    ordered = sessions.annotate(hit_sequence=Subquery(newest_hit)).order_by("-updated_at", "-pk")
    page = list(ordered[offset : offset + limit])
    wanted = [(s.pk, s.hit_sequence) for s in page if s.hit_sequence is not None]
    by_session: dict[Any, ChatMessage] = {}
    if wanted:
        condition = Q()
        for session_id, sequence in wanted:
            condition |= Q(session_id=session_id, sequence=sequence)
        by_session = {row.session_id: row for row in ChatMessage.objects.filter(condition)}
    word_starts = _is_postgresql()
    return SearchPage(hits=[_hit(s, by_session.get(s.pk), terms, word_starts) for s in page], total=total)


def _hit(session: ChatSession, message: ChatMessage | None, terms: list[str], word_starts: bool) -> SearchHit:
    snippet = None
    if message is not None:
        text, ranges = _snippet(message.content or "", terms, word_starts)
        snippet = Snippet(text=text, highlights=ranges, sequence=message.sequence, role=message.role)
    return SearchHit(
        session=session,
        title_highlights=highlight_ranges(session.title or "", terms, word_starts=word_starts),
        snippet=snippet,
    )
