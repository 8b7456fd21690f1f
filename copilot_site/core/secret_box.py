"""Symmetric encryption of small secrets stored in the database (MCP server credentials).

The key is derived from ``SECRET_KEY`` with HKDF-SHA256 and a purpose label, so it
is never stored and differs from every other use of the secret key; the cipher is
Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp). Rotating ``SECRET_KEY``
makes stored secrets unreadable: `decrypt_text` then raises `SecretUnreadable`
and the operator enters the credential again. Imports no app.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret that this ``SECRET_KEY`` cannot decrypt (rotated key or tampering)."""


@lru_cache(maxsize=8)
def _fernet(secret_key: str, purpose: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"copilot:{purpose}".encode()).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_text(plain: str, *, purpose: str) -> str:
    return _fernet(str(settings.SECRET_KEY), purpose).encrypt(plain.encode()).decode()


def decrypt_text(token: str, *, purpose: str) -> str:
    try:
        return _fernet(str(settings.SECRET_KEY), purpose).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable("the stored secret cannot be decrypted with this SECRET_KEY") from exc
