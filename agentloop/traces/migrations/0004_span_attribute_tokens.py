"""Index attribute values for `attr=key=value` filters (agentloop/traces/attribute_index.py).

Adds Span.attribute_tokens, then builds the index. PostgreSQL: fill the column
for the spans already stored, then a GIN index on it. SQLite: an FTS5 table and
its triggers, which the indexer (`manage.py index_attributes`) fills, the spans
already stored first.
"""

import json

from django.db import migrations, models

from agentloop.traces import attribute_index

BACKFILL_CHUNK = 2000


def fill_tokens(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite's indexer hashes attributes into its own table
    # Raw reads and writes in chunks by id: a million spans must not be loaded
    # into model instances at once (nor need a save() each).
    connection = schema_editor.connection
    table = schema_editor.quote_name("traces_span")
    last_id = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT id, attributes FROM {table} WHERE id > %s ORDER BY id LIMIT %s",
                [last_id, BACKFILL_CHUNK],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            updates = []
            for span_id, attributes in rows:
                if isinstance(attributes, str | bytes):
                    attributes = json.loads(attributes)
                updates.append((attribute_index.attribute_tokens(attributes), span_id))
            cursor.executemany(f"UPDATE {table} SET attribute_tokens = %s WHERE id = %s", updates)
            last_id = rows[-1][0]


def install_index(apps, schema_editor):
    attribute_index.install(schema_editor)


def uninstall_index(apps, schema_editor):
    attribute_index.uninstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0003_page_order_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="span",
            name="attribute_tokens",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(fill_tokens, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(install_index, uninstall_index),
    ]
