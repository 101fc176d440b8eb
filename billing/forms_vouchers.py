from django import forms
from django.utils.translation import gettext_lazy as _

from billing.models import SubsidyProgramme
from core import limits
from core.forms import YuanField


class VoucherApplyForm(forms.Form):
    programme = forms.ModelChoiceField(
        label=_("Programme"),
        queryset=SubsidyProgramme.objects.filter(status=SubsidyProgramme.Status.ACTIVE),
    )
    purpose = forms.CharField(
        label=_("What the compute is for"), widget=forms.Textarea(attrs={"rows": 3})
    )
    expected_gpu_hours = forms.IntegerField(
        label=_("Expected GPU-hours"), min_value=1, max_value=limits.MAX_GPU_HOURS
    )
    requested_amount = YuanField(label=_("Amount requested (¥)"))


class ApproveForm(forms.Form):
    amount = YuanField(label=_("Amount approved (¥)"))


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=300)
