"""Forms of the authority's programme pages. They only parse what a person
types (yuan → fen, percent → basis points, lists); the business rules stay in
billing.subsidy.services, whose errors the views put back on these fields."""

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation, OrganisationRelationship
from billing.models import FundingTerms, SubsidyProgramme
from core import limits
from core.forms import YuanField
from market.models import GPUModel, Site
from market.models.capacity import Hub

_LIST_SEPARATORS = re.compile(r"[,，、;；\s]+")


class PercentField(forms.DecimalField):
    """A rate typed in percent with at most two decimals, cleaned to basis
    points (30 → 3000, 12.5 → 1250). The allowed range is the service's rule."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=5, decimal_places=2, **kwargs)

    def clean(self, value):
        cleaned = super().clean(value)
        return None if cleaned is None else int(cleaned * 100)


class GreenShareField(forms.DecimalField):
    """A share typed in percent with at most one decimal, cleaned to the
    model's fraction (80 → 0.800, 65.5 → 0.655)."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=4, decimal_places=1, **kwargs)

    def clean(self, value):
        cleaned = super().clean(value)
        return Decimal(0) if cleaned is None else (cleaned / 100).quantize(Decimal("0.001"))


class ListField(forms.CharField):
    """Names separated by commas (, ， 、), semicolons or spaces, cleaned to a list."""

    def clean(self, value):
        text = super().clean(value) or ""
        items = [item for item in _LIST_SEPARATORS.split(text) if item]
        too_long = [item for item in items if len(item) > 32]
        if too_long:
            raise ValidationError(
                _("A name is at most 32 characters: %(name)s") % {"name": too_long[0]}
            )
        return list(dict.fromkeys(items))


def _local_input(**attrs) -> forms.DateTimeInput:
    return forms.DateTimeInput(attrs={"type": "datetime-local", **attrs}, format="%Y-%m-%dT%H:%M")


