"""Spans stored before membership filters (`attr=tag.tags=x`) lack the marker
token of a list longer than the positions the attribute index covers
(attribute_index.MAX_LIST_ITEMS): find those spans and index them again.

SQLite: they go into the changed-spans queue, which filters read directly and
the indexer hashes again (with the code of the day, as it hashes every span).
PostgreSQL: the marker tokens are added to their attribute_tokens here, in
batches (their other tokens were right already). Spans without such a list are
untouched.
"""

import zlib

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


def _markers(key, value, found):
    """The marker tokens of the long lists in `value` at dotted `key`, walked as
    attribute_index._add_tokens walked them when this was written: objects by
    key, lists by their first LONGER_THAN items; a marker is the crc32 of
    "<key>\0l\0" (attribute_index._long_list_token then)."""
    if isinstance(value, dict):
        for sub_key, item in value.items():
            _markers(f"{key}.{sub_key}" if key else sub_key, item, found)
    elif isinstance(value, list):
        if len(value) > LONGER_THAN:
            found.append(zlib.crc32(f"{key}\x00l\x00".encode("utf-8", "surrogatepass")))
        for position, item in enumerate(value[:LONGER_THAN]):
            _markers(f"{key}.{position}", item, found)


def retokenise(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(SQLITE_QUEUE)
        return
    Span = apps.get_model("traces", "Span")
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(POSTGRESQL_FIND, [last])
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return
        rows = Span.objects.filter(id__in=ids).values_list("id", "attributes", "attribute_tokens")
        for span_id, attributes, tokens in rows:
            markers = []
            _markers("", attributes, markers)
            have = set(tokens.split())
            added = [str(m) for m in markers if str(m) not in have]
            if added:
                new_tokens = " ".join([*tokens.split(), *added])
                Span.objects.filter(id=span_id).update(attribute_tokens=new_tokens)
        last = ids[-1]


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0004_eval_rollups"),
    ]

    operations = [
        migrations.RunPython(retokenise, migrations.RunPython.noop),
    ]
