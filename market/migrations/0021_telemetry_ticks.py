# One row per tick (issue 15): a node's round of GPU samples sharing one
# timestamp, summed, so that metering reads 864,000 ticks a day instead of
# grouping 6.9 M samples (market/telemetry/metering.py). A trigger on the
# samples table adds every inserted sample to its tick in the same statement,
# whoever writes it (ingestion's binary COPY, its ON CONFLICT fallback, the
# ORM): a sample not inserted (re-sent) adds nothing, and a COPY rolled back
# takes its ticks with it. On PostgreSQL the trigger is per statement and
# reads the statement's inserted rows as a transition table (one grouped
# upsert per batch); SQLite's is per row. Existing samples are summed into
# ticks here, under the trigger's lock, so none is counted twice or missed.
# PostgreSQL partitions the ticks by day like the samples (the same days;
# market/telemetry/storage.py creates and drops them together).

import django.db.models.deletion
from django.db import migrations, models

SAMPLES = "market_telemetrysample"
TICKS = "market_telemetrytick"

# The sums of one tick, from samples (`src`); the same on both engines but the
# mask, which SQLite (no bit_or) sums over distinct powers of two.
_TICK_COLUMNS = "(node_id, ts, gpu_mask, samples, errs, util_sum, power_sum)"
_PG_SUMS = """
    node_id, ts, coalesce(bit_or(1::bigint << gpu_index) FILTER (WHERE NOT missing), 0),
    count(*), sum(xid_errors::bigint + ecc_errors), sum(utilisation), sum(power_w)
"""
PG_BUILD = f"""
INSERT INTO {TICKS} {_TICK_COLUMNS}
SELECT {_PG_SUMS} FROM {SAMPLES} GROUP BY node_id, ts
"""
PG_KEEP = f"""
CREATE FUNCTION {TICKS}_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {TICKS} AS t {_TICK_COLUMNS}
    SELECT {_PG_SUMS} FROM inserted GROUP BY node_id, ts
    ORDER BY node_id, ts  -- one lock order for two batches of one tick at once
    ON CONFLICT (node_id, ts) DO UPDATE SET
        gpu_mask = t.gpu_mask | excluded.gpu_mask, samples = t.samples + excluded.samples,
        errs = t.errs + excluded.errs, util_sum = t.util_sum + excluded.util_sum,
        power_sum = t.power_sum + excluded.power_sum;
    RETURN NULL;
END $$;
CREATE TRIGGER {TICKS}_add AFTER INSERT ON {SAMPLES}
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {TICKS}_add();
"""
PG_UNKEEP = f"""
DROP TRIGGER {TICKS}_add ON {SAMPLES};
DROP FUNCTION {TICKS}_add();
"""
# The tick partitions of the days the samples have, and a default one.
PG_PARTITIONS = f"""
CREATE TABLE {TICKS}_default PARTITION OF {TICKS} DEFAULT;
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT to_date(substring(c.relname FROM '_p(\\d{{8}})$'), 'YYYYMMDD')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = '{SAMPLES}'::regclass AND c.relname ~ '_p\\d{{8}}$'
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF {TICKS} FOR VALUES FROM (%L) TO (%L)',
            '{TICKS}_p' || to_char(day, 'YYYYMMDD'),
            day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
    END LOOP;
END $$;
"""
SQLITE_BUILD = f"""
INSERT INTO {TICKS} {_TICK_COLUMNS}
SELECT node_id, ts, coalesce(sum(DISTINCT CASE WHEN NOT missing THEN 1 << gpu_index END), 0),
       count(*), sum(xid_errors + ecc_errors), sum(utilisation), sum(power_w)
FROM {SAMPLES} GROUP BY node_id, ts
"""
SQLITE_KEEP = f"""
CREATE TRIGGER {TICKS}_add AFTER INSERT ON {SAMPLES}
BEGIN
    INSERT INTO {TICKS} {_TICK_COLUMNS}
    VALUES (NEW.node_id, NEW.ts, CASE WHEN NEW.missing THEN 0 ELSE 1 << NEW.gpu_index END, 1,
            NEW.xid_errors + NEW.ecc_errors, NEW.utilisation, NEW.power_w)
    ON CONFLICT (node_id, ts) DO UPDATE SET
        gpu_mask = gpu_mask | excluded.gpu_mask, samples = samples + 1,
        errs = errs + excluded.errs, util_sum = util_sum + excluded.util_sum,
        power_sum = power_sum + excluded.power_sum;
END
"""
SQLITE_UNKEEP = f"DROP TRIGGER {TICKS}_add"


def ticks_partition(apps, schema_editor):
    """PostgreSQL: the ticks table again, partitioned by day on `ts`."""
    if schema_editor.connection.vendor != "postgresql":
        return
    model = apps.get_model("market", "TelemetryTick")
    sql, params = schema_editor.table_sql(model)
    schema_editor.execute(f"DROP TABLE {TICKS}", None)
    schema_editor.execute(f"{sql} PARTITION BY RANGE (ts)", params or None)
    schema_editor.execute(PG_PARTITIONS, None)


def ticks_keep(apps, schema_editor):
    """The trigger first: it locks the samples against inserts until this
    migration commits, so the build below sums every sample exactly once."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_KEEP, None)
        schema_editor.execute(PG_BUILD, None)
        schema_editor.execute(f"ANALYZE {TICKS}", None)
    else:
        schema_editor.execute(SQLITE_KEEP, None)
        schema_editor.execute(SQLITE_BUILD, None)


def ticks_unkeep(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_UNKEEP, None)
    else:
        schema_editor.execute(SQLITE_UNKEEP, None)


class Migration(migrations.Migration):
    dependencies = [
        ("market", "0020_telemetry_partitions_rollups"),
    ]

    operations = [
        migrations.CreateModel(
            name="TelemetryTick",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "node",
                        "ts",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("ts", models.DateTimeField()),
                ("gpu_mask", models.BigIntegerField()),
                ("samples", models.PositiveIntegerField()),
                ("errs", models.BigIntegerField()),
                ("util_sum", models.FloatField()),
                ("power_sum", models.FloatField()),
                (
                    "node",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="market.node",
                    ),
                ),
            ],
        ),
        migrations.RunPython(ticks_partition, migrations.RunPython.noop),
        migrations.RunPython(ticks_keep, ticks_unkeep),
    ]
