"""SQL expressions over spans that SQLite and PostgreSQL spell differently.

Each is a Django `Func` with one `as_sqlite` and one `as_postgresql`, so the
query layer (queries.py), the analytics (analytics.py) and metric triggers
(automations/metrics.py) read a JSON number, an attribute's value, a span's
exception type, a time bucket or a duration bin the same way on both.
"""

from __future__ import annotations

import json
import math

from django.db.models import BooleanField, Case, F, FloatField, Func, IntegerField, TextField, When

# Duration histogram: bin i holds durations in [GAMMA**i, GAMMA**(i+1)) microseconds,
# so any value read from a bin is within GAMMA - 1 (4 %) of every duration in it.
DURATION_GAMMA = 1.04
# Durations below one microsecond (zero, clock skew) share this bin.
ZERO_BIN = -1


def _sqlite_path(path: list[str]) -> str:
    # Every key quoted, so dots inside a key (`llm.cost.total`) are not path steps.
    return "$" + "".join("." + json.dumps(part) for part in path)


class JSONNumber(Func):
    """`json_field[key]` as a float where it is a JSON number; NULL otherwise.

    Strings, booleans, nulls and absent keys are NULL, so Sum and Count skip
    them (a bare cast would fail on PostgreSQL for "n/a" and count true as 1 on
    SQLite). The key is one key, dots and all (`llm.cost.total` is not a path).
    """

    output_field = FloatField()

    def __init__(self, json_field: str, key: str):
        super().__init__(F(json_field))
        self.key = key

    def as_sql(self, compiler, connection, **extra):
        raise NotImplementedError(f"JSONNumber has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        path = _sqlite_path([self.key])
        sql = (
            f"CASE WHEN json_type({column}, %s) IN ('integer', 'real') "
            f"THEN json_extract({column}, %s) END"
        )
        return sql, (*params, path, *params, path)

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"CASE WHEN jsonb_typeof({column} -> %s) = 'number' "
            f"THEN ({column} ->> %s)::double precision END"
        )
        return sql, (*params, self.key, *params, self.key)


