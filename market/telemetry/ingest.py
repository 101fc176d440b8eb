"""Telemetry ingestion: a node agent's batch of samples, validated as a whole
and stored once per (node, seq).

The batch is parsed once (orjson) and validated column by column — a type
set and a min/max per field, C loops rather than Python per sample; only a
batch that fails is walked sample by sample to name the bad ones.

PostgreSQL fast path: binary COPY straight into the table. COPY has no
ON CONFLICT, so it is taken only when an index probe finds none of the
batch's seq range stored yet (the normal case: agents number samples
monotonically). A re-sent or overlapping batch, a repeated seq inside the
batch, or a COPY that collides with a concurrent post of the same samples
(unique violation, rolled back to a savepoint) goes to the slow path: one
INSERT ... SELECT FROM jsonb_to_recordset(...) ON CONFLICT DO NOTHING over the
validated fields re-encoded (never the client's bytes: jsonb refuses some
strings JSON allows, such as \\u0000, that the table never stores), which
also re-checks everything in the database (CHECK constraints; a CASE turns
an unknown GPU or a future timestamp into a NULL the NOT NULL column refuses).
Profiling put the old always-JSON-in-the-database path at ~20 µs of
PostgreSQL CPU per sample (jsonb key sorting, numeric parsing, a SQL literal
the size of the body) against ~5 µs for COPY plus ~2 µs of Python here.

With settings.TELEMETRY_ASYNC_COMMIT the fast path commits asynchronously
(SET LOCAL synchronous_commit = off, this transaction only): a PostgreSQL
crash can then lose the last ~0.6 s (3 × wal_writer_delay) of acknowledged
samples, which the agent will not re-send — never a half-stored batch.
It is off by default: it measured no faster here (CPU, not the ~3 ms WAL
flush per 5,000-sample commit, is the bottleneck). Health and metering carry a sample over gaps shorter than 3 reporting
intervals, so a lost tick neither degrades the node nor loses GPU-seconds;
money rows elsewhere keep synchronous commits. SQLite (embedded mode) bulk-inserts.

Whichever path stores them, the database adds the samples it stored to their
ticks (TelemetryTick, one row per node and timestamp, which metering reads) in
the same statement, by a trigger (migration market/0021): a re-sent sample,
not stored, adds nothing, and a COPY rolled back to its savepoint takes its
ticks with it. That costs PostgreSQL one grouped upsert per batch (bench/ingest.py).
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction

from core.errors import ApplicationError, PermissionDenied
from market.capacity import node_token_digest
from market.models import Node, TelemetrySample
from market.telemetry.health import node_state_change

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


_COPY_SQL = """
COPY market_telemetrysample
    (node_id, seq, gpu_index, ts, utilisation, memory_used_mib, power_w, temperature_c,
     ecc_errors, xid_errors, missing)
