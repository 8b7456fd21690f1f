from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.db.models import Q

from .models import User

IDENTITY_TAKEN = (
    "That username or e-mail address cannot be used. If you already have an account, log in or reset your password."
)


class SignupForm(UserCreationForm[User]):
    """Signup that never says which of username and e-mail address is already registered.

    Decision: a taken username and a taken e-mail address (either compared without
    case) give one and the same form-wide error, and every other check (password
    rules, field formats) runs and reports exactly as for a free name, so the page
    differs only in that error. The e-mail address is what matters here: it ties a
    person to the service, and the password-reset form already answers alike for
    known and unknown addresses. A signup must refuse a taken name, so trying one
    field at a time can still tell them apart; the view counts such refusals per
    client address and answers 429 past a few (see `throttle`), which keeps that
    probing slow.
    """

    email = forms.EmailField(required=True)

    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined,misc]
        model = User
        fields = ("username", "email")

    identity_taken = False

    def clean_username(self) -> str:
        # Not the parent's check: its "already exists" message names the field.
        return str(self.cleaned_data.get("username") or "")

    def clean_email(self) -> str:
        return str(self.cleaned_data["email"]).strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        username, email = cleaned.get("username"), cleaned.get("email")
        taken = Q()
        if username:
            taken |= Q(username__iexact=username)
        if email:
            taken |= Q(email__iexact=email)
        if taken and User.objects.filter(taken).exists():
            self.identity_taken = True
            self.add_error(None, IDENTITY_TAKEN)
        return cleaned

    def _get_validation_exclusions(self) -> set[str]:
        # A taken name must not also fail the model's unique checks, whose messages name the field.
        exclude = set(super()._get_validation_exclusions())  # type: ignore[misc]
        if self.identity_taken:
            exclude |= {"username", "email"}
        return exclude


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, initial="API key")


class ChatDefaultsForm(forms.ModelForm[User]):
    """The chat composer's defaults: which model and mode a new chat starts with."""

    class Meta:
        model = User
        fields = ("chat_model", "chat_mode")
        labels = {"chat_model": "Model", "chat_mode": "Mode"}