class AttributeValue(Func):
    """The value of an attribute under the first of `paths` that has one, as JSON
    text ('"eu"', '42', 'true'), for grouping: one JSON parse per path on SQLite
    (the `->` operator, SQLite 3.38+), and the same text on both databases but
    for objects' spacing. A path is a list of keys (queries._key_paths gives the
    flat and nested spellings of a dotted key). Absent: NULL.
    """

    output_field = TextField()

    def __init__(self, paths: list[list[str]]):
        super().__init__(F("attributes"))
        self.paths = paths

    def as_sql(self, compiler, connection, **extra):
        raise NotImplementedError(f"AttributeValue has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra):
        column, column_params = compiler.compile(self.source_expressions[0])
        parts, params = [], []
        for path in self.paths:
            parts.append(f"({column} -> %s)")
            params += [*column_params, _sqlite_path(path)]
        return self._coalesce(parts), params

    def as_postgresql(self, compiler, connection, **extra):
        column, column_params = compiler.compile(self.source_expressions[0])
        parts, params = [], []
        for path in self.paths:
            if len(path) == 1:
                parts.append(f"(({column} -> %s)::text)")
                params += [*column_params, path[0]]
            else:
                parts.append(f"(({column} #> %s)::text)")
                params += [*column_params, path]
        return self._coalesce(parts), params

    @staticmethod
    def _coalesce(parts: list[str]) -> str:
        return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"


class ExceptionType(Func):
    """The `exception.type` of a span's first `exception` event (OTel semantic
    conventions; ingest keeps events as [{"name", "time", "attributes"}]); NULL
    when it has none. Spans without events, nearly all, skip the JSON walk."""

    output_field = TextField()

    def __init__(self):
        super().__init__(F("events"))

    def as_sql(self, compiler, connection, **extra):
        raise NotImplementedError(f"ExceptionType has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"CASE WHEN {column} <> '[]' THEN (SELECT json_extract(e.value, "
            "'$.attributes.\"exception.type\"') FROM json_each("
            f"{column}) AS e WHERE json_extract(e.value, '$.name') = 'exception' "
            "LIMIT 1) END"
        )
        return sql, (*params, *params)

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"CASE WHEN {column} <> '[]'::jsonb THEN (SELECT e -> 'attributes' ->> "
            f"'exception.type' FROM jsonb_array_elements({column}) AS e "
            "WHERE e ->> 'name' = 'exception' LIMIT 1) END"
        )
        return sql, (*params, *params)


class HasExceptionType(Func):
    """Whether a span has an `exception` event whose `exception.type` is `wanted`.

    PostgreSQL: jsonb containment. SQLite: a walk of the events of the spans
    that have any (the `<> '[]'` test skips the JSON parse for the others).
    """

    output_field = BooleanField()
    conditional = True

    def __init__(self, wanted: str):
        super().__init__(F("events"))
        self.wanted = wanted

    def as_sql(self, compiler, connection, **extra):
        raise NotImplementedError(f"HasExceptionType has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"({column} <> '[]' AND EXISTS (SELECT 1 FROM json_each({column}) AS e "
            "WHERE json_extract(e.value, '$.name') = 'exception' AND json_extract(e.value, "
            "'$.attributes.\"exception.type\"') = %s))"
        )
        return sql, (*params, *params, self.wanted)

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        pattern = json.dumps([{"name": "exception", "attributes": {"exception.type": self.wanted}}])
        return f"({column} @> %s::jsonb)", (*params, pattern)


class TimeBucket(Func):
    """Which `seconds`-wide bucket, counted from `origin` (a whole Unix second),
    a span's start falls in. Both databases floor the start to its second
    first, so the answer is exact (no floating point at bucket edges)."""

    output_field = IntegerField()

    def __init__(self, origin: int, seconds: int):
        super().__init__(F("start_time"))
        self.origin = int(origin)
        self.seconds = int(seconds)

    def as_sql(self, compiler, connection, **extra):
        raise NotImplementedError(f"TimeBucket has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        sql = f"((CAST(strftime('%%s', {column}) AS INTEGER) - %s) / %s)"
        return sql, (*params, self.origin, self.seconds)

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        sql = f"((floor(extract(epoch FROM {column}))::bigint - %s) / %s)"
        return sql, (*params, self.origin, self.seconds)


class DurationBin(Func):
    """The log-scale histogram bin of duration_ms (see DURATION_GAMMA)."""

    output_field = IntegerField()

    def __init__(self):
        super().__init__(F("duration_ms"))

    def as_sql(self, compiler, connection, **extra):
        raise NotImplementedError(f"DurationBin has no SQL for {connection.vendor}")

    def _sql(self, compiler, cast: str):
        column, params = compiler.compile(self.source_expressions[0])
        # duration_ms * 1000 >= 1 here, so the logarithm is >= 0 and a cast
        # that truncates is a floor.
        sql = (
            f"CASE WHEN {column} >= 0.001 THEN {cast.format(f'ln({column} * 1000.0) / %s')} "
            f"ELSE {ZERO_BIN} END"
        )
        return sql, (*params, *params, math.log(DURATION_GAMMA))

    def as_sqlite(self, compiler, connection, **extra):
        return self._sql(compiler, "CAST({} AS INTEGER)")

    def as_postgresql(self, compiler, connection, **extra):
        return self._sql(compiler, "floor({})::integer")


def bin_bounds(index: int) -> tuple[float, float]:
    """The [low, high) duration in ms that histogram bin `index` covers."""
    if index == ZERO_BIN:
        return 0.0, 0.001
    return DURATION_GAMMA**index / 1000.0, DURATION_GAMMA ** (index + 1) / 1000.0


COST_ATTRIBUTE = "llm.cost.total"  # OpenInference: a call's cost in USD, on LLM spans


def llm_cost():
    """A span's cost for sums: `llm.cost.total` of LLM spans only (a root span may
    carry its children's total too)."""
    return Case(
        When(kind="LLM", then=JSONNumber("attributes", COST_ATTRIBUTE)),
        output_field=FloatField(),
    )


class ListHas(Func):
    """Whether the attribute under one of `paths` is a JSON list holding one of
    `candidates` as an item (`attr=tag.tags=foo` finds ["foo", "bar"]).

    Items compare by type, as JSON equality does: the string "7" and the number
    7 are different items, and `queries._json_candidates` offers both. Only a
    list's own items count, not those of a list inside it. The array test comes
    first so that spans without a list there skip the walk.
    """

    output_field = BooleanField()
    conditional = True

    def __init__(self, paths: list[list[str]], candidates: list):
        super().__init__(F("attributes"))
        self.paths = paths
        self.candidates = candidates

    def as_sql(self, compiler, connection, **extra):
        raise NotImplementedError(f"ListHas has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra):
        column, column_params = compiler.compile(self.source_expressions[0])
        item_tests, item_params = [], []
        for candidate in self.candidates:
            if isinstance(candidate, bool):
                item_tests.append("e.type = %s")
                item_params.append("true" if candidate else "false")
            elif isinstance(candidate, str):
                item_tests.append("(e.type = 'text' AND e.value = %s)")
                item_params.append(candidate)
            else:
                item_tests.append("(e.type IN ('integer', 'real') AND e.value = %s)")
                item_params.append(candidate)
        items = " OR ".join(item_tests)
        parts, params = [], []
        for path in self.paths:
            sqlite_path = _sqlite_path(path)
            parts.append(
                f"(json_type({column}, %s) = 'array' AND EXISTS (SELECT 1 FROM "
                f"json_each({column}, %s) AS e WHERE {items}))"
            )
            params += [*column_params, sqlite_path, *column_params, sqlite_path, *item_params]
        return f"({' OR '.join(parts)})", params

    def as_postgresql(self, compiler, connection, **extra):
        column, column_params = compiler.compile(self.source_expressions[0])
        # jsonb containment of a one-item list: `["a", 7] @> ["a"]`, typed.
        wanted = [json.dumps([candidate]) for candidate in self.candidates]
        parts, params = [], []
        for path in self.paths:
            value = f"({column} #> %s)"
            tests = " OR ".join(f"{value} @> %s::jsonb" for _ in wanted)
            parts.append(f"(jsonb_typeof({value}) = 'array' AND ({tests}))")
            params += [*column_params, path]
            for item in wanted:
                params += [*column_params, path, item]
        return f"({' OR '.join(parts)})", params
