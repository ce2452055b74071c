"""`manage.py seed_demo`: the login, space, project and traces `make run` shows."""

from __future__ import annotations

import re
import stat
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from agentloop.teams.models import Membership, Project, ProjectApiKey, Role, Space
from agentloop.traces.demo import build_demo_traces
from agentloop.traces.models import Span, SpanAnnotation, Trace


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.AGENTLOOP_PUBLIC_URL = "http://demo.test:8000"
    return tmp_path


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
    assert client.login(username="admin", password=printed_password(output))


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
    assert client.login(username="admin", password=printed_password(second))


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
    assert client.login(username="admin", password=printed_password(second))
    assert not client.login(username="admin", password=printed_password(first))
    assert "raw value is lost" in second
