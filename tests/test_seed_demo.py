"""`manage.py seed_demo`: the login, space, project and traces `make run` shows."""

from __future__ import annotations

import re
import stat
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from agentloop.teams.models import Membership, Project, ProjectApiKey, Role, Space
from agentloop.traces.demo import build_demo_traces
from agentloop.traces.models import Span, SpanAnnotation, Trace


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.AGENTLOOP_PUBLIC_URL = "http://demo.test:8000"
    return tmp_path


def logs_in(client, password: str) -> bool:
    """Log in through the login page, as a person does (django-axes counts it)."""
    client.logout()
    client.post("/login/", {"username": "admin", "password": password})
    return "_auth_user_id" in client.session


def seed(*args) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def printed_password(output: str) -> str:
    return re.search(r"Password\s+(\S+)", output).group(1)


def test_it_creates_the_admin_login_space_and_project(db, var_dir, client):
    output = seed("--traces", "20")

    user = get_user_model().objects.get(username="admin")
    assert user.is_staff and not user.is_superuser
    space = Space.objects.get(slug="demo")
    assert space.name == "Demo"
    assert Membership.objects.get(space=space, user=user).role == Role.ADMIN
    assert Project.objects.filter(space=space, name="support-bot").exists()

    assert "http://demo.test:8000/" in output
    assert "Username  admin" in output
    assert logs_in(client, printed_password(output))


def test_it_keeps_the_login_in_a_private_file(db, var_dir):
    output = seed("--traces", "5")

    path = var_dir / "demo-login.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert f"password: {printed_password(output)}" in text
    assert "url: http://demo.test:8000" in text


def test_it_prints_the_api_key_once_and_saves_it(db, var_dir):
    first = seed("--traces", "5")
    raw = re.search(r"(al_pk_\S+)", first).group(1)

    key = ProjectApiKey.authenticate(raw)
    assert key is not None and key.project.name == "support-bot"
    assert f"api_key: {raw}" in (var_dir / "demo-login.txt").read_text()

    second = seed("--traces", "5")
    assert raw not in second
    assert ProjectApiKey.objects.count() == 1
    assert f"api_key: {raw}" in (var_dir / "demo-login.txt").read_text()


def test_it_seeds_spans_of_every_kind_with_errors_slow_spans_and_labels(db, var_dir):
    seed()  # the default: 200 traces, seed 0

    project = Project.objects.get(name="support-bot")
    spans = Span.objects.filter(project=project)
    assert Trace.objects.filter(project=project).count() == 200
    assert 1800 <= spans.count() <= 2200
    kinds = set(spans.values_list("kind", flat=True))
    assert kinds == {"AGENT", "CHAIN", "RETRIEVER", "LLM", "TOOL", "EMBEDDING"}
    assert spans.filter(parent_span_id="").count() == 200
    assert set(spans.filter(parent_span_id="").values_list("kind", flat=True)) == {"AGENT"}

    llm = spans.filter(kind="LLM", status_code="OK").first()
    assert llm.model_name and llm.total_tokens == llm.prompt_tokens + llm.completion_tokens
    assert llm.attributes["llm.input_messages.0.message.role"] == "system"
    assert "llm.output_messages.0.message.content" in llm.attributes
    assert "llm.invocation_parameters" in llm.attributes
    retriever = spans.filter(kind="RETRIEVER").first()
    assert "retrieval.documents.0.document.content" in retriever.attributes
    tool = spans.filter(kind="TOOL").first()
    assert tool.attributes["tool.name"] == tool.name and "tool.parameters" in tool.attributes
    assert spans.exclude(session_id="").count() == spans.count()
    assert spans.exclude(user_id="").count() == spans.count()

    timeout = spans.filter(kind="TOOL", status_code="ERROR").first()
    event = timeout.events[0]
    assert event["name"] == "exception"
    assert datetime.fromisoformat(event["time"]) == timeout.end_time
    assert event["attributes"]["exception.type"] == "httpx.ReadTimeout"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]
    rate_limited = spans.filter(kind="LLM", status_code="ERROR").first()
    assert "RateLimitError" in rate_limited.status_message
    assert spans.filter(duration_ms__gt=10_000).count() >= 10

    annotations = SpanAnnotation.objects.filter(project=project)
    assert set(annotations.values_list("name", flat=True)) == {
        "correctness",
        "hallucination",
        "user_feedback",
    }
    assert set(annotations.values_list("annotator_kind", flat=True)) == {"LLM", "HUMAN"}
    assert annotations.filter(name="correctness", label="incorrect", score=0.0).exists()
    assert set(annotations.filter(name="hallucination").values_list("span__kind", flat=True)) == {
        "LLM"
    }


def test_it_does_not_duplicate_when_run_twice(db, var_dir, client):
    first = seed("--traces", "10")
    counts = (Span.objects.count(), Trace.objects.count(), SpanAnnotation.objects.count())
    second = seed("--traces", "10")

    assert (Span.objects.count(), Trace.objects.count(), SpanAnnotation.objects.count()) == counts
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert Space.objects.filter(name="Demo").count() == 1
    assert Project.objects.filter(name="support-bot").count() == 1
    assert printed_password(second) == printed_password(first)
    assert logs_in(client, printed_password(second))


