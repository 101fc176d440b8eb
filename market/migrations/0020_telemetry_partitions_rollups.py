# Telemetry storage that lasts (issue 15): on PostgreSQL the raw samples table
# becomes a table partitioned by day on `ts` (its existing rows copied into one
# partition per day they cover, plus a DEFAULT partition for rows no daily
# partition takes), and the per-minute rollups are created partitioned by day
# on `minute`. market/telemetry/storage.py creates the days ahead and drops the
# ones past retention. A partitioned table's primary key must hold the
# partition key: the samples' key becomes (node_id, seq, ts) there (Django's
# state keeps (node, seq): nothing references the table, and the ORM writes it
# with ignore_conflicts only). SQLite keeps plain tables.

import django.db.models.deletion
from django.db import migrations, models

SAMPLES = "market_telemetrysample"
PARTITIONED_SAMPLES = f"""
ALTER TABLE {SAMPLES} RENAME TO {SAMPLES}_plain;
ALTER INDEX {SAMPLES}_pkey RENAME TO {SAMPLES}_plain_pkey;
ALTER INDEX telemetry_node_ts RENAME TO telemetry_node_ts_plain;
CREATE TABLE {SAMPLES} (LIKE {SAMPLES}_plain INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (ts);
ALTER TABLE {SAMPLES} ADD CONSTRAINT {SAMPLES}_pkey PRIMARY KEY (node_id, seq, ts);
CREATE INDEX telemetry_node_ts ON {SAMPLES} (node_id, ts);
CREATE INDEX telemetry_ts_brin ON {SAMPLES} USING brin (ts);
CREATE TABLE {SAMPLES}_default PARTITION OF {SAMPLES} DEFAULT;
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT generate_series(min((ts AT TIME ZONE 'UTC')::date),
                               max((ts AT TIME ZONE 'UTC')::date), interval '1 day')::date
        FROM {SAMPLES}_plain
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF {SAMPLES} FOR VALUES FROM (%L) TO (%L)',
            '{SAMPLES}_p' || to_char(day, 'YYYYMMDD'),
            day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
    END LOOP;
END $$;
INSERT INTO {SAMPLES} SELECT * FROM {SAMPLES}_plain;
DROP TABLE {SAMPLES}_plain;
ANALYZE {SAMPLES};
"""
PLAIN_SAMPLES = f"""
CREATE TABLE {SAMPLES}_plain (LIKE {SAMPLES} INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO {SAMPLES}_plain SELECT * FROM {SAMPLES};
DROP TABLE {SAMPLES};
ALTER TABLE {SAMPLES}_plain RENAME TO {SAMPLES};
ALTER TABLE {SAMPLES} ADD CONSTRAINT {SAMPLES}_pkey PRIMARY KEY (node_id, seq);
CREATE INDEX telemetry_node_ts ON {SAMPLES} (node_id, ts);
"""


def samples_partition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PARTITIONED_SAMPLES, None)


def samples_unpartition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PLAIN_SAMPLES, None)


def minutes_partition(apps, schema_editor):
    """PostgreSQL: the rollups table again, partitioned by day on `minute`."""
    if schema_editor.connection.vendor != "postgresql":
        return
    model = apps.get_model("market", "TelemetryMinute")
    table = model._meta.db_table
    sql, params = schema_editor.table_sql(model)
    schema_editor.execute(f"DROP TABLE {table}", None)
    schema_editor.execute(f"{sql} PARTITION BY RANGE (minute)", params or None)
    schema_editor.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT", None)


class Migration(migrations.Migration):
    dependencies = [
        ("market", "0019_forward_blocks_and_resale"),
    ]

    operations = [
        migrations.CreateModel(
            name="TelemetryRollupCursor",
            fields=[
                ("name", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("rolled_until", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="TelemetryMinute",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "node",
                        "minute",
                        "gpu_index",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("minute", models.DateTimeField()),
                ("gpu_index", models.PositiveSmallIntegerField()),
                ("samples", models.PositiveIntegerField()),
                ("utilisation_sum", models.FloatField()),
                ("power_w_sum", models.FloatField()),
                ("temperature_c_max", models.FloatField()),
                ("memory_used_mib_max", models.PositiveIntegerField()),
                ("ecc_errors_max", models.PositiveIntegerField()),
                ("xid_errors_max", models.PositiveIntegerField()),
                ("missing", models.PositiveIntegerField()),
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
        migrations.RunPython(minutes_partition, migrations.RunPython.noop),
        migrations.RunPython(samples_partition, samples_unpartition),
    ]
