"""Publishing the index: one hash-chained snapshot per day (METHOD.md,
"Snapshots"), and the check that nothing published was changed since."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from core import clock
from market.index.compute import METHOD_VERSION, IndexRow, index_compute_day
from market.models import PriceIndexSnapshot

METHOD_FILE = Path(__file__).with_name("METHOD.md")


def method_text() -> str:
    return METHOD_FILE.read_text(encoding="utf-8")


def payload_of(rows: list[IndexRow]) -> str:
    """The canonical JSON that is hashed: keys sorted, no spaces, decimals as strings."""
    return json.dumps(
        [row.as_json() for row in rows], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def chain_digest(previous: str, payload: str) -> str:
    return hashlib.sha256(f"{previous}\n{payload}".encode()).hexdigest()


def index_publish(
    *, day: dt.date, restate: bool = False, now: dt.datetime | None = None
) -> PriceIndexSnapshot:
    """Publish `day` (computed from its fills now) as the next snapshot of the
    chain. Publishing a day already published returns that snapshot, unless
    `restate`: then a new snapshot of the day supersedes it (the old one stays)."""
    now = now or clock.now()
    if not restate:
        existing = PriceIndexSnapshot.objects.filter(day=day).order_by("-seq").first()
        if existing is not None:
            return existing
    payload = payload_of(index_compute_day(day=day))
    try:
        with transaction.atomic():
            last = PriceIndexSnapshot.objects.select_for_update().order_by("-seq").first()
            previous = last.digest if last else ""
            return PriceIndexSnapshot.objects.create(
                seq=(last.seq + 1) if last else 1,
                day=day,
                method_version=METHOD_VERSION,
                payload=payload,
                previous_digest=previous,
                digest=chain_digest(previous, payload),
                published_at=now,
            )
    except IntegrityError:
        # Another publisher took this place in the chain first: its snapshot stands.
        if restate:
            raise
        return PriceIndexSnapshot.objects.filter(day=day).order_by("-seq").first() or (
            index_publish(day=day, now=now)
        )


def index_publish_due(*, now: dt.datetime | None = None) -> PriceIndexSnapshot | None:
    """Publish yesterday (in the exchange's time zone) if not yet published."""
    now = now or clock.now()
    yesterday = timezone.localtime(now).date() - dt.timedelta(days=1)
    return index_publish(day=yesterday, now=now)


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    snapshots: int
    head_digest: str
    broken_seq: int | None = None
    reason: str = ""


def index_chain_verify() -> ChainCheck:
    """Recompute every digest from the stored payloads, in order: the first
    snapshot whose payload, digest or link to its predecessor does not match
    is reported."""
    previous = ""
    count = 0
    for seq, payload, previous_digest, digest in PriceIndexSnapshot.objects.order_by(
        "seq"
    ).values_list("seq", "payload", "previous_digest", "digest"):
        count += 1
        if previous_digest != previous:
            return ChainCheck(False, count, previous, seq, "does not link to its predecessor")
        if chain_digest(previous, payload) != digest:
            return ChainCheck(False, count, previous, seq, "payload changed after publication")
        previous = digest
    return ChainCheck(True, count, previous)


def index_rows(
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
    gpu_class: str | None = None,
) -> list[IndexRow]:
    """Published rows, day by day (a restated day: its latest snapshot), oldest first."""
    snapshots = PriceIndexSnapshot.objects.order_by("day", "-seq")
    if since:
        snapshots = snapshots.filter(day__gte=since)
    if until:
        snapshots = snapshots.filter(day__lte=until)
    rows: list[IndexRow] = []
    seen: set[dt.date] = set()
    for day, payload in snapshots.values_list("day", "payload"):
        if day in seen:
            continue
        seen.add(day)
        rows.extend(
            IndexRow.from_json(row)
            for row in json.loads(payload)
            if gpu_class is None or row["gpu_class"] == gpu_class
        )
    return rows


def last_published_day() -> dt.date | None:
    return PriceIndexSnapshot.objects.order_by("-day").values_list("day", flat=True).first()