def test_the_same_seed_gives_the_same_traces():
    project = Project(id=1)
    now = timezone.now()
    a = build_demo_traces(project, traces=30, seed=7, now=now)
    b = build_demo_traces(project, traces=30, seed=7, now=now)
    assert [s.span.span_id for s in a.spans] == [s.span.span_id for s in b.spans]
    assert len(a.annotations) == len(b.annotations)
    c = build_demo_traces(project, traces=30, seed=8, now=now)
    assert [s.span.span_id for s in c.spans] != [s.span.span_id for s in a.spans]


def test_the_traces_fall_within_the_last_48_hours(db, var_dir):
    seed("--traces", "50")

    oldest = Span.objects.order_by("start_time").first().start_time
    assert timezone.now() - oldest < timedelta(hours=48)


def test_a_lost_login_file_gets_a_new_password_that_works(db, var_dir, client):
    first = seed("--traces", "5")
    (var_dir / "demo-login.txt").unlink()

    second = seed("--traces", "5")

    assert printed_password(second) != printed_password(first)
    assert logs_in(client, printed_password(second))
    assert not logs_in(client, printed_password(first))
    assert "raw value is lost" in second


# -- the benchmark's bulk rows -------------------------------------------------


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benches" / "bench_queries.py"
    spec = importlib.util.spec_from_file_location("bench_queries", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_rows_have_the_promised_shape():
    from collections import Counter

    from agentloop.traces.demo import SPAN_COLUMNS, iter_span_rows

    now = timezone.now()
    batches = list(iter_span_rows(1, 10_000, seed=3, now=now, batch_traces=500))
    spans = [row for b in batches for row in b.spans]
    traces = [row for b in batches for row in b.traces]
    annotations = [row for b in batches for row in b.annotations]
    col = {name: i for i, name in enumerate(SPAN_COLUMNS)}

    assert len(spans) == 10_000
    assert [row[col["id"]] for row in spans] == list(range(1, 10_001))
    assert 8 <= len(spans) / len(traces) <= 12
    assert 0.02 <= sum(row[col["status_code"]] == "ERROR" for row in spans) / len(spans) <= 0.04
    assert 0.04 <= len(annotations) / len(spans) <= 0.06
    assert 200 <= len({row[col["name"]] for row in spans}) <= 400
    kinds = Counter(row[col["kind"]] for row in spans)
    assert set(kinds) == {"AGENT", "LLM", "TOOL", "CHAIN", "RETRIEVER", "EMBEDDING"}
    starts = [row[col["start_time"]] for row in spans]
    assert now - timedelta(days=30, minutes=1) <= min(starts) and max(starts) <= now + timedelta(
        minutes=5
    )


def test_bench_rows_load_into_the_database_and_read_back_through_the_orm(db, project):
    from django.db import connection

    from agentloop.traces.demo import (
        ANNOTATION_COLUMNS,
        SPAN_COLUMNS,
        SPAN_TIME_COLUMNS,
        TRACE_COLUMNS,
        iter_span_rows,
    )
    from agentloop.traces.queries import filter_spans, page_spans, parse_span_filter

    bench = _bench_module()
    now = timezone.now().replace(microsecond=0)
    first_id = (Span.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    for batch in iter_span_rows(project.pk, 3000, seed=1, now=now, days=1, first_id=first_id):
        bench._insert(connection, "traces_span", SPAN_COLUMNS, batch.spans, SPAN_TIME_COLUMNS)
        bench._insert(connection, "traces_trace", TRACE_COLUMNS, batch.traces, (2, 3, 4))
        bench._insert(
            connection, "traces_spanannotation", ANNOTATION_COLUMNS, batch.annotations, (10, 11)
        )

    assert Span.objects.filter(project=project).count() == 3000
    newest = Span.objects.filter(project=project).order_by("-start_time").first()
    assert now - timedelta(minutes=5) < newest.start_time <= now + timedelta(minutes=5)
    assert newest.attributes["openinference.span.kind"] == newest.kind

    # Time filters compare correctly with how the rows stored their times.
    day_ago = (now - timedelta(days=1)).isoformat()
    recent = filter_spans(project, parse_span_filter({"start": day_ago}))
    expected = [
        s for s in Span.objects.filter(project=project) if s.start_time >= now - timedelta(days=1)
    ]
    assert recent.count() == len(expected) > 0

    labelled = filter_spans(project, parse_span_filter({"annotation": "correctness"}))
    assert labelled.count() == SpanAnnotation.objects.filter(name="correctness").count() > 0
    rows, cursor = page_spans(filter_spans(project, parse_span_filter({"kind": "LLM"})), None, 50)
    assert len(rows) == 50 and cursor and {r.kind for r in rows} == {"LLM"}


def test_it_rejects_a_negative_trace_count_and_creates_nothing(db, var_dir):
    with pytest.raises(CommandError, match="--traces must be 0 or more, not -1"):
        seed("--traces", "-1")

    assert not get_user_model().objects.filter(username="admin").exists()
    assert not Space.objects.exists()
    assert not (var_dir / "demo-login.txt").exists()
