"""What a reader gets out of a stored file: its text (decoded with the detected charset), a
PDF's text page by page, an image's size. Every failure is ``UnreadableFile`` with a plain
reason."""

from __future__ import annotations

import io
import logging

from PIL import Image, UnidentifiedImageError

from .sniff import PDF_TYPE, detect_charset, is_image

logger = logging.getLogger(__name__)


class UnreadableFile(Exception):
    """The file's content cannot be read as text; the message says why, for the user."""


def pdf_text(data: bytes) -> str:
    """Every page's text, each after a ``--- Page N of M ---`` marker."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("The PDF is password-protected.")
        pages = reader.pages
        total = len(pages)
        out = []
        for number, page in enumerate(pages, start=1):
            try:
                text = page.extract_text() or ""
            except Exception:  # noqa: BLE001 - one broken page does not spoil the others
                logger.warning("PDF page %d could not be read", number, exc_info=True)
                text = "[This page could not be read.]"
            out.append(f"--- Page {number} of {total} ---\n{text.strip() or '[No text on this page.]'}")
    except UnreadableFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise UnreadableFile("The PDF could not be read; it may be damaged.") from exc
    return "\n\n".join(out)


def decoded_text(data: bytes) -> str:
    charset = detect_charset(data, complete=True)
    if charset is None:
        raise UnreadableFile("The file is binary, not text, and cannot be read as text.")
    return data.decode(charset)


def image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        return None


def readable_text(data: bytes, mime_type: str) -> str:
    """The text of a text or PDF file; UnreadableFile for anything else."""
    if mime_type == PDF_TYPE:
        return pdf_text(data)
    if is_image(mime_type):
        raise UnreadableFile("The file is an image; it has no text to read.")
    return decoded_text(data)
