from decimal import Decimal

from django import forms

from core.money import minor_from_major


class YuanField(forms.DecimalField):
    """An amount typed in yuan (at most two decimals), cleaned to fen."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=14, decimal_places=2, min_value=Decimal("0.01"), **kwargs)

    def clean(self, value):
        cleaned = super().clean(value)
        return None if cleaned is None else minor_from_major(cleaned)
