"""The trace store: traces, spans with OpenInference attributes, and eval labels.

Span keeps every attribute as JSON and promotes the ones we filter and sum on
(kind, status, times, model, tokens, session, user) to indexed columns.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from agentloop.teams.models import Project
from agentloop.traces.attribute_index import attribute_tokens, tokens_at_ingest


class SpanKind(models.TextChoices):
    # OpenInference span kinds (attribute `openinference.span.kind`).
    LLM = "LLM"
    CHAIN = "CHAIN"
    TOOL = "TOOL"
    AGENT = "AGENT"
    RETRIEVER = "RETRIEVER"
    EMBEDDING = "EMBEDDING"
    RERANKER = "RERANKER"
    GUARDRAIL = "GUARDRAIL"
    EVALUATOR = "EVALUATOR"
    UNKNOWN = "UNKNOWN"


class StatusCode(models.TextChoices):
    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"


class Trace(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="traces")
    trace_id = models.CharField(max_length=32, help_text="32 hex characters")
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "trace_id"], name="trace_unique_in_project")
        ]
        indexes = [models.Index(fields=["project", "-start_time"], name="trace_project_start")]

    def __str__(self) -> str:
        return self.trace_id

    @property
    def spans(self):
        return Span.objects.filter(project_id=self.project_id, trace_id=self.trace_id)

    @property
    def duration_ms(self) -> float:
        return (self.end_time - self.start_time).total_seconds() * 1000


class Span(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="spans")
    # The hex trace id; the Trace row is found by (project, trace_id). No foreign
    # key: ingest then needs no lookup of trace primary keys on its hot path.
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=500)
    kind = models.CharField(max_length=16, choices=SpanKind.choices, default=SpanKind.UNKNOWN)
    status_code = models.CharField(
        max_length=8, choices=StatusCode.choices, default=StatusCode.UNSET
    )
    status_message = models.TextField(blank=True, default="")
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    duration_ms = models.FloatField()
    attributes = models.JSONField(default=dict)
    events = models.JSONField(default=list)
    resource = models.JSONField(default=dict)
    model_name = models.CharField(max_length=200, blank=True, default="")
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    total_tokens = models.IntegerField(null=True, blank=True)
    session_id = models.CharField(max_length=200, blank=True, default="")
    user_id = models.CharField(max_length=200, blank=True, default="")
    # Hashes of the short attribute values, which PostgreSQL indexes for
    # `attr=key=value` filters (attribute_index.py); every writer fills it there,
    # save() does. SQLite leaves it empty: its indexer keeps the hashes in an
    # FTS5 table, with triggers on this table that a migration remaking the
    # table must install again.
    attribute_tokens = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Its index also serves lookups by (project, trace_id): a separate
            # index on those two would only slow ingest down. On PostgreSQL the
            # database's constraint also holds start_time, the partition key
            # (migration 0004, traces/partitions.py).
            models.UniqueConstraint(
                fields=["project", "trace_id", "span_id"], name="span_unique_in_project"
            )
        ]
        indexes = [
            # The explorer lists newest first, filtered by one column at a time.
            # Each index ends in the page order (-start_time, -id), so a filtered
            # page is an index range scan even where the planner has no statistics.
            models.Index(fields=["project", "-start_time", "-id"], name="span_project_start"),
            models.Index(
                fields=["project", "kind", "-start_time", "-id"], name="span_project_kind"
            ),
            models.Index(
                fields=["project", "status_code", "-start_time", "-id"],
                name="span_project_status",
            ),
            models.Index(
                fields=["project", "name", "-start_time", "-id"], name="span_project_name"
            ),
            models.Index(
                fields=["project", "session_id", "-start_time", "-id"],
                name="span_project_session",
            ),
            models.Index(
                fields=["project", "user_id", "-start_time", "-id"], name="span_project_user"
            ),
            models.Index(
                fields=["project", "-start_time", "-id"],
                name="span_project_roots",
                condition=models.Q(parent_span_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.span_id})"

    def save(self, *args, **kwargs):
        self.index_attributes()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "attributes" in update_fields:
            kwargs["update_fields"] = {*update_fields, "attribute_tokens"}
        super().save(*args, **kwargs)

    def index_attributes(self) -> None:
        """Fill attribute_tokens from attributes where the database indexes them
        as they are written (PostgreSQL); bulk writers call it themselves."""
        self.attribute_tokens = attribute_tokens(self.attributes) if tokens_at_ingest() else ""

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id

    @property
    def input_value(self):
        return self.attributes.get("input.value")

    @property
    def output_value(self):
        return self.attributes.get("output.value")


class AnnotatorKind(models.TextChoices):
    HUMAN = "HUMAN"
    LLM = "LLM"
    CODE = "CODE"
    AGENT = "AGENT"


class SpanAnnotation(models.Model):
    """An eval label on a span: unique per (span, name, identifier)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotations")
    # No constraint in the database: on PostgreSQL spans are partitioned by
    # start_time, and a partitioned table's key must include it, so nothing can
    # reference a span by id alone (traces/partitions.py). The app keeps the
    # integrity: annotations.py writes labels for a span it has read, and every
    # deleter of spans removes their annotations first.
    span = models.ForeignKey(
        Span, on_delete=models.CASCADE, related_name="annotations", db_constraint=False
    )
    name = models.CharField(max_length=200)
    label = models.CharField(max_length=200, blank=True, default="")
    score = models.FloatField(null=True, blank=True)
    explanation = models.TextField(blank=True, default="")
    annotator_kind = models.CharField(max_length=8, choices=AnnotatorKind.choices)
    identifier = models.CharField(
        max_length=200, blank=True, default="", help_text="Tells apart several labels of one name."
    )
    provenance = models.JSONField(
        default=dict, blank=True, help_text="Where the label came from, e.g. {'run': code}."
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["span", "name", "identifier"], name="annotation_unique_per_span"
            )
        ]
        indexes = [
            models.Index(fields=["project", "name", "label"], name="annotation_project_label"),
            # Rollups look up the annotations changed since they last looked.
            models.Index(fields=["project", "updated_at"], name="annotation_project_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.label or self.score}"


class RollupCell(models.Model):
    """What the spans of one interval add up to (the columns SpanRollup and
    EvalRollup share): spans, errors, tokens, cost, distinct traces and the
    duration histogram, as JSON [[bin, spans, min_ms, max_ms], ...], so
    percentiles come out as they do from spans. `traces` counts distinct traces
    per rolled-up batch: a trace whose spans were rolled up in two batches, or
    fall in two intervals, counts twice when rows are added up."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    grain = models.PositiveIntegerField(help_text="interval length in seconds")
    at = models.BigIntegerField(help_text="interval start, Unix seconds")
    scope = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=500, blank=True, default="")
    dim_key = models.CharField(max_length=200, blank=True, default="")
    dim_value = models.CharField(max_length=200, blank=True, default="")
    spans = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost = models.FloatField(default=0.0)
    cost_spans = models.BigIntegerField(default=0)
    traces = models.BigIntegerField(default=0)
    histogram = models.TextField(default="[]")

    class Meta:
        abstract = True


class SpanRollup(RollupCell):
    """What the spans of one interval add up to, for analytics over long windows
    (rollups.py writes these behind ingest; analytics.py reads them).

    One row per (interval, scope, dimension value): `scope` says which of
    kind, name and status the row is split by (the others are "" and the row
    counts every value of them); `dim_key` "" is the row of all spans of the
    scope, else the row of the spans whose attribute `dim_key` has the value
    `dim_value` (its JSON text, as analytics groups it).
    """

    status_code = models.CharField(max_length=8, blank=True, default="")

    class Meta:
        constraints = [
            # Its index serves the reads: one project, grain, dimension and scope
            # over a range of intervals.
            models.UniqueConstraint(
                fields=[
                    "project",
                    "grain",
                    "dim_key",
                    "scope",
                    "at",
                    "kind",
                    "name",
                    "status_code",
                    "dim_value",
                ],
                name="rollup_unique_cell",
            )
        ]
        # The roller reads the rows of the intervals a batch touched, every scope.
        indexes = [models.Index(fields=["project", "grain", "at"], name="rollup_interval")]

    def __str__(self) -> str:
        return f"{self.grain}s@{self.at} scope {self.scope} {self.dim_key}={self.dim_value}"


class EvalRollup(RollupCell):
    """What the spans an eval judged add up to, per interval: the rows of
    SpanRollup for the spans with an annotation named `eval_name` (`eval_label`
    "") or with that name and label, so analytics filtered by an eval label
    reads a few rows instead of joining every span to its annotations.

    Annotations change after their spans are rolled up (a judge's verdict comes
    later; a person labels or relabels), so these rows are not added to: the
    roller computes an hour's rows again whenever its spans or their annotations
    changed (rollups.py). Scopes: all spans and one component (kind and name).
    """

    eval_name = models.CharField(max_length=200)
    eval_label = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "project",
                    "eval_name",
                    "eval_label",
                    "grain",
                    "dim_key",
                    "scope",
                    "at",
                    "kind",
                    "name",
                    "dim_value",
                ],
                name="eval_rollup_unique_cell",
            )
        ]
        indexes = [models.Index(fields=["project", "at"], name="eval_rollup_interval")]

    def __str__(self) -> str:
        return f"{self.eval_name}:{self.eval_label} {self.grain}s@{self.at} scope {self.scope}"


class RollupDimension(models.Model):
    """An attribute key a project's rollups are split by: one whose every value
    so far is a short string, integer or boolean, and that has taken few values
    (`overflow` once it took too many or another kind of value: then it is no
    longer rolled up and its rows are gone)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    values = models.JSONField(default=list)
    overflow = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="rollup_dimension_unique")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({'overflow' if self.overflow else len(self.values)})"


class RollupProject(models.Model):
    """A project whose spans are rolled up (one with enough spans for it to pay:
    rollups.MIN_SPANS). Its spans up to `backfill_below` that were stored before
    it qualified are rolled up in batches (`backfilled_through`); analytics reads
    its rollups once `ready`."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="+")
    backfill_below = models.BigIntegerField()
    backfill_skip = models.JSONField(default=list)  # the mark's holes then: the roller's
    backfilled_through = models.BigIntegerField(default=0)
    ready = models.BooleanField(default=False)
    # Eval rows (EvalRollup): computed for the hours from `evals_from` on, going back
    # an hour range at a time once the project is ready; analytics reads them once
    # `evals_ready`. `evals_seen` is when the roller last looked for annotations
    # that changed (those changed since, analytics reads from spans).
    evals_from = models.BigIntegerField(null=True, blank=True)
    evals_ready = models.BooleanField(default=False)
    evals_seen = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.project_id}: {'ready' if self.ready else 'backfilling'}"


class RollupMark(models.Model):
    """How far rollups have got (one row): every span with id <= through_id is
    rolled up, except those in `holes` ([[low, high, first_seen], ...]: ids not
    yet committed when the mark passed them)."""

    through_id = models.BigIntegerField(default=0)
    holes = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"through {self.through_id}"
