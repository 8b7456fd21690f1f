from __future__ import annotations

import math

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from copilot_site.accounts.model_choice import advanced_cost_note

from .forms import ApiKeyCreateForm, ChatDefaultsForm, SignupForm
from .models import User
from .selectors import api_key_list
from .services import ApiKeyLimitReached, api_key_create, api_key_revoke, user_chat_defaults_set
from .throttle import signup_refusal_record, signup_refusal_retry_after


def signup(request: HttpRequest) -> HttpResponse:
    """The signup page; see `SignupForm` for what it tells about taken names.

    Refusals for a taken username or e-mail address are counted per client address;
    past the limit the page answers 429 with `Retry-After` without looking at the form.
    """
    if request.user.is_authenticated:
        return redirect("chat-home")
    client_ip = str(request.META.get("REMOTE_ADDR") or "")
    if request.method == "POST":
        retry_after = signup_refusal_retry_after(client_ip=client_ip)
        if retry_after is not None:
            response = render(request, "accounts/signup.html", {"form": SignupForm(), "throttled": True}, status=429)
            response["Retry-After"] = str(retry_after)
            return response
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            user = form.save()
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat-home")
        if form.identity_taken:
            signup_refusal_record(client_ip=client_ip)
    return render(request, "accounts/signup.html", {"form": form})


def login_lockout(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: object = None
) -> HttpResponse:
    """django-axes' answer to a locked-out sign-in (its `AXES_LOCKOUT_CALLABLE`): 429, a plain page.

    `Retry-After` is the whole cool-off: a lockout ends that long after the last
    attempt, and every attempt made while locked out (right password or not)
    restarts it.
    """
    seconds = settings.COPILOT_LOGIN_COOLOFF_SECONDS
    response = render(request, "accounts/lockout.html", {"cooloff_minutes": math.ceil(seconds / 60)}, status=429)
    response["Retry-After"] = str(seconds)
    return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's reset confirmation; a new password also lifts a sign-in lockout of the username.

    Only the username's failures are cleared: the link proves control of the account's
    e-mail, not of the address the failures came from.
    """

    template_name = "accounts/password_reset_confirm.html"

    def form_valid(self, form: SetPasswordForm[User]) -> HttpResponse:
        response = super().form_valid(form)
        axes_reset(username=form.user.get_username())
        return response


def _account_context(user: User, **extra: object) -> dict[str, object]:
    return {
        "api_keys": api_key_list(user=user),
        "key_form": ApiKeyCreateForm(),
        "chat_defaults_form": ChatDefaultsForm(instance=user),
        "advanced_cost_note": advanced_cost_note(),
        **extra,
    }


@login_required
def account(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    return render(request, "accounts/account.html", _account_context(request.user))


@login_required
@require_POST
def api_key_create_view(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return render(request, "accounts/account.html", _account_context(request.user, key_form=form), status=400)
    try:
        key, raw = api_key_create(user=request.user, name=form.cleaned_data["name"] or "API key")
    except ApiKeyLimitReached as exc:
        response = render(
            request, "accounts/account.html", _account_context(request.user, key_error=exc.detail), status=429
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    # Rendered, not redirected: the raw key must never be stored, not even in the session.
    return render(request, "accounts/account.html", _account_context(request.user, new_key=raw, new_key_name=key.name))


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    assert isinstance(request.user, User)
    if api_key_revoke(user=request.user, key_id=key_id):
        messages.success(request, "API key revoked.")
    else:
        messages.error(request, "That key does not exist or is already revoked.")
    return redirect("account")


@login_required
@require_POST
def chat_defaults_view(request: HttpRequest) -> HttpResponse:
    """Save the chat composer's defaults (a chat's own choice, once made, wins)."""
    assert isinstance(request.user, User)
    form = ChatDefaultsForm(request.POST, instance=request.user)
    if not form.is_valid():
        return render(
            request, "accounts/account.html", _account_context(request.user, chat_defaults_form=form), status=400
        )
    user_chat_defaults_set(
        user=request.user, model=form.cleaned_data["chat_model"], mode=form.cleaned_data["chat_mode"]
    )
    messages.success(request, "Chat defaults saved.")
    return redirect("account")