class ProgrammeForm(forms.Form):
    """Every setting of a SubsidyProgramme an authority configures."""

    name = forms.CharField(label=_("Name"), max_length=200)
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    budget = YuanField(label=_("Total budget (¥)"))
    funding = forms.ChoiceField(
        label=_("Funding"),
        choices=SubsidyProgramme.Funding.choices,
        initial=SubsidyProgramme.Funding.RESERVED,
        help_text=_(
            "Reserved: issuing a voucher reserves its face value. Pool: vouchers draw "
            "the shared budget first come, first served."
        ),
    )
    rate = PercentField(label=_("Base subsidy rate (%)"))
    domestic_rate = PercentField(
        label=_("Rate for domestic accelerators (%)"),
        required=False,
        help_text=_("Leave empty to use the base rate."),
    )
    sme_rate = PercentField(
        label=_("Rate for start-ups / SMEs (%)"),
        required=False,
        help_text=_("Leave empty to use the base rate."),
    )
    cap_per_enterprise = YuanField(
        label=_("Cap per enterprise for the programme (¥)"),
        required=False,
        help_text=_("Leave empty for no cap."),
    )
    cap_per_enterprise_year = YuanField(
        label=_("Cap per enterprise per calendar year (¥)"),
        required=False,
        help_text=_("Leave empty for no cap."),
    )
    valid_from = forms.DateTimeField(label=_("Valid from"), widget=_local_input())
    valid_until = forms.DateTimeField(label=_("Valid until"), widget=_local_input())
    regions = ListField(
        label=_("Eligible provinces"),
        required=False,
        help_text=_("Separate with commas, e.g. 甘肃, 宁夏. Empty = any province."),
    )
    hubs = forms.MultipleChoiceField(
        label=_("Eligible hubs"),
        required=False,
        choices=Hub.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked = any hub."),
    )
    eligible_providers = forms.ModelMultipleChoiceField(
        label=_("Eligible providers"),
        required=False,
        queryset=Organisation.objects.filter(kind=Organisation.Kind.PROVIDER).order_by(
            "legal_name"
        ),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked = any provider."),
    )
    gpu_vendors = forms.MultipleChoiceField(
        label=_("Eligible GPU vendors"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked = any vendor."),
    )
    domestic_only = forms.BooleanField(label=_("Domestic accelerators only"), required=False)
    min_green_share = GreenShareField(
        label=_("Minimum green-power share of the site (%)"),
        required=False,
        help_text=_("Leave empty for no minimum."),
    )
    buyer_must_be_verified = forms.BooleanField(
        label=_("Verified organisations only"), required=False, initial=True
    )
    forbid_affiliated = forms.BooleanField(
        label=_("Buyer and provider must not be affiliated"), required=False, initial=True
    )
    max_contract_days = forms.IntegerField(
        label=_("Maximum contract term (days)"),
        required=False,
        min_value=1,
        max_value=limits.MAX_CONTRACT_DAYS,
        help_text=_("Leave empty for no limit."),
    )
    one_claim_per_contract = forms.BooleanField(label=_("One claim per contract"), required=False)
    settlement_mode = forms.ChoiceField(
        label=_("Settlement"),
        choices=SubsidyProgramme.SettlementMode.choices,
        initial=SubsidyProgramme.SettlementMode.DEDUCT,
    )
    beneficiary = forms.ChoiceField(
        label=_("Vouchers go to"),
        choices=SubsidyProgramme.Beneficiary.choices,
        initial=SubsidyProgramme.Beneficiary.BUYERS,
    )

    # service argument → form field, to put the service's errors on the right input
    SERVICE_FIELDS = {
        "budget_amount": "budget",
        "rate_bp": "rate",
        "domestic_rate_bp": "domestic_rate",
        "sme_rate_bp": "sme_rate",
        "cap_per_enterprise_amount": "cap_per_enterprise",
        "cap_per_enterprise_year_amount": "cap_per_enterprise_year",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        vendors = GPUModel.objects.order_by("vendor").values_list("vendor", flat=True).distinct()
        self.fields["gpu_vendors"].choices = [(v, v) for v in vendors]
        regions = Site.objects.order_by("region").values_list("region", flat=True).distinct()
        if known := ", ".join(regions[:40]):
            self.fields["regions"].help_text = _(
                "Separate with commas. Empty = any province. Provinces with sites: %(known)s"
            ) % {"known": known}

    def service_arguments(self) -> dict:
        """The cleaned form as keyword arguments of programme_create."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "description": data["description"],
            "budget_amount": data["budget"],
            "funding": data["funding"],
            "rate_bp": data["rate"],
            "domestic_rate_bp": data["domestic_rate"],
            "sme_rate_bp": data["sme_rate"],
            "cap_per_enterprise_amount": data["cap_per_enterprise"],
            "cap_per_enterprise_year_amount": data["cap_per_enterprise_year"],
            "valid_from": data["valid_from"],
            "valid_until": data["valid_until"],
            "regions": data["regions"],
            "hubs": data["hubs"],
            "eligible_providers": list(data["eligible_providers"]),
            "gpu_vendors": data["gpu_vendors"],
            "domestic_only": data["domestic_only"],
            "min_green_share": data["min_green_share"],
            "buyer_must_be_verified": data["buyer_must_be_verified"],
            "forbid_affiliated": data["forbid_affiliated"],
            "max_contract_days": data["max_contract_days"],
            "one_claim_per_contract": data["one_claim_per_contract"],
            "settlement_mode": data["settlement_mode"],
            "beneficiary": data["beneficiary"],
        }


class VoucherIssueForm(forms.Form):
    """Issue a voucher of a programme directly to one organisation."""

    holder = forms.ModelChoiceField(label=_("Holder"), queryset=Organisation.objects.none())
    face_amount = YuanField(label=_("Face value (¥)"))
    valid_from = forms.DateTimeField(
        label=_("Valid from"),
        required=False,
        widget=_local_input(),
        help_text=_("Empty = now (never before the programme starts)."),
    )
    valid_until = forms.DateTimeField(
        label=_("Valid until"),
        required=False,
        widget=_local_input(),
        help_text=_("Empty = the programme's end (never after it)."),
    )

    def __init__(self, *args, programme: SubsidyProgramme, **kwargs):
        super().__init__(*args, **kwargs)
        kind = (
            Organisation.Kind.PROVIDER
            if programme.beneficiary == SubsidyProgramme.Beneficiary.PROVIDERS
            else Organisation.Kind.BUYER
        )
        self.fields["holder"].queryset = Organisation.objects.filter(kind=kind).order_by(
            "legal_name"
        )


class ApproveForm(forms.Form):
    amount = YuanField(label=_("Amount approved (¥)"))


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=300)


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


class ClaimPayForm(forms.Form):
    paid_on = forms.DateField(label=_("Paid on"), widget=forms.DateInput(attrs={"type": "date"}))
    reference = forms.CharField(label=_("Payment reference"), max_length=100)


class BankAccountForm(forms.Form):
    """A provider's bank account for payouts (the checks are the service's)."""

    account_number = forms.CharField(label=_("Account number (收款账号)"), max_length=40)
    account_name = forms.CharField(label=_("Account holder (户名)"), max_length=200)
    bank_name = forms.CharField(label=_("Bank branch (开户行)"), max_length=200)
    bank_code = forms.CharField(label=_("CNAPS bank code (联行号)"), max_length=12)
    province = forms.CharField(label=_("Province"), max_length=32, required=False)
    city = forms.CharField(label=_("City"), max_length=32, required=False)


class RelationshipForm(forms.Form):
    """A buyer declares its parent company or a shareholder (the rules are the service's)."""

    kind = forms.ChoiceField(
        label=_("Relationship"),
        choices=[
            (OrganisationRelationship.Kind.PARENT, OrganisationRelationship.Kind.PARENT.label),
            (
                OrganisationRelationship.Kind.SHAREHOLDER,
                OrganisationRelationship.Kind.SHAREHOLDER.label,
            ),
        ],
    )
    related_credit_code = forms.CharField(
        label=_("Its unified social credit code"), max_length=18, min_length=18
    )
    related_name = forms.CharField(label=_("Its name"), max_length=200, required=False)
    share = PercentField(  # typed in percent, cleaned to basis points
        label=_("Share held (%)"),
        required=False,
        min_value=Decimal("0.01"),
        max_value=Decimal(limits.MAX_BASIS_POINTS) / 100,
        help_text=_("Shareholders: the share they hold in your company."),
    )


class SmeDeclareForm(forms.Form):
    evidence = forms.CharField(
        label=_("Evidence"),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Headcount, revenue, founding date, a registry extract …"),
    )


class TopUpForm(forms.Form):
    """A card top-up of the prepaid balance. `once` is a key made when the
    form is shown: the same form sent twice (a double click, a reload) is one
    top-up, never two charges."""

    amount = YuanField(label=_("Amount (¥)"))
    payment_method = forms.ChoiceField(label=_("Test card"), choices=())
    once = forms.CharField(widget=forms.HiddenInput, max_length=40)

    def __init__(self, *args, cards=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["payment_method"].choices = list(cards)


class FundingTermsForm(forms.Form):
    """How the buyer pays (after use, or held to its available funds), what
    happens when available funds reach zero, and the alerts before."""

    held = forms.TypedChoiceField(
        label=_("How you pay"),
        choices=[
            ("false", _("By card after use: no spending limit")),
            ("true", _("From available funds (balance and credit): stopped at zero")),
        ],
        coerce=lambda value: value == "true",
        widget=forms.RadioSelect,
    )
    at_zero = forms.ChoiceField(label=_("At zero"), choices=())
    grace_minutes = forms.IntegerField(
        label=_("Grace before running leases end (minutes)"),
        min_value=0,
        max_value=limits.MAX_FUNDING_GRACE_MINUTES,
    )
    alert_thresholds = forms.CharField(
        label=_("Alert me at (¥, separated by commas)"), required=False, max_length=200
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["at_zero"].choices = FundingTerms.AtZero.choices

    def clean_alert_thresholds(self) -> list[int]:
        text = self.cleaned_data.get("alert_thresholds") or ""
        amounts = []
        for item in (item for item in _LIST_SEPARATORS.split(text) if item):
            try:
                amounts.append(YuanField(max_amount=limits.MAX_AMOUNT).clean(item))
            except ValidationError as exc:
                raise ValidationError(
                    _("%(value)s is not an amount in yuan.") % {"value": item[:20]}
                ) from exc
        if len(amounts) > limits.MAX_ALERT_THRESHOLDS:
            raise ValidationError(
                _("At most %(max)s thresholds.") % {"max": limits.MAX_ALERT_THRESHOLDS}
            )
        return sorted(set(amounts), reverse=True)
