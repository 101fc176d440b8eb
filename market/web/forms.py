"""Forms of the market pages. Prices are typed in yuan and handed to the
services in fen (minor units): two decimals at most, so no rounding."""

import datetime as dt
from decimal import Decimal

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core import limits
from core.forms import YuanField
from market.models import GPUModel, Node, Order, Site
from market.models.capacity import Hub, LatencyClass
from market.selectors import OFFER_SORTS


class SiteForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120)
    region = forms.CharField(label=_("Province"), max_length=32)
    hub = forms.ChoiceField(label=_("National hub"), choices=Hub.choices, initial=Hub.NONE)
    green_share = forms.DecimalField(
        label=_("Green-power share (0-1)"), min_value=0, max_value=1, decimal_places=3
    )
    pue = forms.DecimalField(
        label=_("PUE"),
        min_value=1,
        max_value=limits.MAX_PUE,
        max_digits=4,
        decimal_places=2,
        initial="1.20",
    )
    carbon_intensity_g_per_kwh = forms.IntegerField(
        label=_("Grid carbon intensity (gCO2e/kWh)"),
        min_value=0,
        max_value=limits.MAX_CARBON_INTENSITY,
    )
    latency_class = forms.ChoiceField(
        label=_("Latency class"), choices=LatencyClass.choices, initial=LatencyClass.NATIONAL
    )


class NodeForm(forms.Form):
    site = forms.ModelChoiceField(label=_("Site"), queryset=Site.objects.none())
    name = forms.CharField(label=_("Name"), max_length=120)
    gpu_model = forms.ModelChoiceField(label=_("GPU model"), queryset=GPUModel.objects.all())
    gpu_count = forms.IntegerField(
        label=_("GPUs"), min_value=1, max_value=limits.MAX_NODE_GPUS, initial=8
    )
    interconnect = forms.CharField(label=_("Interconnect"), max_length=60, required=False)

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites


