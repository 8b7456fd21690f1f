"""What an uploaded file is, from its bytes (the client's Content-Type is never read).

Binary formats by their magic bytes: PDF, PNG, JPEG, GIF, WebP. Anything else must decode
as text (a BOM, then UTF-8, then the charset ``charset-normalizer`` detects; NUL bytes
or no plausible charset: not text). A text file's subtype comes from its name's
extension, since the bytes of Markdown, CSV or Python are all just text: ``.md`` →
``text/markdown``, ``.csv`` → ``text/csv``, ``.json`` → ``application/json`` (only when it
parses), known source extensions → their ``text/x-…`` type, else ``text/plain``.
An unrecognised binary is ``application/octet-stream``, which no upload accepts.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import PurePath

import charset_normalizer

OCTET_STREAM = "application/octet-stream"
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
PDF_TYPE = "application/pdf"

# How much of a file the text check decodes (a cut multi-byte character at the end is allowed).
TEXT_SNIFF_BYTES = 256 * 1024

_SOURCE_TYPES = {
    ".py": "text/x-python",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".ts": "text/x-typescript",
    ".tsx": "text/x-typescript",
    ".jsx": "text/javascript",
    ".java": "text/x-java",
    ".c": "text/x-c",
    ".h": "text/x-c",
    ".cc": "text/x-c++",
    ".cpp": "text/x-c++",
    ".hpp": "text/x-c++",
    ".cs": "text/x-csharp",
    ".go": "text/x-go",
    ".rs": "text/x-rust",
    ".rb": "text/x-ruby",
    ".php": "text/x-php",
    ".swift": "text/x-swift",
    ".kt": "text/x-kotlin",
    ".scala": "text/x-scala",
    ".sh": "text/x-shellscript",
    ".bash": "text/x-shellscript",
    ".sql": "text/x-sql",
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".xml": "text/xml",
    ".yaml": "text/yaml",
    ".yml": "text/yaml",
    ".toml": "text/x-toml",
    ".ini": "text/plain",
    ".cfg": "text/plain",
    ".log": "text/plain",
    ".txt": "text/plain",
    ".r": "text/x-r",
    ".lua": "text/x-lua",
    ".pl": "text/x-perl",
    ".tex": "text/x-tex",
}


@dataclass(frozen=True)
class Sniffed:
    mime_type: str
    charset: str | None = None  # text only: the encoding it decodes with

    @property
    def is_text(self) -> bool:
        return self.charset is not None


def _magic(head: bytes) -> str | None:
    if head.startswith(b"%PDF-"):
        return PDF_TYPE
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


_WESTERN = ("cp1252", "latin_1", "iso8859_15")


def _decodes(sample: bytes, encoding: str, *, complete: bool) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        decoder.decode(sample, final=complete)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def detect_charset(sample: bytes, *, complete: bool = True) -> str | None:
    """The encoding ``sample`` decodes with as text, or None when it is not text.

    ``complete``: the sample is the whole file (else a character cut at its end is fine).
    """
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding if _decodes(sample, encoding, complete=complete) else None
    if b"\x00" in sample:
        return None
    if _decodes(sample, "utf-8", complete=complete):
        return "utf-8"
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return None
    # Short texts fit several legacy code pages equally well; among the near-best ones,
    # windows-1252 wins (the web's fallback for unlabelled legacy text).
    best_chaos = min(match.chaos for match in matches)
    near = [str(match.encoding) for match in matches if match.chaos <= best_chaos + 0.1]
    encoding = next((name for name in _WESTERN if name in near), near[0])
    return encoding if _decodes(sample, encoding, complete=complete) else None


def _text_subtype(name: str, data: bytes, charset: str, *, complete: bool) -> str:
    suffix = PurePath(name).suffix.lower()
    if suffix in (".md", ".markdown"):
        return "text/markdown"
    if suffix == ".csv":
        return "text/csv"
    if suffix == ".tsv":
        return "text/tab-separated-values"
    if suffix == ".json":
        if not complete:  # too large to parse here: JSON when it starts like JSON
            return "application/json" if data.decode(charset, "ignore").lstrip()[:1] in ("{", "[") else "text/plain"
        try:
            json.loads(data.decode(charset))
        except ValueError:
            return "text/plain"
        return "application/json"
    return _SOURCE_TYPES.get(suffix, "text/plain")


def sniff(*, name: str, head: bytes, complete: bool) -> Sniffed:
    """The type of a file from its first bytes (``head``: up to TEXT_SNIFF_BYTES, or all of it
    when ``complete``) and, for text, its name's extension."""
    magic = _magic(head)
    if magic is not None:
        return Sniffed(magic)
    if not head:
        return Sniffed("text/plain", "utf-8")  # an empty file is empty text
    charset = detect_charset(head, complete=complete)
    if charset is None:
        return Sniffed(OCTET_STREAM)
    return Sniffed(_text_subtype(name, head, charset, complete=complete), charset)


def is_image(mime_type: str) -> bool:
    return mime_type in IMAGE_TYPES
