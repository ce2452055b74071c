"""An index of span attribute values, so `attr=key=value` need not read every span.

Attributes are JSON, which neither database indexes usefully for equality on
an arbitrary key. So each span also gets `attribute_tokens`: one small number
per short attribute value, a hash of (dotted key, value), and the database
indexes those numbers.

- PostgreSQL: ingest fills the column as it stores the spans, and a GIN index on
  `string_to_array(attribute_tokens, ' ')` keeps up by itself (its planner,
  with statistics of the tokens, decides when to use it).
- SQLite: an FTS5 table (`traces_span_attribute_index`, an inverted index)
  holding each indexed span's tokens; the column stays "". Filling it at
  ingest cost more than ingest's 10,000 spans/s target allows (hashing
  ~10-17 µs and an insert trigger ~22-70 µs a span; docs/benchmarks.md), so
  the indexer (`manage.py index_attributes --follow`, which `serve` runs
  beside the worker) hashes new spans moments later, in its own process, and
  moves a mark (`indexed_through`). Spans past the mark, and spans changed
  since they were indexed (queued by a trigger), are read directly: answers
  are exact at once, and fast once the indexer has caught up.

The tokens only narrow the search: the query keeps the exact JSON comparison
(`queries._attr_q`), so a hash collision costs a few extra rows read, never a
wrong answer. What the index must guarantee is the other direction: every
span the JSON comparison matches carries one of the query's tokens. Hence:

- A span's tokens are computed from its attributes as stored, flattened to
  dotted keys: {"llm": {"model_name": "x"}} and {"llm.model_name": "x"} both
  give the token of ("llm.model_name", "x"), as `_attr_q` matches both. List
  items are keys too ("tag.tags.0"), for the first MAX_LIST_ITEMS of a list.
  A filter by membership (`attr=tag.tags=x` finds ["y", "x"]) asks for the
  item's token at each of those positions; a longer list also gets a marker
  token of its key, which the membership query asks for too, so a span with
  "x" at position 40 is read and checked rather than missed.
- Values are typed the way JSON equality treats them: strings by their text,
  numbers by their value (1 and 1.0 alike). On SQLite, Django's JSON equality
  also takes the text "true" for true (and "null" for null, and an object's
  compact JSON text for the object), and the boolean true for the number 1;
  the tokens cover those matches too, and PostgreSQL's stricter comparison
  drops them again.
- Strings longer than MAX_TEXT (prompts, outputs) get no token. A query the
  index cannot answer completely (such a string, a list position beyond
  MAX_LIST_ITEMS) returns None from `filter_tokens`, and the caller scans.
"""

from __future__ import annotations

import json
import zlib

from django.db import connection, transaction
from django.db.models import BooleanField, F, Func, Q

MAX_TEXT = 256  # longer strings are not indexed
MAX_LIST_ITEMS = 16  # items of a list indexed by position
SQLITE_TABLE = "traces_span_attribute_index"
# On SQLite the index is used when it names at most this many spans; a more
# common value finds a page faster by walking the newest spans (as it did
# before the index), and reading a long posting list would cost more.
SQLITE_MOST_CANDIDATES = 5000
# ... and when the spans the indexer has not reached yet, which are read one by
# one, are at most this many (two seconds of ingest at its target rate).
SQLITE_MOST_UNINDEXED = 20_000

_STRING, _NUMBER, _LONG_LIST = "s", "n", "l"
# crc32 of (key, type), the seed of each value's hash: keys repeat across spans,
# so each value costs one crc32 of its own bytes. 32 bits are plenty for a
# prefilter: two values share a token about once in four billion pairs, and
# the exact comparison after it drops the extra rows.
# One cache per kind, keyed by the key alone: no tuple to build and hash per value.
_seeds: dict[str, dict[str, int]] = {_STRING: {}, _NUMBER: {}, _LONG_LIST: {}}


def _seed(key: str, kind: str) -> int:
    seeds = _seeds[kind]
    seed = seeds.get(key)
    if seed is None:
        if len(seeds) > 100_000:  # keys are few in practice; never grow without bound
            seeds.clear()
        seed = seeds[key] = zlib.crc32(f"{key}\x00{kind}\x00".encode("utf-8", "surrogatepass"))
    return seed


def _text_token(key: str, text: str) -> int:
    # PostgreSQL stores NUL as U+FFFD (ingest._without_nul); hash it as that on
    # both databases, so a value and its stored form get one token.
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return zlib.crc32(text.encode("utf-8", "surrogatepass"), _seed(key, _STRING))


def _number_text(number: int | float) -> str:
    """A number's text, equal for equal values: 2, 2.0 and 2e0 give "2"."""
    if type(number) is float and number.is_integer():
        return str(int(number))
    return repr(number) if type(number) is float else str(number)


def _number_token(key: str, number: int | float) -> int:
    return zlib.crc32(_number_text(number).encode(), _seed(key, _NUMBER))


def _long_list_token(key: str) -> int:
    """The marker of a list at `key` with more than MAX_LIST_ITEMS items."""
    return _seed(key, _LONG_LIST)


