"""Forms of chat's own pages."""

from __future__ import annotations

from decimal import Decimal

from django import forms


class ApprovalThresholdForm(forms.Form):
    """The account page's "ask before a tool costs more than" setting, typed in credit cents."""

    threshold_cents = forms.IntegerField(
        label="Ask first when one tool run costs more than (credit cents)",
        required=False,
        min_value=0,
        max_value=1_000_000,
        help_text="Empty: never ask because of the price. 0: ask before every priced tool.",
    )

    def threshold(self) -> int | None:
        value: int | Decimal | None = self.cleaned_data.get("threshold_cents")
        return None if value is None else int(value)
