"""PostgreSQL plumbing for bulk reads and writes.

Django's psycopg cursors bind parameters client side and load timestamptz
through a Python subclass of psycopg's loader: both cost more than the
matching itself at tens of thousands of values. Arrays therefore travel as
one text literal each, and bulk reads use psycopg's built-in loaders.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from django.core.exceptions import EmptyResultSet
from django.db import connection


def pg_array(values: Iterable) -> str:
    """A PostgreSQL array literal (cast it in SQL: `%s::bigint[]`) of ints,
    datetimes, strings or None."""
    values = list(values)
    if None not in values and values:
        if all(type(v) is int for v in values):
            return "{" + ",".join(map(str, values)) + "}"
        if all(type(v) is dt.datetime for v in values):
            return "{" + ",".join(map(dt.datetime.isoformat, values)) + "}"

    def item(value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(map(item, values)) + "}"


def pg_values(queryset, *fields: str) -> list[tuple]:
    """`queryset.values_list(*fields)` as plain tuples. On PostgreSQL, read
    with psycopg's own (C) loaders, without Django's per-value converters:
    JSON fields come back as text then (see `pg_json`)."""
    queryset = queryset.values_list(*fields)
    if connection.vendor != "postgresql":
        return list(queryset)
    from psycopg.types.datetime import TimestamptzLoader

    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. `id__in=[]`
        return []
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        return cursor.fetchall()


def pg_json(value):
    if value == "[]":
        return []
    return json.loads(value) if isinstance(value, str) else value
