"""Appending to the trail and reading it back.

`trail_append_pending` logs every record not yet logged, kind by kind in id
order: usage records as metered; invoice lines once their invoice is issued
(a draft's lines are still being rewritten); redemptions and their status
changes once their invoice is issued; card payments and refunds once they
succeeded.
Records are found by what is missing from the log (an anti-join), not by a
per-kind "last id" watermark: ids are handed out before commit, so a slow
transaction can commit an id below one already logged, and a watermark would
skip it for ever.

Appends are serialised (a PostgreSQL advisory lock; SQLite serialises writers
itself), so leaf indices are gapless: 0, 1, 2, ...
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef

from billing.models import (
    Invoice,
    InvoiceLine,
    Payment,
    Redemption,
    RedemptionEvent,
    Refund,
    TrailLeaf,
)
from billing.trail import leaves
from billing.trail.tree import leaf_hash
from core import clock
from market.models import UsageRecord

K = TrailLeaf.Kind
BATCH = 500
LOCK_KEY = 6962_0001  # pg_advisory_xact_lock key of the trail's appenders
ISSUED = (Invoice.Status.OPEN, Invoice.Status.PAID, Invoice.Status.VOID)


@dataclass(frozen=True)
class Source:
    kind: str
    model: type[models.Model]
    ready: Callable[[models.QuerySet], models.QuerySet]  # which rows may be logged now
    related: tuple[str, ...]
    leaf: Callable[[Any], dict[str, Any]]


SOURCES = (
    Source(K.USAGE, UsageRecord, lambda qs: qs, ("lease",), leaves.usage_leaf),
    Source(
        K.INVOICE_LINE,
        InvoiceLine,
        lambda qs: qs.filter(invoice__status__in=ISSUED),
        ("invoice__buyer", "provider"),
        leaves.invoice_line_leaf,
    ),
    Source(
        K.REDEMPTION,
        Redemption,
        lambda qs: qs.filter(invoice_line__invoice__status__in=ISSUED),
        ("programme", "beneficiary", "invoice_line__invoice__buyer", "invoice_line__provider"),
        leaves.redemption_leaf,
    ),
    Source(
        K.REDEMPTION_STATUS,
        RedemptionEvent,
        lambda qs: qs.filter(redemption__invoice_line__invoice__status__in=ISSUED),
        (),
        leaves.redemption_status_leaf,
    ),
    Source(
        K.PAYMENT,
        Payment,
        lambda qs: qs.filter(status=Payment.Status.SUCCEEDED),
        ("invoice",),
        leaves.payment_leaf,
    ),
    Source(
        K.REFUND,
        Refund,
        lambda qs: qs.filter(status="succeeded"),
        ("payment__invoice",),
        leaves.refund_leaf,
    ),
)
SOURCE_OF = {source.kind: source for source in SOURCES}


def _unlogged(source: Source) -> models.QuerySet:
    logged = TrailLeaf.objects.filter(kind=source.kind, record_id=OuterRef("pk"))
    return (
        source.ready(source.model._default_manager.all())
        .filter(~Exists(logged))
        .select_related(*source.related)
        .order_by("pk")
    )


def lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def trail_size() -> int:
    last = TrailLeaf.objects.order_by("-index").values_list("index", flat=True).first()
    return 0 if last is None else last + 1


def _encode(record: Any, source: Source) -> tuple[str, str]:
    body = leaves.canonical(source.leaf(record))
    return body.decode(), leaf_hash(body).hex()


def trail_append_pending(*, limit: int | None = None) -> int:
    """Log what is not logged yet; returns the number of leaves appended."""
    appended = 0
    for source in SOURCES:
        after = 0  # within one run, each batch starts past the last one (no rescans)
        while limit is None or appended < limit:
            with transaction.atomic():
                lock()
                batch = list(_unlogged(source).filter(pk__gt=after)[:BATCH])
                if not batch:
                    break
                appended += _append(source, batch, start=trail_size())
            after = batch[-1].pk
    return appended


def _append(source: Source, records: Iterable[Any], *, start: int) -> int:
    now = clock.now()
    rows = []
    for offset, record in enumerate(records):
        body, digest = _encode(record, source)
        rows.append(
            TrailLeaf(
                index=start + offset,
                kind=source.kind,
                record_id=record.pk,
                leaf=body,
                leaf_hash=digest,
                logged_at=now,
            )
        )
    TrailLeaf.objects.bulk_create(rows)
    return len(rows)


def leaf_hashes(size: int) -> list[bytes]:
    """The hashes of leaves 0 .. size-1, in order."""
    hashes = TrailLeaf.objects.filter(index__lt=size).order_by("index")
    return [bytes.fromhex(h) for h in hashes.values_list("leaf_hash", flat=True).iterator(2000)]


@dataclass(frozen=True)
class Mismatch:
    """A logged record that no longer reads as it was logged (or is gone)."""

    index: int
    kind: str
    record_id: int
    problem: str  # "rewritten" or "deleted"


def trail_check(*, kinds: Iterable[str] | None = None) -> list[Mismatch]:
    """Recompute every logged record's leaf from its row and compare: a record
    rewritten after it was logged, or deleted, is reported."""
    found = []
    for kind in kinds or [s.kind for s in SOURCES]:
        source = SOURCE_OF[kind]
        logged = TrailLeaf.objects.filter(kind=kind).order_by("index")
        for chunk in _chunks(logged.values_list("index", "record_id", "leaf_hash")):
            ids = [record_id for _i, record_id, _h in chunk]
            rows = source.model._default_manager.select_related(*source.related).in_bulk(ids)
            for index, record_id, logged_hash in chunk:
                record = rows.get(record_id)
                if record is None:
                    found.append(Mismatch(index, kind, record_id, "deleted"))
                elif _encode(record, source)[1] != logged_hash:
                    found.append(Mismatch(index, kind, record_id, "rewritten"))
    return sorted(found, key=lambda m: m.index)


def _chunks(rows, size: int = BATCH):
    chunk = []
    for row in rows.iterator(size):
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
