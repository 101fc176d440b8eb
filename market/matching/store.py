"""The matching engine's database side: locks in one global order, the
re-check under the locks, and the bulk writes of leases, counters and events.
See market/matching.py for the concurrency argument."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection, transaction

from core.cache import generation_bump
from core.postgres import pg_array
from market.matching.book import OPEN_STATUSES, Fill, RoundResult, held_gpus
from market.models import Lease, LeaseEvent, Node, Offer, Order, OrderEvent
from market.models.capacity import BOARD_CACHE


def _lock(model, ids: Iterable[int], fields: list[str]) -> dict[int, tuple]:
    """Lock rows (FOR NO KEY UPDATE, primary-key order) and read `fields` under the lock."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    if connection.vendor == "postgresql":
        # one array parameter, not thousands of placeholders: psycopg parses every %s
        qn = connection.ops.quote_name
        columns = ", ".join(qn(model._meta.get_field(f).column) for f in ["id", *fields])
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM {qn(model._meta.db_table)} "  # noqa: S608 - model metadata
                "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE",
                [pg_array(ids)],
            )
            return {row[0]: row[1:] for row in cursor.fetchall()}
    rows = (
        model.objects.select_for_update(no_key=True)
        .filter(id__in=ids)
        .order_by("id")
        .values_list("id", *fields)
    )
    return {row[0]: row[1:] for row in rows}


def _bulk_add(model, column: str, deltas: dict[int, int]) -> None:
    """`column += delta` for many rows in one statement (PostgreSQL) or one
    prepared statement (SQLite); rows are already locked by the caller."""
    if not deltas:
        return
    table = model._meta.db_table
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {qn(table)} AS t SET {qn(column)} = t.{qn(column)} + v.d "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, d) WHERE t.id = v.id",
                [pg_array(deltas), pg_array(deltas.values())],
            )
        else:
            cursor.executemany(
                f"UPDATE {qn(table)} SET {qn(column)} = {qn(column)} + %s WHERE id = %s",  # noqa: S608
                [(d, pk) for pk, d in deltas.items()],
            )


def round_commit(
    fills: list[Fill], *, now: dt.datetime, result: RoundResult, since: dt.datetime | None = None
) -> list[int]:
    """Lock, re-check and write the planned fills. `since`: the fills start
    then, not now (a pre-emption's lease, at its notice's end), so a node's
    free GPUs are counted from then (market.matching.book.held_gpus)."""
    if not fills:
        return []
    by_order: dict[int, list[Fill]] = defaultdict(list)
    for fill in fills:
        by_order[fill.order.id].append(fill)
    with transaction.atomic():
        nodes = _lock(Node, (f.node_id for f in fills), ["state", "gpu_count"])
        held = held_gpus(list(nodes), since=since or now)
        node_free = {
            pk: (count - held.get(pk, 0)) if state == Node.State.ONLINE else 0
            for pk, (state, count) in nodes.items()
        }
        orders = _lock(Order, by_order, ["status", "gpu_count", "gpus_filled"])
        offers = _lock(
            Offer, (f.offer.id for f in fills), ["status", "gpus_available", "price_amount"]
        )
        offer_free = {
            pk: available if status == Offer.Status.ACTIVE else 0
            for pk, (status, available, _price) in offers.items()
        }
        rows: list[tuple] = []
        order_added: dict[int, int] = {}
        offer_taken: dict[int, int] = defaultdict(int)
        for order_id, order_fills in by_order.items():
            status, gpu_count, gpus_filled = orders[order_id]
            order = order_fills[0].order
            if status not in OPEN_STATUSES:
                result.conflicts += 1
                continue
            unfilled = gpu_count - gpus_filled
            accepted: list[tuple[Fill, int]] = []
            for fill in order_fills:
                if offers[fill.offer.id][2] != fill.offer.price:
                    continue  # the provider re-priced since the snapshot: re-plan next round
                # a resale's GPUs are held by its seller's lease, not free on the node
                resale = fill.offer.resale_of is not None
                room = offer_free[fill.offer.id]
                if not resale:
                    room = min(room, node_free[fill.node_id])
                elif nodes[fill.node_id][0] != Node.State.ONLINE:
                    room = 0
                gpus = min(fill.gpus, room, unfilled)
                if gpus <= 0:
                    continue
                offer_free[fill.offer.id] -= gpus
                if not resale:
                    node_free[fill.node_id] -= gpus
                unfilled -= gpus
                accepted.append((fill, gpus))
            got = sum(g for _f, g in accepted)
            if got < sum(f.gpus for f in order_fills):
                result.conflicts += 1
                if order.gang:
                    for fill, gpus in accepted:  # all or nothing: give the capacity back
                        offer_free[fill.offer.id] += gpus
                        if fill.offer.resale_of is None:
                            node_free[fill.node_id] += gpus
                    continue
            if not got:
                continue
            order_added[order_id] = got
            previous = order.previous_lease_id  # one-to-one: the first replacement points back
            for fill, gpus in accepted:
                offer_taken[fill.offer.id] += gpus
                rows.append(
                    (
                        order_id,
                        fill.offer.id,
                        fill.node_id,
                        order.buyer_id,
                        fill.offer.provider_id,
                        gpus,
                        fill.offer.price,
                        fill.offer.currency,
                        fill.starts_at,
                        fill.ends_at,
                        previous,
                        fill.offer.resale_of,
                    )
                )
                previous = None
        if not rows:
            return []
        lease_ids = _leases_insert(rows, now=now)
        _bulk_add(Offer, "gpus_available", {pk: -n for pk, n in offer_taken.items()})
        generation_bump(BOARD_CACHE)
        _order_progress(orders, order_added, now=now)
    result.orders_touched += len(order_added)
    result.leases_created += len(lease_ids)
    result.gpus_allocated += sum(order_added.values())
    result.lease_ids.extend(lease_ids)
    return lease_ids


