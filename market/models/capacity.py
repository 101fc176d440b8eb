from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from core import limits
from core.models import StatusEvent
from market.models.catalogue import GPUModel

# The cache generation (core.cache) of what is read from the live book: the
# public search's counts, the board's aggregates. Every write to offers or
# sites bumps it.
BOARD_CACHE = "market-board"


class Hub(models.TextChoices):
    """The eight national computing hubs of 东数西算, or none."""

    JINGJINJI = "jingjinji", _("Beijing-Tianjin-Hebei (京津冀)")
    YANGTZE = "yangtze", _("Yangtze River Delta (长三角)")
    GREATER_BAY = "greater_bay", _("Guangdong-HK-Macao Greater Bay (粤港澳)")
    CHENGYU = "chengyu", _("Chengdu-Chongqing (成渝)")
    INNER_MONGOLIA = "inner_mongolia", _("Inner Mongolia (内蒙古)")
    GUIZHOU = "guizhou", _("Guizhou (贵州)")
    GANSU = "gansu", _("Gansu (甘肃)")
    NINGXIA = "ningxia", _("Ningxia (宁夏)")
    NONE = "none", _("None")


class LatencyClass(models.TextChoices):
    """Round-trip latency from the site to the nearest eastern hub city."""

    METRO = "metro", _("< 5 ms (metro)")
    REGIONAL = "regional", _("5-20 ms (regional)")
    NATIONAL = "national", _("20-50 ms (national)")
    REMOTE = "remote", _("> 50 ms (remote)")


