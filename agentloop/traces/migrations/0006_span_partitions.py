"""PostgreSQL: partition the spans table by week of start_time (agentloop/traces/partitions.py
says why and how it is used). SQLite: nothing changes but the annotation's foreign key.

Forwards, an existing table is copied into the partitioned one (ids, columns,
defaults, indexes and foreign keys kept; a partition for every week with spans
in the last five years and for this week and the four ahead, a default
partition for the rest), then swapped in. It holds an exclusive lock on the
spans for the whole copy and needs the table's size again on disk: on a large
install, plan the upgrade for a quiet hour. Backwards makes one plain table
again the same way.

SpanAnnotation.span loses its database constraint on both databases (one
model for both): PostgreSQL cannot reference spans by id alone once the key
includes start_time. The app keeps the integrity (partitions.py says where).

The SQL is written out here, not imported from the app: a migration is a
record of what the schema was, and must not change when the code does.
"""

from datetime import UTC, datetime, timedelta

import django.db.models.deletion
from django.db import migrations, models

TABLE = "traces_span"
WEEK = timedelta(weeks=1)
AHEAD = 4
BACK = 260  # weeks: older spans (a zero timestamp, say) go to the default partition


def _week_start(moment):
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _is_partitioned(cursor):
    cursor.execute(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
        [TABLE],
    )
    return cursor.fetchone() is not None


def _rebuild(cursor, partitioned):
    """Copy traces_span into a new table of the other layout and swap it in."""
    # The indexes that back no constraint (the explorer's, the attribute
    # tokens' GIN, the project foreign key's), to be made again on the new table.
    cursor.execute(
        "SELECT i.indexdef FROM pg_indexes i WHERE i.tablename = %s "
        "AND i.schemaname = current_schema() AND NOT EXISTS ("
        "SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname "
        "AND c.connamespace = current_schema()::regnamespace) ORDER BY i.indexname",
        [TABLE],
    )
    # A partitioned table's index reads back as "ON ONLY" (it would cover no partition).
    indexes = [row[0].replace(" ON ONLY ", " ON ", 1) for row in cursor.fetchall()]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [TABLE],
    )
    foreign_keys = cursor.fetchall()
    new = f"{TABLE}_rebuilt"
    layout = " PARTITION BY RANGE (start_time)" if partitioned else ""
    cursor.execute(
        f"CREATE TABLE {new} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING IDENTITY){layout}"
    )
    if partitioned:
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {new} DEFAULT")
        now = datetime.now(UTC)
        cursor.execute(
            f"SELECT DISTINCT date_trunc('week', start_time AT TIME ZONE 'UTC') FROM {TABLE} "
            "WHERE start_time >= %s",
            [_week_start(now) - BACK * WEEK],
        )
        weeks = {row[0].replace(tzinfo=UTC) for row in cursor.fetchall()}
        weeks |= {_week_start(now) + i * WEEK for i in range(AHEAD + 1)}
        for start in sorted(weeks):
            cursor.execute(
                f"CREATE TABLE {TABLE}_p{start:%Y%m%d} PARTITION OF {new} "
                "FOR VALUES FROM (%s) TO (%s)",
                [start, start + WEEK],
            )
    cursor.execute(f"INSERT INTO {new} SELECT * FROM {TABLE}")
    # No table with foreign key checks still pending can be dropped (deferred
    # checks of rows written earlier in the same transaction, as in tests).
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(f"DROP TABLE {TABLE}")
    cursor.execute(f"ALTER TABLE {new} RENAME TO {TABLE}")
    cursor.execute(f"ALTER SEQUENCE IF EXISTS {new}_id_seq RENAME TO {TABLE}_id_seq")
    # PostgreSQL requires the partition key in the primary key and in every
    # unique constraint of a partitioned table.
    key = "id, start_time" if partitioned else "id"
    unique = "project_id, trace_id, span_id" + (", start_time" if partitioned else "")
    cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY ({key})")
    cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT span_unique_in_project UNIQUE ({unique})")
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
    for sql in indexes:
        cursor.execute(sql)
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), "
        f"coalesce((SELECT max(id) FROM {TABLE}), 0) + 1, false)"
    )
    cursor.execute(f"ANALYZE {TABLE}")


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if not _is_partitioned(cursor):
            _rebuild(cursor, partitioned=True)


def unpartition(apps, schema_editor):
    # Fails if two spans share project, trace and span id with different
    # starts, which only the partitioned table allows.
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if _is_partitioned(cursor):
            _rebuild(cursor, partitioned=False)


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0005_long_list_tokens"),
    ]

    operations = [
        migrations.AlterField(
            model_name="spanannotation",
            name="span",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="annotations",
                to="traces.span",
            ),
        ),
        migrations.RunPython(partition, unpartition),
    ]