_LEASE_COLUMNS = [  # a row's fields, in order, and their binary COPY types
    ("order_id", "int8"),
    ("offer_id", "int8"),
    ("node_id", "int8"),
    ("buyer_id", "int8"),
    ("provider_id", "int8"),
    ("gpu_count", "int4"),
    ("price_amount", "int8"),
    ("currency", "text"),
    ("starts_at", "timestamptz"),
    ("ends_at", "timestamptz"),
    ("previous_lease_id", "int8"),
    ("resold_from_id", "int8"),
]


def _leases_insert(rows: list[tuple], *, now: dt.datetime) -> list[int]:
    """Insert the leases and their `matched` events; returns the lease ids in row order."""
    if connection.vendor == "postgresql":
        return _leases_copy(rows, now=now)
    return _leases_create(rows, now=now)


def _leases_copy(rows: list[tuple], *, now: dt.datetime) -> list[int]:
    """PostgreSQL: the ids drawn from the lease sequence in one statement, then
    the leases and their events by binary COPY. A round writes thousands of
    rows: model instances, one placeholder per value, or arrays spelt out as
    text in an INSERT would cost more than the matching itself."""
    qn = connection.ops.quote_name
    lease_table = qn(Lease._meta.db_table)
    pending = Lease.Status.PENDING
    # wrap_database_errors: a COPY's errors surface as Django's, like execute's
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(seq) FROM CAST(pg_get_serial_sequence(%s, 'id') AS regclass) AS seq, "
            "generate_series(1, %s) ORDER BY 1",
            [Lease._meta.db_table, len(rows)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        names = ", ".join(qn(name) for name, _type in _LEASE_COLUMNS)
        with cursor.copy(
            f"COPY {lease_table} (id, {names}, status, created_at, rearm) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                [
                    "int8",
                    *(pg_type for _name, pg_type in _LEASE_COLUMNS),
                    "text",
                    "timestamptz",
                    "bool",
                ]
            )
            for pk, row in zip(ids, rows, strict=True):
                copy.write_row((pk, *row, pending, now, False))
        with cursor.copy(
            f"COPY {qn(LeaseEvent._meta.db_table)} (lease_id, from_status, to_status, reason, at) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "text", "text", "timestamptz"])
            for pk in ids:
                copy.write_row((pk, "", pending, "matched", now))
    return ids


def _leases_create(rows: list[tuple], *, now: dt.datetime) -> list[int]:
    """Any database: the same rows through the ORM (whose `auto_now_add` stamps
    `created_at` and `at` with the wall clock, not `now`)."""
    pending = Lease.Status.PENDING
    fields = [name for name, _type in _LEASE_COLUMNS]
    leases = Lease.objects.bulk_create(
        [Lease(status=pending, **dict(zip(fields, row, strict=True))) for row in rows]
    )
    LeaseEvent.objects.bulk_create(
        [
            LeaseEvent(lease_id=lease.pk, from_status="", to_status=pending, reason="matched")
            for lease in leases
        ]
    )
    return [lease.pk for lease in leases]


def _order_progress(orders: dict[int, tuple], added: dict[int, int], *, now: dt.datetime) -> None:
    """`gpus_filled += added`, the status move it implies and its event row, for
    every order at once. The rows are locked and their status was read under
    the lock, so the `status = old` guard of a transition always holds."""
    ids: list[int] = []
    deltas: list[int] = []
    olds: list[str] = []
    news: list[str] = []
    for order_id, n in added.items():
        status, gpu_count, gpus_filled = orders[order_id]
        full = gpus_filled + n == gpu_count
        ids.append(order_id)
        deltas.append(n)
        olds.append(status)
        news.append(Order.Status.FILLED if full else Order.Status.PARTIALLY_FILLED)
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        sql = (
            "WITH v AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) "  # noqa: S608 - model metadata
            "AS v(id, d, was, becomes)), "
            f"moved AS (UPDATE {qn(Order._meta.db_table)} AS t "
            "SET gpus_filled = t.gpus_filled + v.d, status = v.becomes "
            "FROM v WHERE t.id = v.id AND t.status = v.was RETURNING t.id) "
            f"INSERT INTO {qn(OrderEvent._meta.db_table)} "
            "(order_id, from_status, to_status, reason, at) "
            "SELECT v.id, v.was, v.becomes, 'matched', %s FROM v "
            "WHERE v.was <> v.becomes AND v.id IN (SELECT id FROM moved)"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                sql, [pg_array(ids), pg_array(deltas), pg_array(olds), pg_array(news), now]
            )
        return
    _bulk_add(Order, "gpus_filled", added)
    moves: dict[tuple[str, str], list[int]] = defaultdict(list)
    for order_id, old, new in zip(ids, olds, news, strict=True):
        if new != old:
            moves[(old, new)].append(order_id)
    for (old, new), move_ids in moves.items():
        Order.objects.filter(id__in=move_ids, status=old).update(status=new)
        OrderEvent.objects.bulk_create(
            OrderEvent(order_id=pk, from_status=old, to_status=new, reason="matched")
            for pk in move_ids
        )


# --- loading orders ------------------------------------------------------------------