class Site(models.Model):
    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(max_length=120)
    region = models.CharField(_("province"), max_length=32)
    hub = models.CharField(max_length=20, choices=Hub.choices, default=Hub.NONE)
    green_share = models.DecimalField(_("green-power share"), max_digits=4, decimal_places=3)
    pue = models.DecimalField(_("PUE"), max_digits=4, decimal_places=2)
    carbon_intensity_g_per_kwh = models.PositiveIntegerField(_("grid carbon intensity (gCO2e/kWh)"))
    latency_class = models.CharField(
        max_length=16, choices=LatencyClass.choices, default=LatencyClass.NATIONAL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        # The search's "greenest first": sites walked in this order, a page of offers each.
        indexes = [models.Index(fields=["green_share"], name="site_by_green_share")]
        constraints = [
            models.CheckConstraint(
                condition=Q(green_share__gte=0, green_share__lte=1), name="site_green_share_0_1"
            ),
            models.CheckConstraint(condition=Q(pue__gte=1), name="site_pue_at_least_1"),
            models.CheckConstraint(condition=Q(pue__lte=limits.MAX_PUE), name="site_pue_bounded"),
            models.CheckConstraint(
                condition=Q(carbon_intensity_g_per_kwh__lte=limits.MAX_CARBON_INTENSITY),
                name="site_carbon_intensity_bounded",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    """A server with GPUs of one model. Its agent posts telemetry with a
    token shown once at creation; only a SHA-256 digest is stored (the token
    is 256 random bits, so a slow hash adds nothing). The token works until
    `token_expires_at`; its provider rotates it (a new token, the old one dead
    at once) or revokes it (no token works until the next rotation).

    States: awaiting agent → online (its agent's first telemetry);
    online ⇄ degraded → offline → online; any → maintenance → awaiting
    agent (back in service: online again on its agent's next batch).
    A node awaiting its agent is never matched nor a failover target.
    A drain (`drain_at`, market/maintenance.py) announces maintenance with
    notice: the node takes no new leases, and at `drain_at` it goes into
    maintenance and its leases end or fail over.
    """

    class State(models.TextChoices):
        AWAITING_AGENT = "awaiting_agent", _("awaiting agent")
        ONLINE = "online", _("online")
        DEGRADED = "degraded", _("degraded")
        OFFLINE = "offline", _("offline")
        MAINTENANCE = "maintenance", _("maintenance")

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=120)
    gpu_model = models.ForeignKey(GPUModel, on_delete=models.PROTECT, related_name="nodes")
    gpu_count = models.PositiveSmallIntegerField()
    interconnect = models.CharField(max_length=60, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.AWAITING_AGENT)
    state_reason = models.CharField(max_length=200, blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    token_digest = models.CharField(max_length=64, unique=True)
    # Null once revoked: no token of this node works until it is rotated.
    token_expires_at = models.DateTimeField(null=True, blank=True)
    token_revoked_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    drain_at = models.DateTimeField(_("drain at"), null=True, blank=True)
    drain_reason = models.CharField(_("drain reason"), max_length=200, blank=True)
    # From its agent's self-test (market.verification); new XID/ECC errors undo it.
    verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(gpu_count__gte=1), name="node_has_gpus"),
            models.CheckConstraint(
                condition=Q(gpu_count__lte=limits.MAX_NODE_GPUS), name="node_gpus_bounded"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site} / {self.name}"


class NodeSelfTest(models.Model):
    """What a node's agent measured in a self-test, and the verdict on it
    (market.verification). Appended, never edited."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="self_tests")
    gpus_seen = models.PositiveSmallIntegerField()
    gpu_name = models.CharField(max_length=120, blank=True)
    memory_gb = models.DecimalField(
        _("memory per GPU (GB), the smallest"), max_digits=7, decimal_places=2
    )
    bandwidth_gb_s = models.DecimalField(
        _("memory bandwidth (GB/s), the slowest GPU"),
        max_digits=9,
        decimal_places=1,
        null=True,
        blank=True,
    )
    tflops = models.DecimalField(
        _("dense BF16 TFLOPS, the slowest GPU"),
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
    )
    simulated = models.BooleanField(default=False)
    passed = models.BooleanField()
    reason = models.CharField(max_length=300)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"Self-test of {self.node} at {self.at:%Y-%m-%d %H:%M}: {self.passed}"


class Offer(models.Model):
    """A provider's ask: GPUs of one model at one site, from one node or the
    site's pool of nodes of that model.

    `gpus_available` is decremented by matching under a row lock and never
    goes below 0 (a database constraint backs the lock).
    Statuses: active ⇄ paused; active/paused → withdrawn (final).
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        PAUSED = "paused", _("paused")
        WITHDRAWN = "withdrawn", _("withdrawn")

    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="offers")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="offers")
    node = models.ForeignKey(
        Node, on_delete=models.PROTECT, null=True, blank=True, related_name="offers"
    )
    gpu_model = models.ForeignKey(GPUModel, on_delete=models.PROTECT, related_name="offers")
    gpus_total = models.PositiveIntegerField()
    gpus_available = models.PositiveIntegerField()
    price_amount = models.BigIntegerField(_("price per GPU-hour (minor units)"))
    currency = models.CharField(max_length=3, default="CNY")
    available_from = models.DateTimeField()
    available_until = models.DateTimeField()
    min_hours = models.PositiveIntegerField(default=1)
    max_hours = models.PositiveIntegerField(default=24 * 30)
    interruptible = models.BooleanField(default=False)
    # A buyer's resale of the rest of its lease (market/resale.py): `provider` is
    # the seller, the GPUs are that lease's, sold at the seller's ask.
    resale_of = models.ForeignKey(
        "market.Lease", null=True, blank=True, on_delete=models.PROTECT, related_name="resales"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["price_amount", "created_at"]
        indexes = [
            models.Index(fields=["status", "gpu_model", "price_amount"]),
            # The public search's default order: walked in price order, it
            # stops after a page instead of sorting every live offer (no
            # column matching changes is in it, so those updates stay HOT).
            models.Index(
                fields=["price_amount", "id"],
                condition=Q(status="active"),
                name="offer_active_by_price",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(gpus_available__lte=F("gpus_total")), name="offer_never_oversold"
            ),
            models.CheckConstraint(condition=Q(price_amount__gt=0), name="offer_price_positive"),
            models.CheckConstraint(
                condition=Q(price_amount__lte=limits.MAX_PRICE_AMOUNT), name="offer_price_bounded"
            ),
            models.CheckConstraint(
                condition=Q(gpus_total__lte=limits.MAX_OFFER_GPUS), name="offer_gpus_bounded"
            ),
            models.CheckConstraint(
                condition=Q(min_hours__gte=1, max_hours__lte=limits.MAX_LEASE_HOURS),
                name="offer_hours_bounded",
            ),
            models.CheckConstraint(
                condition=Q(available_until__gt=F("available_from")), name="offer_window_ordered"
            ),
            models.CheckConstraint(
                condition=Q(max_hours__gte=F("min_hours")), name="offer_hours_ordered"
            ),
            models.UniqueConstraint(
                fields=["resale_of"],
                condition=Q(resale_of__isnull=False) & ~Q(status="withdrawn"),
                name="offer_one_open_resale_per_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gpus_available}/{self.gpus_total} × {self.gpu_model} @ {self.price_amount}"


class OfferEvent(StatusEvent):
    """A change to an offer: status transition or re-pricing (who, when, why)."""

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="events")
