from django.db import models
from django.db.models import Q

from market.models.capacity import Node
from market.models.trading import Lease


class TelemetrySample(models.Model):
    """One reading of one GPU, as posted by the node agent.

    Append-only and time-ordered; idempotent on (node, seq): the agent numbers
    every sample and re-sends after outages. ecc_errors / xid_errors are the
    agent's cumulative counters; health compares them with earlier samples.
    """

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.BigIntegerField()
    gpu_index = models.PositiveSmallIntegerField()
    ts = models.DateTimeField()
    utilisation = models.FloatField()
    memory_used_mib = models.IntegerField()
    power_w = models.FloatField()
    temperature_c = models.FloatField()
    ecc_errors = models.IntegerField(default=0)
    xid_errors = models.IntegerField(default=0)
    missing = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node", "seq"], name="telemetry_node_seq_unique"),
        ]
        indexes = [models.Index(fields=["node", "ts"], name="telemetry_node_ts")]


class NodeHealthEvent(models.Model):
    """A change of a node's state, with the reason (health history)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="health_events")
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    reason = models.CharField(max_length=200)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-pk"]


class UsageRecord(models.Model):
    """What a lease really delivered in one metering window. Immutable: the
    evidence behind every invoice line and voucher redemption."""

    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="usage_records")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    gpu_seconds_delivered = models.BigIntegerField()
    gpu_seconds_lost = models.BigIntegerField(default=0)
    energy_wh = models.BigIntegerField(default=0)
    carbon_g = models.BigIntegerField(default=0)
    avg_utilisation = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["window_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["lease", "window_start"], name="usage_one_per_lease_window"
            ),
            models.CheckConstraint(
                condition=Q(gpu_seconds_delivered__gte=0, gpu_seconds_lost__gte=0),
                name="usage_non_negative",
            ),
        ]
