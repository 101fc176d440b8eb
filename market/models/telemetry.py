from django.db import models
from django.db.models import Q

from accounts.models import Organisation
from market.models.capacity import Node
from market.models.trading import Lease


class TelemetrySample(models.Model):
    """One reading of one GPU, as posted by the node agent.

    Append-only and time-ordered; idempotent on (node, seq), which is the
    primary key, so the table carries exactly two B-trees: the key (for
    ON CONFLICT) and (node, ts) for range reads by health and metering.
    On PostgreSQL the table is partitioned by day on `ts` (migration 0020,
    market/telemetry/storage.py keeps the partitions and drops old ones), and a
    partitioned table's key must hold the partition key: there the key is
    (node, seq, ts). An agent re-sends a sample as it took it (same seq, same
    timestamp), so re-sent samples still collide on it; ingestion probes the
    batch's seq range within its time range. SQLite keeps the plain table.
    ecc_errors / xid_errors are the agent's cumulative counters (a drop means
    the agent restarted); health and metering compare them with earlier
    samples. Range checks live in the database too: the ingestion fast path
    relies on them to refuse a whole batch in one statement.
    """

    pk = models.CompositePrimaryKey("node", "seq")
    # No database FK: rows are written only by ingestion, with the node taken
    # from its token, and the per-row RI check made binary COPY 2.6× slower
    # here (a partitioned / hypertable layout avoids FKs anyway). Deleting a
    # node still cascades, in Django.
    node = models.ForeignKey(
        Node, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    seq = models.BigIntegerField()
    gpu_index = models.PositiveSmallIntegerField()
    ts = models.DateTimeField()
    utilisation = models.FloatField()
    memory_used_mib = models.PositiveIntegerField()
    power_w = models.FloatField()
    temperature_c = models.FloatField()
    ecc_errors = models.PositiveIntegerField(default=0)
    xid_errors = models.PositiveIntegerField(default=0)
    missing = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["node", "ts"], name="telemetry_node_ts")]
        constraints = [
            models.CheckConstraint(condition=Q(seq__gte=0), name="telemetry_seq_non_negative"),
            models.CheckConstraint(
                condition=Q(utilisation__gte=0, utilisation__lte=100),
                name="telemetry_utilisation_0_100",
            ),
            models.CheckConstraint(
                condition=Q(power_w__gte=0, temperature_c__gte=0),
                name="telemetry_power_temperature_non_negative",
            ),
        ]


class TelemetryTick(models.Model):
    """One tick of a node: the round of its GPUs' samples stamped with one
    timestamp, summed (market/telemetry/metering.py reads these, not the raw
    samples). `gpu_mask` ORs 1 << gpu over the samples not reporting their GPU
    missing (a GPU index is below 64, core/limits.py); `errs` sums the XID and
    ECC counters, `util_sum` and `power_sum` the readings, `samples` counts
    every sample, missing or not.

    The database keeps it: a trigger on the samples table (migration 0021)
    adds every inserted sample to its tick in the same statement — by any
    writer, ingestion's COPY, its ON CONFLICT path or the ORM — and a sample
    that was not inserted (a re-sent one) adds nothing. A tick whose GPUs
    arrive in two batches is one row. On PostgreSQL it is partitioned by day
    on `ts` like the samples, and its days are dropped with theirs
    (storage.py).
    """

    pk = models.CompositePrimaryKey("node", "ts")
    node = models.ForeignKey(
        Node, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    ts = models.DateTimeField()
    gpu_mask = models.BigIntegerField()
    samples = models.PositiveIntegerField()
    errs = models.BigIntegerField()
    util_sum = models.FloatField()
    power_sum = models.FloatField()


class NodeHealthEvent(models.Model):
    """A change of a node's state, with the reason (health history)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="health_events")
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    reason = models.CharField(max_length=200)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["node", "-at"], name="health_event_node_at")]


class NodeHealthCursor(models.Model):
    """Where the health check left off for one node: the last sample it
    examined, each GPU's error counters then, and the last fault it saw (a
    node returns online only after a clean period since that fault)."""

    node = models.OneToOneField(
        Node, on_delete=models.CASCADE, primary_key=True, related_name="health_cursor"
    )
    last_seq = models.BigIntegerField(default=-1)
    error_counters = models.JSONField(default=dict)  # {"<gpu>": [xid, ecc]}
    last_fault_at = models.DateTimeField(null=True, blank=True)
    last_fault_reason = models.CharField(max_length=200, blank=True)


class UsageRecord(models.Model):
    """What a lease really delivered in one metering window. Immutable: the
    evidence behind every invoice line and voucher redemption.

    delivered + lost + grace = the lease's GPUs × the window's length
    (clipped to the lease); grace is the agent's start-up grace at the start
    of the lease (market/telemetry/metering.py): neither billed nor a fault. Energy and carbon keep three decimals so that the sum over a
    lease's windows does not drift from the total.
    """

    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="usage_records")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    gpu_seconds_delivered = models.BigIntegerField()
    gpu_seconds_lost = models.BigIntegerField(default=0)
    gpu_seconds_grace = models.BigIntegerField(default=0)
    energy_wh = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    carbon_g = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    avg_utilisation = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["window_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["lease", "window_start"], name="usage_one_per_lease_window"
            ),
            models.CheckConstraint(
                condition=Q(
                    gpu_seconds_delivered__gte=0, gpu_seconds_lost__gte=0, gpu_seconds_grace__gte=0
                ),
                name="usage_non_negative",
            ),
        ]

    @property
    def gpu_seconds_allocated(self) -> int:
        return self.gpu_seconds_delivered + self.gpu_seconds_lost + self.gpu_seconds_grace


class ProviderReliability(models.Model):
    """A provider's reliability score as of `computed_at` (reliability.py):
    refreshed after each metering run, read by the public offer search with
    one join instead of aggregating usage records per request. A provider
    without a row scores 1 (nothing promised was missed)."""

    provider = models.OneToOneField(
        Organisation, on_delete=models.CASCADE, primary_key=True, related_name="reliability"
    )
    score = models.DecimalField(max_digits=5, decimal_places=4)
    computed_at = models.DateTimeField()


class TelemetryMinute(models.Model):
    """The per-minute rollup of one GPU of one node (market/telemetry/storage.py):
    sums and counts, so that any mean over minutes or GPUs is the mean of the
    raw samples exactly. Charts read these, never the raw samples, which are
    dropped after TELEMETRY_RAW_RETENTION_DAYS; rollups are kept for
    TELEMETRY_ROLLUP_RETENTION_DAYS. Partitioned by day on `minute` on
    PostgreSQL, like the samples."""

    pk = models.CompositePrimaryKey("node", "minute", "gpu_index")
    node = models.ForeignKey(
        Node, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    minute = models.DateTimeField()
    gpu_index = models.PositiveSmallIntegerField()
    samples = models.PositiveIntegerField()
    utilisation_sum = models.FloatField()
    power_w_sum = models.FloatField()
    temperature_c_max = models.FloatField()
    memory_used_mib_max = models.PositiveIntegerField()
    ecc_errors_max = models.PositiveIntegerField()
    xid_errors_max = models.PositiveIntegerField()
    missing = models.PositiveIntegerField()  # samples that reported the GPU missing


class TelemetryRollupCursor(models.Model):
    """How far the rollups go: every minute before `rolled_until` is rolled up
    (one row). Samples arriving after their minute was rolled up (later than
    METERING_GRACE_SECONDS) are in neither rollups nor usage records."""

    name = models.CharField(max_length=32, primary_key=True)
    rolled_until = models.DateTimeField()