class OfferForm(forms.Form):
    site = forms.ModelChoiceField(label=_("Site"), queryset=Site.objects.none())
    node = forms.ModelChoiceField(
        label=_("Node (empty: the site's pool of this model)"),
        queryset=Node.objects.none(),
        required=False,
    )
    gpu_model = forms.ModelChoiceField(
        label=_("GPU model"), queryset=GPUModel.objects.all(), required=False
    )
    gpus_total = forms.IntegerField(
        label=_("GPUs offered"), min_value=1, max_value=limits.MAX_OFFER_GPUS
    )
    price = YuanField(label=_("Price per GPU-hour (¥)"), max_amount=limits.MAX_PRICE_AMOUNT)
    available_from = forms.DateTimeField(
        label=_("Available from"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    available_until = forms.DateTimeField(
        label=_("Available until"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    min_hours = forms.IntegerField(
        label=_("Minimum lease hours"), min_value=1, max_value=limits.MAX_LEASE_HOURS, initial=1
    )
    max_hours = forms.IntegerField(
        label=_("Maximum lease hours"), min_value=1, max_value=limits.MAX_LEASE_HOURS, initial=720
    )
    interruptible = forms.BooleanField(label=_("Interruptible"), required=False)

    def __init__(self, *args, sites, nodes, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites
        self.fields["node"].queryset = nodes
        now = timezone.localtime().replace(second=0, microsecond=0)
        self.fields["available_from"].initial = now
        self.fields["available_until"].initial = now + dt.timedelta(days=30)


class RepriceForm(forms.Form):
    price = YuanField(label=_("New price per GPU-hour (¥)"), max_amount=limits.MAX_PRICE_AMOUNT)


class OfferSearchForm(forms.Form):
    gpu_model = forms.ModelChoiceField(
        label=_("GPU model"), queryset=GPUModel.objects.all(), required=False, to_field_name="slug"
    )
    vendor = forms.CharField(label=_("Vendor"), required=False)
    domestic = forms.NullBooleanField(
        label=_("Domestic"),
        required=False,
        widget=forms.Select(choices=[("", _("any")), ("true", _("yes")), ("false", _("no"))]),
    )
    min_memory_gb = forms.IntegerField(
        label=_("Min memory (GB)"), required=False, min_value=0, max_value=limits.MAX_MEMORY_GB
    )
    min_tflops = forms.DecimalField(
        label=_("Min TFLOPS"), required=False, min_value=0, max_digits=8, decimal_places=2
    )
    region = forms.CharField(label=_("Province"), required=False)
    hub = forms.ChoiceField(label=_("Hub"), choices=[("", _("any")), *Hub.choices], required=False)
    min_green_share = forms.DecimalField(
        label=_("Min green share"), required=False, min_value=0, max_value=1, decimal_places=3
    )
    max_price = YuanField(
        label=_("Max ¥ per GPU-hour"), required=False, max_amount=limits.MAX_PRICE_AMOUNT
    )
    min_gpus = forms.IntegerField(
        label=_("GPUs available ≥"), required=False, min_value=1, max_value=limits.MAX_OFFER_GPUS
    )
    sort = forms.ChoiceField(
        label=_("Sort"),
        required=False,
        choices=[
            ("price", _("price")),
            ("price_per_pflops", _("price per PFLOPS-hour")),
            ("green", _("green share")),
            ("reliability", _("reliability")),
        ],
    )

    def search_kwargs(self) -> dict:
        data = {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
        if "gpu_model" in data:
            data["gpu_model"] = data["gpu_model"].slug
        if data.get("sort") not in OFFER_SORTS:
            data.pop("sort", None)
        return data


class OrderForm(forms.Form):
    accepted_models = forms.ModelMultipleChoiceField(
        label=_("Accepted GPU models (none: any model meeting the floors)"),
        queryset=GPUModel.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    min_tflops = forms.DecimalField(
        label=_("Minimum dense TFLOPS per GPU"),
        required=False,
        min_value=0,
        max_digits=8,
        decimal_places=2,
    )
    min_memory_gb = forms.IntegerField(
        label=_("Minimum memory per GPU (GB)"),
        required=False,
        min_value=0,
        max_value=limits.MAX_MEMORY_GB,
    )
    gpu_count = forms.IntegerField(
        label=_("GPUs"), min_value=1, max_value=limits.MAX_ORDER_GPUS, initial=8
    )
    hours = forms.IntegerField(
        label=_("Hours"), min_value=1, max_value=limits.MAX_ORDER_HOURS, initial=24
    )
    max_price = YuanField(
        label=_("Maximum price per GPU-hour (¥)"), max_amount=limits.MAX_PRICE_AMOUNT
    )
    regions = forms.CharField(label=_("Provinces (comma-separated, empty: any)"), required=False)
    hubs = forms.MultipleChoiceField(
        label=_("National hubs (none: any)"),
        choices=Hub.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    min_green_share = forms.DecimalField(
        label=_("Minimum green-power share"),
        min_value=0,
        max_value=1,
        decimal_places=3,
        initial=0,
        required=False,
    )
    domestic_only = forms.BooleanField(label=_("Domestic accelerators only"), required=False)
    gang = forms.BooleanField(label=_("Gang: all GPUs at one site"), required=False)
    start_by = forms.DateTimeField(
        label=_("Start by"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    start_at = forms.DateTimeField(
        label=_("Forward block: start at (on the hour; empty: as soon as matched)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "3600"}),
    )
    failover_allowed = forms.BooleanField(
        label=_("Failover to another provider allowed"), required=False, initial=True
    )
    verified_only = forms.BooleanField(
        label=_("Verified capacity only (nodes that passed their self-test)"), required=False
    )
    interruptible = forms.BooleanField(
        label=_("Interruptible capacity accepted (cheaper; pre-empted with notice)"),
        required=False,
    )
    max_refills = forms.IntegerField(
        label=_("Refills after pre-emption or node failure (empty: no limit)"),
        required=False,
        min_value=0,
        max_value=limits.MAX_ORDER_REFILLS,
    )
    time_in_force = forms.ChoiceField(
        label=_("Time in force"),
        choices=Order.TimeInForce.choices,
        initial=Order.TimeInForce.GOOD_TILL,
        required=False,
        help_text=_(
            "Good till: the order stands on the book until filled, cancelled or its good-till "
            "time. Immediate or cancel: matched once now, the unfilled part released."
        ),
    )
    good_till = forms.DateTimeField(
        label=_("Good till (empty: the start-by time)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["start_by"].initial = timezone.localtime().replace(
            second=0, microsecond=0
        ) + dt.timedelta(hours=6)

    def order_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        data["max_price_amount"] = data.pop("max_price")
        data["regions"] = [r.strip() for r in (data["regions"] or "").split(",") if r.strip()]
        data["min_green_share"] = data["min_green_share"] or Decimal(0)
        data["accepted_models"] = list(data["accepted_models"])
        if "time_in_force" in self.fields:
            data["time_in_force"] = data["time_in_force"] or Order.TimeInForce.GOOD_TILL
        return data


class QuoteForm(OrderForm):
    """The order form without what only a placed order needs; the maximum price
    is optional (left out: every ask is shown)."""

    max_price = YuanField(
        label=_("Maximum price per GPU-hour (¥, optional)"),
        max_amount=limits.MAX_PRICE_AMOUNT,
        required=False,
    )
    failover_allowed = None
    max_refills = None
    time_in_force = None
    good_till = None


class BookForm(forms.Form):
    gpu_model = forms.ModelChoiceField(
        label=_("GPU model"), queryset=GPUModel.objects.all(), required=False, to_field_name="slug"
    )
    hub = forms.ChoiceField(label=_("Hub"), choices=[("", _("any")), *Hub.choices], required=False)

    def book_kwargs(self) -> dict:
        data = {k: v for k, v in self.cleaned_data.items() if v}
        if "gpu_model" in data:
            data["gpu_model"] = data["gpu_model"].slug
        return data


class DrainForm(forms.Form):
    notice_minutes = forms.IntegerField(min_value=0, max_value=limits.MAX_DRAIN_NOTICE_MINUTES)
    reason = forms.CharField(max_length=150, required=False)


class ResellForm(forms.Form):
    price = YuanField(label=_("Resale ask per GPU-hour (¥)"), max_amount=limits.MAX_PRICE_AMOUNT)
