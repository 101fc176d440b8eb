from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Organisation
from core import limits
from core.models import StatusEvent
from market.models.capacity import Node, Offer
from market.models.catalogue import GPUModel


class Order(models.Model):
    """A buyer's bid for `gpu_count` GPUs for `hours` hours.

    Statuses: open → partially_filled → filled; open/partially_filled →
    cancelled / expired (at `good_till`, never later than `start_by`, any
    unfilled part is released); filled → cancelled when the buyer ends its
    running leases with it.
    A filled order returns to partially_filled when a failed lease's
    remaining hours wait for failover capacity.

    Time in force: a good-till order stands on the book, matched in every
    round, until filled, cancelled or its `good_till` passes; an
    immediate-or-cancel order is matched once when placed and whatever is
    left unfilled is released at once (status expired).
    """

    class TimeInForce(models.TextChoices):
        GOOD_TILL = "good_till", _("good till")
        IMMEDIATE_OR_CANCEL = "ioc", _("immediate or cancel")

    class Status(models.TextChoices):
        OPEN = "open", pgettext_lazy("order status", "open")
        PARTIALLY_FILLED = "partially_filled", _("partially filled")
        FILLED = "filled", _("filled")
        CANCELLED = "cancelled", _("cancelled")
        EXPIRED = "expired", _("expired")

    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="orders")
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_models = models.ManyToManyField(GPUModel, blank=True, related_name="+")
    min_tflops = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    min_memory_gb = models.PositiveIntegerField(null=True, blank=True)
    gpu_count = models.PositiveIntegerField()
    hours = models.PositiveIntegerField()
    max_price_amount = models.BigIntegerField(_("maximum price per GPU-hour (minor units)"))
    currency = models.CharField(max_length=3, default="CNY")
    regions = models.JSONField(default=list, blank=True)
    hubs = models.JSONField(default=list, blank=True)
    min_green_share = models.DecimalField(max_digits=4, decimal_places=3, default=0)
    domestic_only = models.BooleanField(default=False)
    gang = models.BooleanField(default=False, help_text=_("all GPUs at one site"))
    start_by = models.DateTimeField()
    # A forward block: the lease starts then (hour-aligned), not before; none: at once.
    start_at = models.DateTimeField(null=True, blank=True)
    time_in_force = models.CharField(
        max_length=10, choices=TimeInForce.choices, default=TimeInForce.GOOD_TILL
    )
    # The order leaves the book at this moment; none: at start_by.
    good_till = models.DateTimeField(null=True, blank=True)
    failover_allowed = models.BooleanField(default=True)
    # Interruptible capacity (cheaper, pre-empted with notice) is matched only
    # to orders that accept it; an order that does not may pre-empt it.
    interruptible = models.BooleanField(
        default=False, help_text=_("accepts interruptible capacity (pre-empted with notice)")
    )
    # Re-arms after a lease is lost to pre-emption or node death (failover);
    # none: no cap. Each re-arm matches the lost lease's remaining window anew.
    max_refills = models.PositiveIntegerField(null=True, blank=True)
    refills_used = models.PositiveIntegerField(default=0)
    verified_only = models.BooleanField(
        default=False, help_text=_("only GPUs on nodes whose self-test verified them")
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    gpus_filled = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=80, null=True, blank=True)
    # SHA-256 of the canonical request: the same key with another body is a 409.
    request_digest = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "idempotency_key"], name="order_idempotency_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(gpus_filled__lte=F("gpu_count")), name="order_never_overfilled"
            ),
            models.CheckConstraint(
                condition=Q(max_price_amount__gt=0), name="order_price_positive"
            ),
            models.CheckConstraint(
                condition=Q(gpu_count__gte=1, hours__gte=1), name="order_has_size"
            ),
            models.CheckConstraint(
                condition=Q(max_price_amount__lte=limits.MAX_PRICE_AMOUNT),
                name="order_price_bounded",
            ),
            models.CheckConstraint(
                condition=Q(
                    gpu_count__lte=limits.MAX_ORDER_GPUS, hours__lte=limits.MAX_ORDER_HOURS
                ),
                name="order_size_bounded",
            ),
            models.CheckConstraint(
                condition=Q(good_till__isnull=True) | Q(good_till__lte=F("start_by")),
                name="order_good_till_by_start",
            ),
            models.CheckConstraint(
                condition=Q(min_memory_gb__isnull=True)
                | Q(min_memory_gb__lte=limits.MAX_MEMORY_GB),
                name="order_memory_floor_bounded",
            ),
            models.CheckConstraint(
                condition=Q(start_at__isnull=True) | Q(start_at__lte=F("start_by")),
                name="order_start_at_by_start_by",
            ),
            models.CheckConstraint(
                condition=Q(max_refills__isnull=True)
                | Q(max_refills__lte=limits.MAX_ORDER_REFILLS),
                name="order_refills_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk}: {self.gpu_count} GPUs × {self.hours} h"

    @property
    def gpus_unfilled(self) -> int:
        return self.gpu_count - self.gpus_filled

    @property
    def refills_left(self) -> int | None:
        return None if self.max_refills is None else max(0, self.max_refills - self.refills_used)


class OrderEvent(StatusEvent):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")


class Lease(models.Model):
    """GPUs of one offer, on one node, allocated to one order for a window at
    the agreed price (the ask).

    Statuses: pending → active → completed; pending/active → cancelled;
    active → failed (node fault) ; a failed lease whose remaining hours moved
    to another offer is marked migrated and the new lease points back to it
    through `previous_lease`.

    Pre-emption (market/matching/preempt.py): a lease on an interruptible
    offer may be pre-empted by a higher bid with notice: `preempt_at` is set,
    `ends_at` is brought forward to it (the end it was matched with is kept in
    `original_ends_at`), and at `preempt_at` it completes (billed to that
    second). `rearm`: its order re-matches the rest of its window (after a
    pre-emption or a failure), within the order's refills.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        ACTIVE = "active", _("active")
        COMPLETED = "completed", _("completed")
        FAILED = "failed", _("failed")
        MIGRATED = "migrated", _("migrated")
        CANCELLED = "cancelled", _("cancelled")

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="leases")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="leases")
    # the (node, status) index serves lookups by node
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="leases", db_index=False)
    # Copies of order.buyer and offer.provider, for visibility filters without
    # a join. No database constraint of their own: the organisations they name
    # cannot go while the order's and the offer's (constrained) keys hold them,
    # and a matching round writes thousands of leases in one commit, where
    # every constraint is one more lookup per row.
    buyer = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        related_name="leases_bought",
        db_constraint=False,
    )
    provider = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        related_name="leases_sold",
        db_constraint=False,
    )
    gpu_count = models.PositiveIntegerField()
    price_amount = models.BigIntegerField(_("price per GPU-hour (minor units)"))
    currency = models.CharField(max_length=3, default="CNY")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    previous_lease = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="next_lease"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    preempt_at = models.DateTimeField(_("pre-empted at"), null=True, blank=True)
    original_ends_at = models.DateTimeField(null=True, blank=True)
    rearm = models.BooleanField(default=False)
    # A lease bought from a resale (market/resale.py): the seller's lease, whose
    # GPUs it uses - it holds no node capacity of its own.
    resold_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="resold_to"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "pk"]
        indexes = [
            models.Index(fields=["status", "ends_at"]),
            models.Index(fields=["node", "status"]),
            models.Index(
                fields=["preempt_at"],
                condition=Q(preempt_at__isnull=False),
                name="lease_under_notice",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="lease_window_ordered"
            ),
            models.CheckConstraint(condition=Q(gpu_count__gte=1), name="lease_has_gpus"),
            models.CheckConstraint(
                condition=Q(gpu_count__lte=limits.MAX_ORDER_GPUS), name="lease_gpus_bounded"
            ),
            models.CheckConstraint(
                condition=Q(price_amount__gt=0, price_amount__lte=limits.MAX_PRICE_AMOUNT),
                name="lease_price_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"Lease {self.pk}: {self.gpu_count} × {self.node} ({self.status})"


class LeaseEvent(StatusEvent):
    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="events")
