"""Spans stored before membership filters (`attr=tag.tags=x`) lack the marker
token of a list longer than the positions the attribute index covers
(attribute_index.MAX_LIST_ITEMS): find those spans and index them again.

SQLite: they go into the changed-spans queue, which filters read directly and
the indexer hashes again (with the code of the day, as it hashes every span).
PostgreSQL: their attribute_tokens are computed again here, with the
tokeniser ingest uses, in batches. Spans without such a list are untouched.
"""

from django.db import migrations

# Keep this in step with attribute_index.MAX_LIST_ITEMS (16 when written).
LONGER_THAN = 16
BATCH = 1000

SQLITE_QUEUE = f"""
INSERT INTO traces_span_attribute_index_changed (span_id)
SELECT s.id FROM traces_span s
WHERE s.id <= (SELECT indexed_through FROM traces_span_attribute_index_progress)
  AND s.attributes LIKE '%[%'
  AND EXISTS (SELECT 1 FROM json_tree(s.attributes) t
              WHERE t.type = 'array' AND json_array_length(t.value) > {LONGER_THAN})
ON CONFLICT (span_id) DO UPDATE SET version = version + 1
"""

POSTGRESQL_FIND = f"""
SELECT id FROM traces_span
WHERE id > %s AND jsonb_path_exists(
    attributes, 'strict $.** ? (@.type() == "array" && @.size() > {LONGER_THAN})')
ORDER BY id LIMIT {BATCH}
"""


def retokenise(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(SQLITE_QUEUE)
        return
    # The tokens must be exactly what ingest stores, so this uses its tokeniser.
    from agentloop.traces.attribute_index import attribute_tokens

    Span = apps.get_model("traces", "Span")
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(POSTGRESQL_FIND, [last])
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return
        for span_id, attributes in Span.objects.filter(id__in=ids).values_list("id", "attributes"):
            Span.objects.filter(id=span_id).update(attribute_tokens=attribute_tokens(attributes))
        last = ids[-1]


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0004_eval_rollups"),
    ]

    operations = [
        migrations.RunPython(retokenise, migrations.RunPython.noop),
    ]
