"""Serving one URL with one APIView per operation.

Each operation is its own ``APIView`` with one handler; ``method_router`` puts the
operations that share a URL behind that URL and hands each request, untouched,
to the view of its HTTP method. The router also carries the operations'
handlers, so the ``Allow`` header, ``OPTIONS`` and the OpenAPI schema list every
operation of the URL; a method no operation serves answers DRF's 405.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.views import APIView


def method_router(name: str, **operations: type[APIView]) -> Callable[..., HttpResponseBase]:
    """The view of one URL: ``method_router("SessionsApi", get=SessionListApi, post=SessionCreateApi)``."""
    views = {method: operation.as_view() for method, operation in operations.items()}

    def dispatch(self: APIView, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        method = (request.method or "").lower()
        view = views.get(method) or (views.get("get") if method == "head" else None)
        if view is None:  # OPTIONS, or a method no operation serves (405)
            return APIView.dispatch(self, request, *args, **kwargs)
        return view(request, *args, **kwargs)

    # No docstring of its own: the schema describes each operation by its handler's.
    handlers = {method: getattr(operation, method) for method, operation in operations.items()}
    router: type[APIView] = type(name, (APIView,), {"dispatch": dispatch, "__doc__": None, **handlers})
    return router.as_view()
