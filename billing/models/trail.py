"""The subsidy trail: an append-only RFC 6962 Merkle log of the evidence behind
every fen (usage records, invoice lines, payments, redemptions and their status
changes) and the tree heads the exchange signed (see billing.trail)."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class TrailLeaf(models.Model):
    """One leaf of the log: a record's canonical JSON at the time it was logged.

    Rows are never updated or deleted (PostgreSQL triggers refuse it); `index`
    is the leaf's position, 0, 1, 2, ... without gaps; one leaf per record and kind.
    """

    class Kind(models.TextChoices):
        USAGE = "usage", _("usage record")
        INVOICE_LINE = "invoice_line", _("invoice line")
        PAYMENT = "payment", _("card payment")
        REDEMPTION = "redemption", _("voucher redemption")
        REDEMPTION_STATUS = "redemption_status", _("redemption status change")
        REFUND = "refund", _("card refund")

    index = models.BigIntegerField(primary_key=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    record_id = models.BigIntegerField()
    leaf = models.TextField(help_text=_("canonical JSON (UTF-8, sorted keys, no spaces)"))
    leaf_hash = models.CharField(max_length=64, help_text=_("SHA-256(0x00 || leaf), hex"))
    logged_at = models.DateTimeField()

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "record_id"], name="trail_leaf_once_per_record"
            ),
            models.CheckConstraint(condition=Q(index__gte=0), name="trail_leaf_index_not_negative"),
        ]

    def __str__(self) -> str:
        return f"#{self.index} {self.kind}:{self.record_id}"


class TreeHead(models.Model):
    """A signed tree head: the log's size and root at `timestamp`, signed with
    the exchange's Ed25519 key (billing.trail.heads says what bytes are signed)."""

    tree_size = models.BigIntegerField()
    root_hash = models.CharField(max_length=64)
    timestamp = models.DateTimeField()
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=128, help_text=_("Ed25519 signature, hex"))

    class Meta:
        ordering = ["-tree_size", "-timestamp", "-pk"]
        get_latest_by = ["tree_size", "timestamp", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(tree_size__gte=0), name="tree_head_size_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"tree head {self.tree_size} {self.root_hash[:12]}…"
