from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .selectors import session_list


@login_required
def chat_home(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/home.html", {"sessions": session_list(user=request.user)[:50]})
