from decimal import Decimal

from django import forms

from core import limits
from core.money import minor_from_major


class YuanField(forms.DecimalField):
    """An amount typed in yuan (at most two decimals), cleaned to fen; at most
    `max_amount` fen (core.limits.MAX_AMOUNT unless the field says otherwise)."""

    def __init__(self, *, max_amount: int = limits.MAX_AMOUNT, **kwargs):
        super().__init__(
            max_digits=14,
            decimal_places=2,
            min_value=Decimal("0.01"),
            max_value=Decimal(max_amount) / 100,
            **kwargs,
        )

    def clean(self, value):
        cleaned = super().clean(value)
        return None if cleaned is None else minor_from_major(cleaned)
