"""The attribute index's database objects (agentloop/traces/attribute_index.py says how it is used).

PostgreSQL: a GIN index over Span.attribute_tokens, which ingest fills.
SQLite: an FTS5 table that the indexer (`manage.py index_attributes`) fills,
its progress mark, the queue of changed spans, and the triggers that keep
indexed spans right when they change or go.

The FTS5 table keeps its own copy of each indexed span's tokens, so a span is
removed from it by id. The indexer adds spans as it moves the mark. Triggers
handle the rest for spans already indexed: a deleted span leaves the index, a
span whose attributes change (Span.save) is queued in the changed table and
read directly until the indexer has hashed it again. There is no insert
trigger: its mere presence, even never firing, made each ingested row cost
~22 µs more (SQLite then opens a statement journal per row).

The SQL is written out here, not imported from the app: a migration is a
record of what the schema was, and must not change when the code does.
"""

from django.db import migrations

SQLITE_INSTALL = [
    'CREATE TABLE traces_span_attribute_index_progress (indexed_through INTEGER NOT NULL)',
    'INSERT INTO traces_span_attribute_index_progress (indexed_through) VALUES (0)',
    'CREATE TABLE traces_span_attribute_index_changed (span_id INTEGER PRIMARY KEY, version INTEGER NOT NULL DEFAULT 1)',
    'CREATE VIRTUAL TABLE traces_span_attribute_index USING fts5(attribute_tokens, columnsize=0, detail=none)',
    'CREATE TRIGGER traces_span_attribute_index_delete AFTER DELETE ON traces_span WHEN old.id <= (SELECT indexed_through FROM traces_span_attribute_index_progress) BEGIN DELETE FROM traces_span_attribute_index WHERE rowid = old.id; DELETE FROM traces_span_attribute_index_changed WHERE span_id = old.id; END',
    'CREATE TRIGGER traces_span_attribute_index_update AFTER UPDATE OF attributes ON traces_span WHEN old.id <= (SELECT indexed_through FROM traces_span_attribute_index_progress) BEGIN INSERT INTO traces_span_attribute_index_changed (span_id) VALUES (old.id) ON CONFLICT (span_id) DO UPDATE SET version = version + 1; END',
]
SQLITE_UNINSTALL = [
    'DROP TRIGGER IF EXISTS traces_span_attribute_index_delete',
    'DROP TRIGGER IF EXISTS traces_span_attribute_index_update',
    'DROP TABLE IF EXISTS traces_span_attribute_index',
    'DROP TABLE IF EXISTS traces_span_attribute_index_changed',
    'DROP TABLE IF EXISTS traces_span_attribute_index_progress',
]
POSTGRESQL_INSTALL = [
    "CREATE INDEX span_attribute_tokens ON traces_span USING gin (string_to_array(attribute_tokens, ' '))",
]
POSTGRESQL_UNINSTALL = [
    'DROP INDEX IF EXISTS span_attribute_tokens',
]


def _execute(schema_editor, postgresql, sqlite):
    statements = postgresql if schema_editor.connection.vendor == "postgresql" else sqlite
    for sql in statements:
        schema_editor.execute(sql)


def install(apps, schema_editor):
    _execute(schema_editor, POSTGRESQL_INSTALL, SQLITE_INSTALL)


def uninstall(apps, schema_editor):
    _execute(schema_editor, POSTGRESQL_UNINSTALL, SQLITE_UNINSTALL)


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]
