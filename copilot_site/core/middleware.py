"""Outage answers for every request: a JSON 503 on the API, the plain 503 page elsewhere.

`OutageMiddleware` (first in ``MIDDLEWARE``) answers an outage raised by a view, and
`server_error` (the ``handler500``) one raised by any middleware, such as the session
lookup, which Django turns into an error response before an outer middleware sees it.
DRF views answer through `copilot_site.core.exceptions.api_exception_handler`.
"""

from __future__ import annotations

import logging
import sys

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults

from .outages import outage_code, outage_response

logger = logging.getLogger(__name__)


class OutageMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        response = outage_response(request, exception)
        if response is not None:
            logger.warning("%s %s: %s (%s)", request.method, request.path, outage_code(exception), exception)
        return response


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an outage answers 503, anything else Django's plain 500 page."""
    response = outage_response(request, sys.exc_info()[1])
    if response is not None:
        return response
    return defaults.server_error(request)
