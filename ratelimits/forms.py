"""Forms of the admin's per-user usage page. Amounts are typed in dollars and stored
in microdollars."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from billing.models import Tier

from .models import TierLimit


def dollars_to_microdollars(value: Decimal) -> int:
    return int((value * 1_000_000).to_integral_value())


class UsageResetForm(forms.Form):
    reason = forms.CharField(max_length=255, required=False)


class TierSetForm(forms.Form):
    tier = forms.ChoiceField(choices=Tier.choices)
    reason = forms.CharField(max_length=255)


class OverrideSetForm(forms.Form):
    daily_dollars = forms.DecimalField(
        label="Daily limit ($)",
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=6,
        help_text="Empty keeps the tier's limit; 0 means unlimited.",
    )
    weekly_dollars = forms.DecimalField(
        label="Weekly limit ($)",
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=6,
        help_text="Empty keeps the tier's limit; 0 means unlimited. Both empty removes the override.",
    )
    reason = forms.CharField(max_length=255)

    def microdollars(self, field: str) -> int | None:
        value: Decimal | None = self.cleaned_data.get(field)
        return None if value is None else dollars_to_microdollars(value)


class TierLimitAdminForm(forms.ModelForm[TierLimit]):
    change_reason = forms.CharField(max_length=255, required=False, help_text="Recorded in the audit log.")

    class Meta:
        model = TierLimit
        fields = ("tier", "daily_limit_microdollars", "weekly_limit_microdollars")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["tier"].disabled = True
