"""What a user reads when a turn fails: each class of failure as a code and a plain sentence.

The code travels in the `data-error` chunk, the sentence in the `error` chunk and the
transcript's error row. The exception's own text (an SDK's or httpx's message, a provider's
error body) goes to the logs only: it is not written for users and may carry internals.
"""

from __future__ import annotations

import asyncio
import sys

import httpcore
import httpx

from chat.errors import ChatError

from .events import ERROR_LLM

ERROR_PROVIDER_DISCONNECTED = "provider_disconnected"
ERROR_PROVIDER_TIMEOUT = "provider_timeout"
ERROR_PROVIDER_RATE_LIMITED = "provider_rate_limited"
ERROR_PROVIDER_AUTH = "provider_auth"
ERROR_PROVIDER_UNAVAILABLE = "provider_unavailable"
ERROR_PROVIDER_REJECTED = "provider_rejected"

FAILURE_TEXTS = {
    ERROR_PROVIDER_DISCONNECTED: "The model provider closed the connection before finishing. Try again.",
    ERROR_PROVIDER_TIMEOUT: "The model provider took too long to answer. Try again.",
    ERROR_PROVIDER_RATE_LIMITED: "The model provider is receiving too many requests. Wait a minute and try again.",
    ERROR_PROVIDER_AUTH: "The model provider refused this service's credentials. Please tell the administrator.",
    ERROR_PROVIDER_UNAVAILABLE: "The model provider is having problems right now. Try again in a few minutes.",
    ERROR_PROVIDER_REJECTED: "The model provider could not process this request. Try rephrasing or shortening it.",
    ERROR_LLM: "Something went wrong while the answer was being written. Try again.",
}

# The provider SDKs' own error classes, from the SDKs this process has imported: an
# exception of an SDK exists only once that SDK is loaded, so the mapping never
# imports one (a worker that runs only OpenAI-compatible turns never loads anthropic).
_PROVIDER_SDKS = ("openai", "anthropic")


def _sdk_errors(name: str) -> tuple[type[BaseException], ...]:
    loaded = (sys.modules.get(sdk) for sdk in _PROVIDER_SDKS)
    return tuple(getattr(module, name) for module in loaded if module is not None)


_TIMEOUTS = (httpx.TimeoutException, httpcore.TimeoutException, asyncio.TimeoutError, TimeoutError)
_DISCONNECTS = (httpx.TransportError, httpcore.NetworkError, httpcore.RemoteProtocolError, ConnectionError)


def failure_code(exc: BaseException) -> str:
    """The machine code of a failure (`data-error`'s `code`)."""
    # timeouts before disconnects: the SDKs' timeouts are connection errors
    if isinstance(exc, (*_sdk_errors("APITimeoutError"), *_TIMEOUTS)):
        return ERROR_PROVIDER_TIMEOUT
    if isinstance(exc, (*_sdk_errors("APIConnectionError"), *_DISCONNECTS)):
        return ERROR_PROVIDER_DISCONNECTED
    if isinstance(exc, _sdk_errors("APIStatusError")):
        status = int(getattr(exc, "status_code", 0))
        if status == 429:
            return ERROR_PROVIDER_RATE_LIMITED
        if status in (401, 403):
            return ERROR_PROVIDER_AUTH
        if status == 408:
            return ERROR_PROVIDER_TIMEOUT
        if status >= 500:  # Anthropic's 529 "overloaded" too
            return ERROR_PROVIDER_UNAVAILABLE
        return ERROR_PROVIDER_REJECTED
    return ERROR_LLM


def failure_text(exc: BaseException) -> tuple[str, str]:
    """(code, user-facing text) of a failure. A `ChatError`'s message is written for users
    and is kept; every other exception gets its class's sentence."""
    if isinstance(exc, ChatError):
        return ERROR_LLM, str(exc) or FAILURE_TEXTS[ERROR_LLM]
    code = failure_code(exc)
    return code, FAILURE_TEXTS[code]
