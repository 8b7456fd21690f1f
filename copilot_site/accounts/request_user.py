"""The signed-in user of a request, as the project's ``User`` type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.http import HttpRequest
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

if TYPE_CHECKING:  # the user model is configured by name; only the type is needed here
    from .models import User


def authenticated_user(request: HttpRequest | Request) -> User:
    """``request.user``, for views behind authentication (an anonymous user raises ``NotAuthenticated``)."""
    user = request.user
    if not isinstance(user, get_user_model()):
        raise NotAuthenticated
    return user