FROM STDIN (FORMAT BINARY)
"""
# The time range bounds the probe to the day partitions the batch goes to
# (PostgreSQL partitions samples by day); a stored sample is the same sample
# only with the same timestamp there (storage.py).
_STORED_IN_RANGE_SQL = """
SELECT 1 FROM market_telemetrysample
WHERE node_id = %s AND seq BETWEEN %s AND %s AND ts BETWEEN %s AND %s LIMIT 1
"""
# One binary COPY tuple: field count, then (length, value) per column, in
# _COPY_SQL order: bigint, bigint, smallint, timestamptz (µs since 2000-01-01),
# float8, int4, float8, float8, int4, int4, bool.
_COPY_ROW = struct.Struct(">h iq iq ih iq id ii id id ii ii i?")
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH = 946_684_800.0  # 2000-01-01 in Unix seconds
_FIELDS = operator.itemgetter(
    "seq", "gpu", "ts", "util", "mem_used_mib", "power_w", "temp_c", "ecc_errors", "xid_errors"
)
_SAMPLE_KEYS = (
    "seq", "gpu", "ts", "util", "mem_used_mib", "power_w", "temp_c", "ecc_errors", "xid_errors",
    "missing",
)  # fmt: skip
_INT = frozenset({int})
_NUMBER = frozenset({int, float})
_BOOL = frozenset({bool})


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int


def node_for_token(*, token: str) -> Node | None:
    """The node whose agent token this is (tokens are `<node id>.<secret>`;
    only the SHA-256 of the whole token is stored), expired or not: see
    `node_token_expired`. A revoked or rotated-away token matches no node."""
    if not token or len(token) > 200:
        return None
    return (
        Node.objects.select_related(None)
        .only("pk", "gpu_count", "state", "token_expires_at")
        .filter(token_digest=node_token_digest(token=token))
        .first()
    )


def node_token_expired(*, node: Node, now: dt.datetime) -> bool:
    return node.token_expires_at is None or node.token_expires_at <= now


def telemetry_ingest(*, node: Node, body: bytes, now: dt.datetime) -> IngestResult:
    """Store a batch posted by `node`'s agent, all or nothing.

    Samples already stored (same node and seq, e.g. re-sent after an outage)
    are counted as duplicates and left as they were. The node's heartbeat
    (`last_seen_at`) moves to `now` on every accepted batch; the first one
    brings a node awaiting its agent online.
    """
    samples = _parse(node=node, body=body)
    max_ts = now.timestamp() + settings.TELEMETRY_MAX_CLOCK_SKEW_SECONDS
    with transaction.atomic():
        if connection.vendor == "postgresql":
            columns = _valid_columns(samples=samples, gpu_count=node.gpu_count, max_ts=max_ts)
            if columns is None:
                # Name the bad samples; should the bulk check and the per-sample
                # one ever disagree, the database checks again below.
                _raise_if_invalid(samples=samples, gpu_count=node.gpu_count, max_ts=max_ts)
            accepted = None
            if columns is not None and samples:
                accepted = _copy_postgres(node=node, columns=columns)
            if accepted is None:
                accepted = _insert_postgres(node=node, samples=samples, max_ts=max_ts)
        else:
            _raise_if_invalid(samples=samples, gpu_count=node.gpu_count, max_ts=max_ts)
            accepted = _insert_portable(node=node, samples=samples)
        Node.objects.filter(pk=node.pk).update(last_seen_at=now)
        if node.state == Node.State.AWAITING_AGENT:
            node_state_change(
                node=node,
                to_state=Node.State.ONLINE,
                reason="first telemetry from its agent",
                now=now,
            )
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


def _insert_postgres(*, node: Node, samples: list[Any], max_ts: float) -> int:
    if not samples:
        return 0
    params: dict[str, Any] = {
        "node": node.pk,
        "gpu_count": node.gpu_count,
        "max_ts": max_ts,
        "body": _columns_json(samples),
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


def _columns_json(samples: list[Any]) -> str:
    """The samples re-encoded with only the fields the table stores. The
    database then parses exactly what was validated: a string the agent sent
    beside them (jsonb refuses \\u0000, for one) cannot fail the batch."""
    return orjson.dumps(
        {
            "samples": [
                {key: sample[key] for key in _SAMPLE_KEYS if key in sample}
                if isinstance(sample, dict)
                else sample
                for sample in samples
            ]
        }
    ).decode()


def _valid_columns(
    *, samples: list[Any], gpu_count: int, max_ts: float
) -> tuple[Sequence[Any], ...] | None:
    """The batch as columns ready for COPY when every sample is valid, else None.

    The same rules as `samples_errors`, checked per column: exact types (bool is
    not a number here, numeric strings are not numbers), then bounds by min/max.
    """
    if not samples:
        return ()
    if set(map(type, samples)) != {dict}:
        return None
    try:
        rows = list(map(_FIELDS, samples))
    except KeyError:
        return None
    seq, gpu, ts, util, mem, power, temp, ecc, xid = zip(*rows, strict=True)
    missing = [s.get("missing", False) for s in samples]
    if not (
        all(set(map(type, col)) <= _INT for col in (seq, gpu, mem, ecc, xid))
        and all(set(map(type, col)) <= _NUMBER for col in (ts, util, power, temp))
        and set(map(type, missing)) <= _BOOL
    ):
        return None
    if not (
        min(seq) >= 0
        and max(seq) <= _INT64
        and min(gpu) >= 0
        and max(gpu) < min(gpu_count, _INT32 + 1)
        and min(ts) > 0
        and max(ts) <= max_ts
        and min(util) >= 0
        and max(util) <= 100
        and all(min(col) >= 0 and max(col) <= _INT32 for col in (mem, ecc, xid))
        and all(min(col) >= 0 and math.isfinite(max(col)) for col in (power, temp))
    ):
        return None
    return seq, gpu, ts, util, mem, power, temp, ecc, xid, missing


def _copy_postgres(*, node: Node, columns: tuple[Sequence[Any], ...]) -> int | None:
    """Binary COPY of a valid batch none of which is stored yet; None when the
    batch needs the ON CONFLICT path (re-sent, overlapping or colliding)."""
    seq, ts = columns[0], columns[2]
    first, last = min(seq), max(seq)
    if len(set(seq)) != len(seq):
        return None
    earliest = dt.datetime.fromtimestamp(math.floor(min(ts)), tz=dt.UTC)
    latest = dt.datetime.fromtimestamp(math.ceil(max(ts)), tz=dt.UTC)
    with connection.cursor() as cursor:
        cursor.execute(_STORED_IN_RANGE_SQL, [node.pk, first, last, earliest, latest])
        if cursor.fetchone() is not None:
            return None
        try:
            data = _copy_data(node_id=node.pk, columns=columns)
        except struct.error:  # a value the columns cannot hold; let the database say so
            return None
        if settings.TELEMETRY_ASYNC_COMMIT:
            cursor.execute("SET LOCAL synchronous_commit = off")
        try:
            with (
                transaction.atomic(),
                connection.wrap_database_errors,
                cursor.copy(_COPY_SQL) as copy,
            ):
                copy.write(data)
        except IntegrityError:
            # A concurrent post of some of these samples committed first.
            return None
    return len(seq)


def _copy_data(*, node_id: int, columns: tuple[Sequence[Any], ...]) -> bytes:
    """The batch in PostgreSQL's binary COPY format."""
    seq, gpu, ts, util, mem, power, temp, ecc, xid, missing = columns
    # PostgreSQL's to_timestamp(): rint((seconds - epoch) * 1e6), half to even like round().
    micros = [round((t - _PG_EPOCH) * 1e6) for t in ts]
    pack = _COPY_ROW.pack
    rows = [
        pack(11, 8, node_id, 8, q, 2, g, 8, t, 8, u, 4, m, 8, p, 8, c, 4, e, 4, x, 1, b)
        for q, g, t, u, m, p, c, e, x, b in zip(
            seq, gpu, micros, util, mem, power, temp, ecc, xid, missing, strict=True
        )
    ]
    return b"".join([_COPY_HEADER, *rows, _COPY_TRAILER])


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
            errors={"samples": errors},  # per sample, per field
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
    ts: Any = sample.get("ts")
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
