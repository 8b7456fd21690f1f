"""`Authorization: Bearer <api key>` for DRF."""

from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiKey, User
from .selectors import api_key_get_active
from .services import api_key_touch
from .throttle import api_key_failure_record, api_key_failure_retry_after

API_KEY_THROTTLED_DETAIL = "Too many failed API key attempts from this address."


def bearer_token(header_value: str | bytes | None) -> str | None:
    if not header_value:
        return None
    if isinstance(header_value, bytes):
        header_value = header_value.decode("latin-1")
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """A bearer key decides the user; a wrong one is 401 and counts against the client address.

    An address past the failure limit gets 429 with `Retry-After` for every bearer
    request, before its key is looked at (see `throttle`).
    """

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        token = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        if token is None:
            return None
        client_ip = str(request.META.get("REMOTE_ADDR") or "")
        retry_after = api_key_failure_retry_after(client_ip=client_ip)
        if retry_after is not None:
            raise exceptions.Throttled(wait=retry_after, detail=API_KEY_THROTTLED_DETAIL)
        key = api_key_get_active(raw_key=token)
        if key is None:
            api_key_failure_record(client_ip=client_ip)
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        api_key_touch(key=key)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