def _add_tokens(key: str, value, tokens: list[int]) -> None:
    kind = type(value)
    if kind is str:
        if len(value) <= MAX_TEXT:
            tokens.append(_text_token(key, value))
    elif kind is int:
        tokens.append(_number_token(key, value))
    elif kind is float:
        if value == value and value not in (float("inf"), float("-inf")):
            tokens.append(_number_token(key, value))
    elif kind is bool or value is None:
        # SQLite's JSON equality (Django's) compares true, false and null as
        # the text "true", "false", "null".
        tokens.append(_text_token(key, _JSON_WORDS[value]))
    elif kind is dict or kind is list:
        # ... and an object or a list as its compact JSON text.
        text = _compact_json(value)
        if len(text) <= MAX_TEXT:
            tokens.append(_text_token(key, text))
        if kind is list and len(value) > MAX_LIST_ITEMS:
            tokens.append(_long_list_token(key))
        items = value.items() if kind is dict else enumerate(value[:MAX_LIST_ITEMS])
        for sub_key, item in items:
            _add_tokens(f"{key}.{sub_key}", item, tokens)


_JSON_WORDS = {True: "true", False: "false", None: "null"}
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def attribute_tokens(attributes) -> str:
    """The tokens of a span's attributes, as stored in `Span.attribute_tokens`."""
    if not isinstance(attributes, dict):
        return ""
    tokens: list[int] = []
    append = tokens.append
    crc32 = zlib.crc32
    string_seeds = _seeds[_STRING]
    number_seeds = _seeds[_NUMBER]
    for key, value in attributes.items():
        # The commonest cases (a short string or an int at the top level) are
        # _text_token and _number_token inlined: this runs for every attribute
        # of every span ingested on PostgreSQL, and the calls were a third of it.
        kind = type(value)
        if kind is str:
            if len(value) <= MAX_TEXT:
                seed = string_seeds.get(key)
                if seed is None:
                    seed = _seed(key, _STRING)
                if "\x00" in value:
                    value = value.replace("\x00", "\ufffd")
                append(crc32(value.encode("utf-8", "surrogatepass"), seed))
        elif kind is int:
            seed = number_seeds.get(key)
            if seed is None:
                seed = _seed(key, _NUMBER)
            append(crc32(str(value).encode(), seed))
        else:
            _add_tokens(key, value, tokens)
    return " ".join(map(str, tokens))


def _covered_key(key: str) -> bool:
    """Whether every JSON path `queries._key_paths(key)` may read has tokens.

    A part that reads as a whole number may be a list position; only the
    first MAX_LIST_ITEMS positions, written plainly, are indexed."""
    for part in key.split("."):
        try:
            position = int(part)
        except ValueError:
            continue
        if part != str(position) or not 0 <= position < MAX_LIST_ITEMS:
            return False
    return True


def filter_tokens(key: str, candidates: list) -> list[str] | None:
    """The tokens one of which every span matching `attr=key=…` carries.

    `candidates` are the JSON values the filter compares with
    (`queries._json_candidates`). None when the index cannot answer: the
    caller then reads the spans themselves.
    """
    if not _covered_key(key):
        return None
    if any(isinstance(c, str) and len(c) > MAX_TEXT for c in candidates):
        return None
    tokens = {_long_list_token(key)}  # a list too long to index by position
    for candidate in candidates:
        _candidate_tokens(key, candidate, tokens)
        # ... and the value as an item of a list at `key` (queries._attr_q).
        for position in range(MAX_LIST_ITEMS):
            _candidate_tokens(f"{key}.{position}", candidate, tokens)
    return sorted(str(token) for token in tokens)


def _candidate_tokens(key: str, candidate, tokens: set[int]) -> None:
    if isinstance(candidate, str):
        tokens.add(_text_token(key, candidate))
    elif isinstance(candidate, bool):
        tokens.add(_text_token(key, _JSON_WORDS[candidate]))
        tokens.add(_number_token(key, int(candidate)))
    else:
        tokens.add(_number_token(key, candidate))


class _TokensOverlap(Func):
    """PostgreSQL: the span has one of `tokens` (the GIN index's expression)."""

    output_field = BooleanField()

    def __init__(self, tokens: list[str]):
        super().__init__(F("attribute_tokens"))
        self.tokens = tokens

    def as_sql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        return f"string_to_array({column}, ' ') && %s::text[]", (*params, self.tokens)


def _match_expression(tokens: list[str]) -> str:
    return " OR ".join(f'"{token}"' for token in tokens)


