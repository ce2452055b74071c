"""`agentloop-traces stats` and fetch_stats() against a live server, with a run's service key."""

from __future__ import annotations

import io
import json
import shlex
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from agentloop.runner.client import HttpClient
from agentloop.runner.traces_cli import CliError, TracesApi, build_parser, fetch_stats, run
from agentloop.runner.workspace import SKILL_MD
from agentloop.runs.models import Run, ServiceKey
from agentloop.traces.models import SpanAnnotation
from tests.span_factory import make_span

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
WINDOW = ["--start", "2026-03-01T00:00:00Z", "--end", "2026-03-01T04:00:00Z"]
TIMEOUT = [{"name": "exception", "attributes": {"exception.type": "TimeoutError"}}]


@pytest.fixture
def env(live_server, project):
    run_row = Run.objects.create(space=project.space, project=project, config={}, prompt="x")
    _, raw = ServiceKey.mint(run_row, expires_at=timezone.now() + timedelta(hours=1))
    return {
        "AGENTLOOP_URL": live_server.url,
        "AGENTLOOP_RUN_TOKEN": raw,
        "AGENTLOOP_PROJECT_ID": str(project.pk),
    }


@pytest.fixture
def spans(project, other_project):
    # Baseline hour [-1h, 0): search is healthy. Window [0, 4h): it times out in eu.
    for i in range(4):
        make_span(project, name="search", start=T0 - timedelta(minutes=50 - i), duration_ms=100)
    for i in range(4):
        make_span(
            project,
            name="search",
            status="ERROR",
            start=T0 + timedelta(hours=2, minutes=i),
            duration_ms=3000,
            attributes={"region": "eu"},
            events=TIMEOUT,
        )
    for i in range(6):
        make_span(
            project, name="chat", start=T0 + timedelta(minutes=i), attributes={"region": "us"}
        )
    hallucinated = make_span(project, name="chat", start=T0 + timedelta(minutes=30))
    SpanAnnotation.objects.create(
        project=project,
        span=hallucinated,
        name="hallucination",
        label="hallucinated",
        annotator_kind="LLM",
    )
    make_span(other_project, name="theirs", status="ERROR", start=T0 + timedelta(minutes=1))


def cli(env, *argv, now=None) -> tuple[int, str]:
    out = io.StringIO()
    code = run(["stats", *argv], env=env, out=out, now=now)
    return code, out.getvalue()


def test_json_has_groups_buckets_and_baseline(env, spans):
    code, out = cli(
        env, *WINDOW, "--group-by", "name", "--bucket", "1h", "--baseline", "previous", "--json"
    )

    assert code == 0
    result = json.loads(out)
    groups = {g["key"]["name"]: g for g in result["groups"]}
    assert groups["search"]["errors"] == 4
    assert groups["search"]["baseline"]["errors"] == 0
    assert [b["errors"] for b in groups["search"]["buckets"]] == [0, 0, 4, 0]
    assert "theirs" not in out


def test_filters_reach_the_server(env, spans):
    code, out = cli(
        env,
        *WINDOW,
        "--group-by",
        "attr:region",
        "--status",
        "ERROR",
        "--min-duration-ms",
        "2000",
        "--exception-type",
        "TimeoutError",
        "--json",
    )

    assert code == 0
    result = json.loads(out)
    assert [(g["key"], g["spans"]) for g in result["groups"]] == [({"attr:region": "eu"}, 4)]


def test_spans_filtered_by_a_list_member_reach_the_server(env, project):
    # OpenInference sends tags as a list; the skill tells agents to filter them so.
    make_span(project, name="billing", start=T0, attributes={"tag.tags": ["billing", "eu"]})
    make_span(project, name="other", start=T0, attributes={"tag.tags": ["support"]})
    out = io.StringIO()

    code = run(["spans", "--attr", "tag.tags=eu"], env=env, out=out)

    assert code == 0
    assert [json.loads(line)["name"] for line in out.getvalue().splitlines()] == ["billing"]
    assert "--attr tag.tags=billing" in SKILL_MD


def test_eval_takes_name_equals_label(env, spans):
    code, out = cli(env, *WINDOW, "--eval", "hallucination=hallucinated", "--json")

    assert code == 0
    assert json.loads(out)["total"]["spans"] == 1


def test_since_sets_the_window_start(env, spans):
    now = T0 + timedelta(hours=4)
    code, out = cli(env, "--since", "4h", "--json", now=now)

    assert code == 0
    assert json.loads(out)["window"]["start"] == "2026-03-01T00:00:00Z"


def test_the_default_output_is_a_table(env, spans):
    code, out = cli(env, *WINDOW, "--group-by", "name", "--baseline", "previous", "--bucket", "2h")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("window 2026-03-01T00:00:00Z .. 2026-03-01T04:00:00Z   baseline")
    header = lines[1].split()
    assert header[:5] == ["group", "spans", "traces", "errors", "err%"]
    search = next(line for line in lines if line.startswith("name=search"))
    assert search.split()[1:5] == ["4", "4", "4", "100.0%"]
    assert any(line.startswith("2026-03-01T02:00:00Z") and " 4 " in line for line in lines)
    assert lines[-1] == "(percentiles within 4% of exact)"


def test_a_bad_parameter_exits_1_with_the_servers_message(env, spans, capsys):
    code, out = cli(env, *WINDOW, "--group-by", "colour")

    assert code == 1
    assert out == ""
    assert "HTTP 400: group_by: expected one of" in capsys.readouterr().err


def test_fetch_stats_is_the_same_call_for_detectors(env, spans):
    api = TracesApi(
        HttpClient(env["AGENTLOOP_URL"], env["AGENTLOOP_RUN_TOKEN"]), env["AGENTLOOP_PROJECT_ID"]
    )

    result = fetch_stats(
        api,
        since="4h",
        now=T0 + timedelta(hours=4),
        end="2026-03-01T04:00:00Z",
        group_by=["name", "attr:region"],
        baseline="previous",
    )

    keys = [g["key"] for g in result["groups"]]
    assert {"name": "search", "attr:region": "eu"} in keys
    assert result["total"]["baseline"]["spans"] == 4


def test_every_stats_command_the_skill_teaches_parses():
    text = SKILL_MD.replace("\\\n", " ")
    commands = [
        shlex.split(line.strip())[1:]
        for line in text.splitlines()
        if line.strip().startswith("agentloop-traces stats")
    ]

    assert len(commands) >= 4
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert args.command == "stats"


def test_fetch_stats_refuses_a_parameter_the_endpoint_does_not_take():
    api = TracesApi(HttpClient("http://127.0.0.1:9", "al_sk_unused"), "7")

    with pytest.raises(CliError, match="unknown stats parameter\\(s\\): group"):
        fetch_stats(api, group="name")  # group_by is meant; nothing is sent
