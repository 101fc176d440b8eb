from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from billing.models import SubsidyProgramme


class YuanField(forms.DecimalField):
    """An amount typed in yuan, cleaned to fen (minor units)."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=14, decimal_places=2, min_value=Decimal("0.01"), **kwargs)

    def clean(self, value):
        cleaned = super().clean(value)
        return None if cleaned is None else int(cleaned * 100)


class VoucherApplyForm(forms.Form):
    programme = forms.ModelChoiceField(
        label=_("Programme"),
        queryset=SubsidyProgramme.objects.filter(status=SubsidyProgramme.Status.ACTIVE),
    )
    purpose = forms.CharField(
        label=_("What the compute is for"), widget=forms.Textarea(attrs={"rows": 3})
    )
    expected_gpu_hours = forms.IntegerField(label=_("Expected GPU-hours"), min_value=1)
    requested_amount = YuanField(label=_("Amount requested (¥)"))


class ApproveForm(forms.Form):
    amount = YuanField(label=_("Amount approved (¥)"))


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=300)
