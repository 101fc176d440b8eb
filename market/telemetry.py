"""Telemetry ingestion: a node agent's batch of samples, validated as a whole
and stored once per (node, seq).

PostgreSQL path: the request body goes to the database as it came and one
INSERT ... SELECT FROM jsonb_to_recordset(...) ON CONFLICT DO NOTHING parses,
checks and stores the batch. The table's CHECK constraints refuse negative
values and out-of-range utilisation; a CASE refuses unknown GPU indices and
timestamps from the future by producing a NULL the NOT NULL column rejects;
`missing` is read as JSON so that only true/false pass (PostgreSQL would
read "yes" as true). Numeric strings ("12") do pass on this path.
Any refusal rolls the whole statement back, and only then does Python walk
the batch to name the bad samples — the happy path costs no Python per
sample. SQLite (embedded mode) validates in Python first and bulk-inserts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from core.errors import ApplicationError, PermissionDenied
from market.models import Node, TelemetrySample

MAX_SAMPLES_PER_BATCH = 5000
# How many bad samples a 400 names; the agent logs the answer, it need not be exhaustive.
MAX_REPORTED_ERRORS = 20
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1

_INSERT_SQL = """
INSERT INTO market_telemetrysample
    (node_id, seq, gpu_index, ts, utilisation, memory_used_mib, power_w, temperature_c,
     ecc_errors, xid_errors, missing)
SELECT %(node)s, x.seq,
       CASE WHEN x.gpu < %(gpu_count)s AND x.ts <= %(max_ts)s THEN x.gpu END,
       to_timestamp(x.ts), x.util, x.mem_used_mib, x.power_w, x.temp_c,
       x.ecc_errors, x.xid_errors, coalesce(x.missing::boolean, false)
FROM jsonb_to_recordset(%(body)s::jsonb -> 'samples') AS x(
    seq bigint, ts double precision, gpu integer, util double precision,
    mem_used_mib integer, power_w double precision, temp_c double precision,
    ecc_errors integer, xid_errors integer, missing jsonb)
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int


