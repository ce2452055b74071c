"""`agentloop-traces` against the in-process double: flags → query, cursors, label proposals."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest

from agentloop.runner.traces_cli import run
from tests.runner_double import RunnerDouble, make_span, span_id, synthetic_spans, trace_id


@pytest.fixture
def double():
    with RunnerDouble(spans=synthetic_spans()) as running:
        yield running


def cli(double, *argv, now=None, cwd=None, env=None) -> tuple[int, list[dict]]:
    out = io.StringIO()
    env = env or {
        "AGENTLOOP_URL": double.url,
        "AGENTLOOP_RUN_TOKEN": double.token,
        "AGENTLOOP_PROJECT_ID": "7",
    }
    code = run(list(argv), env=env, out=out, now=now, cwd=cwd)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_every_span_filter_maps_to_its_query_parameter(double):
    code, _ = cli(
        double,
        "spans",
        "--kind",
        "LLM",
        "--status",
        "ERROR",
        "--name",
        "ChatOpenAI",
        "--trace-id",
        trace_id(6),
        "--root",
        "--start",
        "2025-03-01T00:00:00Z",
        "--end",
        "2025-03-02T00:00:00Z",
        "--annotation",
        "correctness:incorrect",
        "--attr",
        "llm.model_name=gpt-4o",
        "--attr",
        "a=b",
        "--session-id",
        "s1",
        "--user-id",
        "u1",
        "--limit",
        "50",
    )

    assert code == 0
    [request] = double.requests_to("GET", "/spans")
    assert request["path"] == "/api/v1/projects/7/spans"
    assert request["auth"] == "Bearer al_sk_test"
    assert request["query"] == {
        "kind": ["LLM"],
        "status": ["ERROR"],
        "name": ["ChatOpenAI"],
        "trace_id": [trace_id(6)],
        "root": ["true"],
        "start": ["2025-03-01T00:00:00Z"],
        "end": ["2025-03-02T00:00:00Z"],
        "annotation": ["correctness:incorrect"],
        "attr": ["llm.model_name=gpt-4o", "a=b"],
        "session_id": ["s1"],
        "user_id": ["u1"],
        "limit": ["50"],
    }


def test_the_duration_and_exception_filters_map_to_their_parameters(double):
    code, _ = cli(
        double,
        "spans",
        "--min-duration-ms",
        "2000",
        "--max-duration-ms",
        "9000.5",
        "--exception-type",
        "TimeoutError",
    )

    assert code == 0
    [request] = double.requests_to("GET", "/spans")
    assert request["query"] == {
        "min_duration_ms": ["2000.0"],
        "max_duration_ms": ["9000.5"],
        "exception_type": ["TimeoutError"],
        "limit": ["100"],
    }


def test_since_sets_start_back_from_now(double):
    now = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
    code, spans = cli(double, "spans", "--since", "24h", "--status", "ERROR", now=now)

    assert code == 0
    assert double.requests_to("GET", "/spans")[0]["query"]["start"] == ["2025-03-01T12:00:00Z"]
    # Errors in traces 1-7 are at hours 1-7: before the window.
    assert spans == []


def test_spans_prints_one_json_object_per_line_newest_first(double):
    code, spans = cli(double, "spans", "--status", "ERROR", "--name", "search_inventory")

    assert code == 0
    assert [s["trace_id"][:4] for s in spans] == ["ab05", "ab04", "ab03", "ab02", "ab01", "ab99"]
    assert spans[0]["events"][0]["attributes"]["exception.type"] == "ValueError"


def test_it_follows_cursors_up_to_max(double):
    code, spans = cli(double, "spans", "--limit", "10", "--max", "25")

    assert code == 0
    assert len(spans) == 25
    requests = double.requests_to("GET", "/spans")
    assert [r["query"].get("cursor") for r in requests] == [None, ["10"], ["20"]]
    assert [r["query"]["limit"] for r in requests] == [["10"], ["10"], ["5"]]
    assert len({(s["trace_id"], s["span_id"]) for s in spans}) == 25


def test_it_stops_at_the_last_page(double):
    code, spans = cli(double, "spans", "--limit", "20", "--max", "1000")

    assert code == 0
    assert len(spans) == 49
    assert len(double.requests_to("GET", "/spans")) == 3


def test_trace_prints_the_tree(double):
    code, [tree] = cli(double, "trace", trace_id(8))

    assert code == 0
    assert tree["root"]["name"] == "agent"
    assert [c["name"] for c in tree["root"]["children"]] == [
        "retrieve_docs",
        "search_inventory",
        "ChatOpenAI",
    ]
    assert tree["spans"] == 4


def test_annotations_filters(double):
    code, rows = cli(double, "annotations", "--name", "correctness", "--label", "incorrect")

    assert code == 0
    assert double.requests_to("GET", "/annotations")[0]["query"] == {
        "name": ["correctness"],
        "label": ["incorrect"],
        "limit": ["100"],
    }
    assert [r["trace_id"][:4] for r in rows] == ["ab11", "ab10", "ab09"]


def test_a_server_error_exits_1_with_the_servers_message(double, capsys):
    code, out = cli(double, "spans", "--kind", "BANANA")

    assert code == 1
    assert out == []
    assert "HTTP 400: kind: 'BANANA' is not one of" in capsys.readouterr().err


def test_another_project_is_not_found(double, capsys):
    env = {
        "AGENTLOOP_URL": double.url,
        "AGENTLOOP_RUN_TOKEN": double.token,
        "AGENTLOOP_PROJECT_ID": "8",
    }
    code, _ = cli(double, "trace", trace_id(1), env=env)

    assert code == 1
    assert "HTTP 404: Not found." in capsys.readouterr().err


def test_missing_configuration_is_explained(double, capsys, tmp_path):
    code, _ = cli(double, "spans", env={"HOME": str(tmp_path)})

    assert code == 1
    assert "missing AGENTLOOP_URL, AGENTLOOP_RUN_TOKEN, AGENTLOOP_PROJECT_ID" in (
        capsys.readouterr().err
    )


def test_the_project_id_can_come_from_the_config_file(double, tmp_path):
    (tmp_path / ".config/agentloop").mkdir(parents=True)
    (tmp_path / ".config/agentloop/traces.json").write_text(json.dumps({"project_id": "7"}))
    env = {"AGENTLOOP_URL": double.url, "AGENTLOOP_RUN_TOKEN": double.token, "HOME": str(tmp_path)}

    code, spans = cli(double, "spans", "--max", "3", env=env)

    assert code == 0 and len(spans) == 3


def test_bad_paging_flags_are_refused_before_any_request(double, capsys):
    code, _ = cli(double, "spans", "--limit", "0")

    assert code == 1
    assert "--limit: must be between 1 and 1000, not 0" in capsys.readouterr().err
    assert double.requests == []


# -- label ---------------------------------------------------------------------------------


def test_label_appends_a_proposal_to_eval_labels_json(double, tmp_path):
    args = [
        "label",
        "--span-id",
        span_id(6, 3),
        "--trace-id",
        trace_id(6),
        "--name",
        "correctness",
        "--label",
        "incorrect",
        "--score",
        "0",
        "--explanation",
        "rate limited",
    ]
    code, [printed] = cli(double, *args, cwd=tmp_path)
    code2, _ = cli(
        double,
        "label",
        "--span-id",
        span_id(7, 3),
        "--name",
        "correctness",
        "--score",
        "0.25",
        cwd=tmp_path,
    )

    assert code == code2 == 0
    stored = json.loads((tmp_path / "artifacts/eval_labels.json").read_text())
    assert stored == [
        {
            "span_id": span_id(6, 3),
            "trace_id": trace_id(6),
            "name": "correctness",
            "label": "incorrect",
            "score": 0.0,
            "explanation": "rate limited",
        },
        {
            "span_id": span_id(7, 3),
            "trace_id": None,
            "name": "correctness",
            "label": None,
            "score": 0.25,
            "explanation": "",
        },
    ]
    assert printed["proposed"] == stored[0]
    assert double.requests == []  # proposing never writes to the project


def test_label_proposed_again_for_the_same_span_and_eval_replaces_it(double, tmp_path):
    base = ["label", "--span-id", span_id(6, 3), "--name", "correctness"]
    cli(double, *base, "--label", "correct", cwd=tmp_path)
    cli(double, *base, "--label", "incorrect", cwd=tmp_path)
    cli(
        double,
        "label",
        "--span-id",
        span_id(6, 3),
        "--name",
        "tone",
        "--label",
        "rude",
        cwd=tmp_path,
    )

    stored = json.loads((tmp_path / "artifacts/eval_labels.json").read_text())
    assert [(s["name"], s["label"]) for s in stored] == [
        ("correctness", "incorrect"),
        ("tone", "rude"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--span-id", "xyz", "--name", "c", "--label", "l"], "--span-id: expected 16 hex"),
        (
            ["--span-id", "0" * 16, "--trace-id", "abc", "--name", "c", "--label", "l"],
            "--trace-id: expected 32 hex",
        ),
        (["--span-id", "0" * 16, "--name", " ", "--label", "l"], "--name: the eval's name"),
        (["--span-id", "0" * 16, "--name", "c"], "give --label, --score or both"),
        (["--span-id", "0" * 16, "--name", "c", "--score", "high"], "--score: expected a number"),
        (["--span-id", "0" * 16, "--name", "c", "--score", "nan"], "--score: must be a finite"),
    ],
)
def test_label_refuses_bad_input_and_writes_nothing(double, tmp_path, capsys, args, message):
    code, _ = cli(double, "label", *args, cwd=tmp_path)

    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "artifacts/eval_labels.json").exists()


def test_label_refuses_to_overwrite_a_broken_file(double, tmp_path, capsys):
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts/eval_labels.json").write_text("{not json")

    code, _ = cli(
        double, "label", "--span-id", "0" * 16, "--name", "c", "--label", "l", cwd=tmp_path
    )

    assert code == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert (tmp_path / "artifacts/eval_labels.json").read_text() == "{not json"


def test_spans_on_a_bare_double_are_empty():
    with RunnerDouble(spans=[make_span(trace_id(1), span_id(1, 0), "x")]) as bare:
        code, spans = cli(bare, "spans", "--status", "ERROR")
    assert code == 0 and spans == []