def _sqlite_candidates(tokens: list[str], most: int) -> list[int] | None:
    """The ids of the indexed spans (of every project) carrying one of
    `tokens`; None when there are more than `most`."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH %s LIMIT %s",
            [_match_expression(tokens), most + 1],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return None if len(ids) > most else ids


def narrowing(tokens: list[str]) -> Q | None:
    """A condition on spans that keeps every span carrying one of `tokens`,
    and that the database answers from the index; None where walking the
    spans newest first is the faster plan (a common value on SQLite, or an
    indexer far behind)."""
    if connection.vendor == "postgresql":
        # The planner weighs the GIN index against the page-order indexes
        # with its own statistics of the tokens.
        return Q(_TokensOverlap(tokens))
    # SQLite: the ids themselves, not a subquery (queries.filter_spans says
    # why), and every span the indexer has not reached yet: past its mark, or
    # changed since it was indexed.
    through, last = _sqlite_mark_and_last_span_id()
    if last - through > SQLITE_MOST_UNINDEXED:
        return None  # reading those one by one would cost more than walking
    changed = _sqlite_changed_ids(SQLITE_MOST_UNINDEXED)
    if changed is None:
        return None
    ids = _sqlite_candidates(tokens, SQLITE_MOST_CANDIDATES)
    if ids is None:
        return None
    return Q(id__in=[*ids, *changed]) | Q(id__gt=through)


def _sqlite_mark_and_last_span_id() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT indexed_through FROM {PROGRESS_TABLE}), "
            "(SELECT max(id) FROM traces_span)"
        )
        through, last = cursor.fetchone()
    return through or 0, last or 0


def _sqlite_changed_ids(most: int) -> list[int] | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT span_id FROM {CHANGED_TABLE} LIMIT %s", [most + 1])
        ids = [row[0] for row in cursor.fetchall()]
    return None if len(ids) > most else ids


def tokens_at_ingest() -> bool:
    """Whether ingest fills attribute_tokens and the database indexes them as
    they are stored (PostgreSQL), or the indexer does it later (SQLite)."""
    return connection.vendor == "postgresql"


# -- the SQLite indexer -----------------------------------------------------------

PROGRESS_TABLE = "traces_span_attribute_index_progress"
CHANGED_TABLE = "traces_span_attribute_index_changed"


def indexed_through() -> int:
    """SQLite: the highest span id the indexer has reached; later spans are not
    in the index yet. SQLite assigns ids in commit order (one writer at a
    time, and AUTOINCREMENT never reuses one), so no earlier span can appear
    after the indexer has passed."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT indexed_through FROM {PROGRESS_TABLE}")
        row = cursor.fetchone()
    return row[0] if row else 0


def _hash_rows(rows) -> list[tuple[int, str]]:
    """(id, tokens) of the rows' spans that have any; rows are (id, attributes JSON)."""
    hashed = []
    for span_id, attributes in rows:
        tokens = attribute_tokens(json.loads(attributes) if attributes else {})
        if tokens:
            hashed.append((span_id, tokens))
    return hashed


def _add_to_index(cursor, hashed: list[tuple[int, str]]) -> None:
    cursor.executemany(
        f"INSERT INTO {SQLITE_TABLE}(rowid, attribute_tokens) VALUES (%s, %s)", hashed
    )


def index_new_spans(limit: int = 2000) -> int:
    """SQLite: add up to `limit` spans to the index; how many it handled.

    New spans past the mark first, then spans whose attributes changed after
    they were indexed. It reads and hashes outside the write transaction, so
    it holds SQLite's one writer lock only for the index writes. On
    PostgreSQL there is nothing to do.
    """
    if tokens_at_ingest():
        return 0
    start = indexed_through()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, attributes FROM traces_span WHERE id > %s ORDER BY id LIMIT %s",
            [start, limit],
        )
        rows = cursor.fetchall()
    if rows:
        hashed = _hash_rows(rows)
        with transaction.atomic(), connection.cursor() as cursor:
            # One indexer moves the mark: a second one, started by mistake,
            # finds it moved and leaves (its UPDATE waited for the first's commit).
            cursor.execute(
                f"UPDATE {PROGRESS_TABLE} SET indexed_through = %s WHERE indexed_through = %s",
                [rows[-1][0], start],
            )
            if cursor.rowcount != 1:
                return 0
            _add_to_index(cursor, hashed)
        return len(rows)
    return _reindex_changed_spans(limit)


def _reindex_changed_spans(limit: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.span_id, c.version, s.attributes FROM {CHANGED_TABLE} c "
            "LEFT JOIN traces_span s ON s.id = c.span_id ORDER BY c.span_id LIMIT %s",
            [limit],
        )
        rows = cursor.fetchall()
    if not rows:
        return 0
    hashed = _hash_rows((span_id, attributes) for span_id, _, attributes in rows)
    with transaction.atomic(), connection.cursor() as cursor:
        # A span changed again since the read keeps its (higher) version: the
        # next pass indexes it again.
        cursor.executemany(
            f"DELETE FROM {CHANGED_TABLE} WHERE span_id = %s AND version = %s",
            [(span_id, version) for span_id, version, _ in rows],
        )
        cursor.executemany(
            f"DELETE FROM {SQLITE_TABLE} WHERE rowid = %s", [(row[0],) for row in rows]
        )
        _add_to_index(cursor, [(span_id, tokens) for span_id, tokens in hashed])
    return len(rows)


# -- schema --------------------------------------------------------------------
# The FTS5 table, its progress mark, the changed-spans queue and the triggers
# (SQLite), and the GIN index (PostgreSQL), are created by migration
# traces/0002_attribute_index, which holds their SQL and why each is so.
