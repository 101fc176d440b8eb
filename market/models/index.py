from django.db import models
from django.db.models import Q


class PriceIndexSnapshot(models.Model):
    """One published day of the price index (market/index/METHOD.md).

    `payload` is the canonical JSON of the day's rows exactly as published;
    `digest` = SHA-256 of the previous snapshot's digest, a newline and the
    payload, so a published value changed afterwards breaks the chain
    (`market.index.index_chain_verify`). Snapshots are appended, never edited:
    a restatement is a new snapshot of the same day with the next `seq`."""

    seq = models.PositiveIntegerField(unique=True)
    day = models.DateField()
    method_version = models.CharField(max_length=16)
    payload = models.TextField()
    previous_digest = models.CharField(max_length=64, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["day", "seq"])]
        constraints = [
            models.CheckConstraint(condition=Q(seq__gte=1), name="index_snapshot_seq_from_1"),
        ]

    def __str__(self) -> str:
        return f"Price index {self.day} (#{self.seq}, {self.method_version})"