def node_token_digest(*, token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def node_for_token(*, token: str) -> Node | None:
    """The node whose agent token this is (tokens are `<node id>.<secret>`;
    only the SHA-256 of the whole token is stored)."""
    if not token or len(token) > 200:
        return None
    return (
        Node.objects.select_related(None)
        .only("pk", "gpu_count", "state")
        .filter(token_digest=node_token_digest(token=token))
        .first()
    )


def telemetry_ingest(*, node: Node, body: bytes, now: dt.datetime) -> IngestResult:
    """Store a batch posted by `node`'s agent, all or nothing.

    Samples already stored (same node and seq, e.g. re-sent after an outage)
    are counted as duplicates and left as they were. The node's heartbeat
    (`last_seen_at`) moves to `now` on every accepted batch.
    """
    samples = _parse(node=node, body=body)
    max_ts = now.timestamp() + settings.TELEMETRY_MAX_CLOCK_SKEW_SECONDS
    with transaction.atomic():
        if connection.vendor == "postgresql":
            accepted = _insert_postgres(node=node, body=body, samples=samples, max_ts=max_ts)
        else:
            _raise_if_invalid(samples=samples, gpu_count=node.gpu_count, max_ts=max_ts)
            accepted = _insert_portable(node=node, samples=samples)
        Node.objects.filter(pk=node.pk).update(last_seen_at=now)
    return IngestResult(accepted=accepted, duplicates=len(samples) - accepted)


def _parse(*, node: Node, body: bytes) -> list[Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApplicationError("The body is not valid JSON.", errors={"body": [str(exc)]}) from exc
    if not isinstance(payload, dict):
        raise ApplicationError("Invalid batch.", errors={"body": ["Expected a JSON object."]})
    claimed = payload.get("node")
    if claimed is not None and claimed != node.pk and str(claimed) != str(node.pk):
        raise PermissionDenied("This token may post telemetry for its own node only.")
    samples = payload.get("samples")
    if not isinstance(samples, list):
        raise ApplicationError("Invalid batch.", errors={"samples": ["Expected a list."]})
    if len(samples) > MAX_SAMPLES_PER_BATCH:
        raise ApplicationError(
            "Invalid batch.",
            errors={"samples": [f"At most {MAX_SAMPLES_PER_BATCH} samples per request."]},
        )
    return samples


def _insert_postgres(*, node: Node, body: bytes, samples: list[Any], max_ts: float) -> int:
    if not samples:
        return 0
    params = {
        "node": node.pk,
        "gpu_count": node.gpu_count,
        "max_ts": max_ts,
        "body": body.decode(),
    }
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, params)
            return cursor.rowcount
    except DatabaseError:
        # The database refused the batch; explain which samples, or re-raise if
        # the refusal was not about the input.
        _raise_if_invalid(samples=samples, gpu_count=node.gpu_count, max_ts=max_ts)
        raise


def _insert_portable(*, node: Node, samples: list[dict[str, Any]]) -> int:
    by_seq = {sample["seq"]: sample for sample in samples}
    stored = set(
        TelemetrySample.objects.filter(node=node, seq__in=list(by_seq)).values_list(
            "seq", flat=True
        )
    )
    new = [
        TelemetrySample(
            node_id=node.pk,
            seq=seq,
            gpu_index=s["gpu"],
            ts=dt.datetime.fromtimestamp(s["ts"], tz=dt.UTC),
            utilisation=s["util"],
            memory_used_mib=s["mem_used_mib"],
            power_w=s["power_w"],
            temperature_c=s["temp_c"],
            ecc_errors=s["ecc_errors"],
            xid_errors=s["xid_errors"],
            missing=s.get("missing", False),
        )
        for seq, s in by_seq.items()
        if seq not in stored
    ]
    TelemetrySample.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    return len(new)


def _raise_if_invalid(*, samples: list[Any], gpu_count: int, max_ts: float) -> None:
    errors = samples_errors(samples=samples, gpu_count=gpu_count, max_ts=max_ts)
    if errors:
        raise ApplicationError(
            f"{len(errors)} invalid sample(s); nothing from this batch was stored.",
            errors={"samples": errors},
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_error(value: Any, *, upper: int, below: int | None = None) -> str | None:
    if not _is_int(value):
        return "Expected an integer."
    if value < 0:
        return "Must not be negative."
    if below is not None and value >= below:
        return f"This node has GPUs 0-{below - 1}."
    if value > upper:
        return "Too large."
    return None


def _number_error(value: Any, *, upper: float | None = None) -> str | None:
    if not _is_number(value):
        return "Expected a number."
    if value < 0:
        return "Must not be negative."
    if upper is not None and value > upper:
        return f"Must be at most {upper:g}."
    return None


def _sample_errors(sample: Any, *, gpu_count: int, max_ts: float) -> dict[str, list[str]]:
    if not isinstance(sample, dict):
        return {"non_field_errors": ["Expected a JSON object."]}
    checks: Iterable[tuple[str, str | None]] = (
        ("seq", _int_error(sample.get("seq"), upper=_INT64)),
        ("gpu", _int_error(sample.get("gpu"), upper=_INT32, below=gpu_count)),
        ("util", _number_error(sample.get("util"), upper=100)),
        ("mem_used_mib", _int_error(sample.get("mem_used_mib"), upper=_INT32)),
        ("power_w", _number_error(sample.get("power_w"))),
        ("temp_c", _number_error(sample.get("temp_c"))),
        ("ecc_errors", _int_error(sample.get("ecc_errors"), upper=_INT32)),
        ("xid_errors", _int_error(sample.get("xid_errors"), upper=_INT32)),
    )
    errors = {field: [message] for field, message in checks if message}
    ts = sample.get("ts")
    if not _is_number(ts) or ts <= 0:
        errors["ts"] = ["Expected seconds since the epoch (UTC)."]
    elif ts > max_ts:
        errors["ts"] = ["Too far in the future; check the node's clock."]
    if not isinstance(sample.get("missing", False), bool):
        errors["missing"] = ["Expected true or false."]
    return errors


def samples_errors(
    *, samples: list[Any], gpu_count: int, max_ts: float
) -> dict[str, dict[str, list[str]]]:
    """Field errors of the first bad samples, keyed by their index in the batch."""
    errors: dict[str, dict[str, list[str]]] = {}
    for index, sample in enumerate(samples):
        sample_errors = _sample_errors(sample, gpu_count=gpu_count, max_ts=max_ts)
        if sample_errors:
            errors[str(index)] = sample_errors
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
    return errors
