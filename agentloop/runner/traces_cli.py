"""`agentloop-traces`: read the bound project's spans from inside a sandbox. Standard library only.

    agentloop-traces spans --status ERROR --since 24h --max 500
    agentloop-traces trace <trace_id>
    agentloop-traces stats --group-by name --bucket 1h --since 24h --baseline previous
    agentloop-traces annotations --name correctness --label incorrect
    agentloop-traces label --span-id ab12... --trace-id ... --name correctness \
        --label incorrect --explanation "..."

Reads AGENTLOOP_URL and AGENTLOOP_RUN_TOKEN (the run's key, which reads only its
own project) and the project id from AGENTLOOP_PROJECT_ID or the config file the
runner writes ($HOME/.config/agentloop/traces.json). Prints JSON lines on stdout;
errors go to stderr with exit status 1.

`label` never writes to the project: it proposes an eval label by adding it to
artifacts/eval_labels.json, which people review before it is applied.

The analyst harness imports TracesApi and the filter helpers from here, so it
reads through exactly the same HTTP path the CLI does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentloop.runner.client import ApiError, HttpClient

CONFIG_PATH = ".config/agentloop/traces.json"  # under $HOME
LABELS_FILE = "artifacts/eval_labels.json"
PAGE_LIMIT_MAX = 1000

# (flag, query parameter) in the order a command line shows them.
SPAN_FILTERS = (
    ("kind", "kind"),
    ("status", "status"),
    ("name", "name"),
    ("trace_id", "trace_id"),
    ("root", "root"),
    ("start", "start"),
    ("end", "end"),
    ("annotation", "annotation"),
    ("attr", "attr"),
    ("session_id", "session_id"),
    ("user_id", "user_id"),
    ("min_duration_ms", "min_duration_ms"),
    ("max_duration_ms", "max_duration_ms"),
    ("exception_type", "exception_type"),
    ("attr_missing", "attr_missing"),
)
# `stats` takes the span filters (but trace_id) and these (docs/api.md: analytics).
STATS_PARAMS = tuple(item for item in SPAN_FILTERS if item[0] != "trace_id") + (
    ("group_by", "group_by"),
    ("bucket", "bucket"),
    ("baseline", "baseline"),
    ("baseline_start", "baseline_start"),
    ("baseline_end", "baseline_end"),
    ("limit", "limit"),
)
ANNOTATION_FILTERS = (
    ("name", "name"),
    ("label", "label"),
    ("span_id", "span_id"),
    ("trace_id", "trace_id"),
    ("annotator_kind", "annotator_kind"),
)


class CliError(Exception):
    pass


# -- configuration ---------------------------------------------------------------


def load_config(env: dict | None = None) -> dict:
    """URL, token and project id, from the environment, falling back to the config file."""
    env = os.environ if env is None else env
    config: dict = {}
    home = env.get("HOME")
    if home:
        path = Path(home) / CONFIG_PATH
        if path.is_file():
            try:
                config.update(json.loads(path.read_text()))
            except ValueError as error:
                raise CliError(f"{path}: not valid JSON ({error})") from None
    for key, name in (("url", "AGENTLOOP_URL"), ("project_id", "AGENTLOOP_PROJECT_ID")):
        if env.get(name):
            config[key] = env[name]
    config["token"] = env.get("AGENTLOOP_RUN_TOKEN", "")
    needed = (
        ("url", "AGENTLOOP_URL"),
        ("token", "AGENTLOOP_RUN_TOKEN"),
        ("project_id", "AGENTLOOP_PROJECT_ID"),
    )
    missing = [name for key, name in needed if not config.get(key)]
    if missing:
        raise CliError(f"missing {', '.join(missing)} (the runner sets these in the sandbox)")
    return config


def api_from_env(env: dict | None = None, **client_kwargs) -> TracesApi:
    config = load_config(env)
    client = HttpClient(config["url"], config["token"], **client_kwargs)
    return TracesApi(client, config["project_id"])


# -- filters -----------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match:
        raise CliError(f"--since: expected a duration like 30m, 24h or 7d, not {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def query_pairs(filters: dict, known=SPAN_FILTERS) -> list[tuple[str, str]]:
    """A filter dict (keys as in SPAN_FILTERS) to query parameters; repeatable `attr`."""
    pairs: list[tuple[str, str]] = []
    for key, param in known:
        value = filters.get(key)
        if value is None or value == "" or value is False or value == []:
            continue
        if key == "root":
            pairs.append((param, "true"))
        elif isinstance(value, list | tuple):
            pairs.extend((param, str(item)) for item in value)
        else:
            pairs.append((param, str(value)))
    return pairs


def command_for(
    subcommand: str,
    filters: dict | None = None,
    *args: str,
    known=SPAN_FILTERS,
    max_items: int | None = None,
) -> str:
    """The CLI command line that reproduces a query: evidence a person can re-run."""
    parts = ["agentloop-traces", subcommand, *args]
    for key, _param in known:
        value = (filters or {}).get(key)
        if value is None or value == "" or value is False or value == []:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "root":
            parts.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    if max_items is not None:
        parts += ["--max", str(max_items)]
    return shlex.join(parts)


# -- the API -----------------------------------------------------------------------


class TracesApi:
    def __init__(self, client: HttpClient, project_id):
        self.client = client
        self.project_id = project_id
        self.base = f"/api/v1/projects/{project_id}/"

    def _pages(self, route: str, pairs: list, limit: int, max_items: int | None) -> Iterator[dict]:
        yielded = 0
        cursor = None
        while True:
            page_limit = limit
            if max_items is not None:
                page_limit = max(1, min(limit, max_items - yielded))
            query = [*pairs, ("limit", str(page_limit))]
            if cursor:
                query.append(("cursor", cursor))
            answer = self.client.get(self.base + route, query)
            for item in answer.get("data", []):
                if max_items is not None and yielded >= max_items:
                    return
                yield item
                yielded += 1
            cursor = answer.get("next_cursor")
            if not cursor or (max_items is not None and yielded >= max_items):
                return

    def spans(
        self, filters: dict | None = None, *, limit: int = 100, max_items: int | None = 1000
    ) -> Iterator[dict]:
        return self._pages("spans", query_pairs(filters or {}), limit, max_items)

    def annotations(
        self, filters: dict | None = None, *, limit: int = 100, max_items: int | None = 1000
    ) -> Iterator[dict]:
        pairs = query_pairs(filters or {}, ANNOTATION_FILTERS)
        return self._pages("annotations", pairs, limit, max_items)

    def trace(self, trace_id: str) -> dict:
        return self.client.get(self.base + f"traces/{trace_id}")

    def stats(self, params: dict | None = None) -> dict:
        """GET analytics: params as in STATS_PARAMS (lists for group_by and attr)."""
        return self.client.get(self.base + "analytics", query_pairs(params or {}, STATS_PARAMS))


def fetch_stats(api: TracesApi, *, since: str | None = None, now=None, **params) -> dict:
    """The project's span analytics (docs/api.md, `GET .../analytics`) as a dict.

        fetch_stats(api, since="24h", group_by=["name", "attr:region"], bucket="1h",
                    baseline="previous", status="ERROR", min_duration_ms=2000)

    `params` are the endpoint's parameters (group_by and attr may be lists);
    `since` is a duration back from `now` that sets `start`. An HTTP error
    raises ApiError with the server's message (a 400 names the parameter).
    """
    if since is not None:
        if params.get("start"):
            raise CliError("give since or start, not both")
        params["start"] = iso((now or datetime.now(UTC)) - parse_duration(since))
    unknown = set(params) - {key for key, _ in STATS_PARAMS}
    if unknown:
        raise CliError(f"unknown stats parameter(s): {', '.join(sorted(unknown))}")
    return api.stats(params)


# -- proposing eval labels -------------------------------------------------------------

_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def validate_label(proposal: dict) -> dict:
    """A clean label proposal, or CliError saying what is wrong."""
    span_id = str(proposal.get("span_id") or "").strip().lower()
    if not _SPAN_ID.match(span_id):
        raise CliError(f"--span-id: expected 16 hex characters, not {proposal.get('span_id')!r}")
    trace_id = str(proposal.get("trace_id") or "").strip().lower()
    if trace_id and not _TRACE_ID.match(trace_id):
        raise CliError(f"--trace-id: expected 32 hex characters, not {proposal.get('trace_id')!r}")
    name = str(proposal.get("name") or "").strip()
    if not name:
        raise CliError("--name: the eval's name is required, e.g. correctness")
    label = str(proposal.get("label") or "").strip()
    score = proposal.get("score")
    if score is not None and score != "":
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise CliError(f"--score: expected a number, not {score!r}") from None
        if score != score or score in (float("inf"), float("-inf")):
            raise CliError("--score: must be a finite number")
    else:
        score = None
    if not label and score is None:
        raise CliError("give --label, --score or both")
    return {
        "span_id": span_id,
        "trace_id": trace_id or None,
        "name": name,
        "label": label or None,
        "score": score,
        "explanation": str(proposal.get("explanation") or "").strip(),
    }


def propose_labels(path: Path, proposals: list[dict]) -> list[dict]:
    """Add label proposals to eval_labels.json.

    A (span, name) proposed again replaces the earlier proposal, as the server's
    upsert on (span, name) would.
    """
    clean = [validate_label(p) for p in proposals]
    existing: list = []
    if path.exists():
        try:
            existing = json.loads(path.read_text() or "[]")
        except ValueError as error:
            raise CliError(f"{path}: not valid JSON ({error}); fix or remove it") from None
        if not isinstance(existing, list):
            raise CliError(f"{path}: expected a JSON list of labels")
    index = {
        (item.get("span_id"), item.get("name")): i
        for i, item in enumerate(existing)
        if isinstance(item, dict)
    }
    for proposal in clean:
        key = (proposal["span_id"], proposal["name"])
        if key in index:
            existing[index[key]] = proposal
        else:
            index[key] = len(existing)
            existing.append(proposal)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)  # a reader never sees half a file
    return clean


# -- command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentloop-traces",
        description="Read the bound project's spans, traces and eval labels; propose eval labels.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    spans = sub.add_parser("spans", help="spans, newest first, one JSON object per line")
    spans.add_argument("--kind", help="LLM, CHAIN, TOOL, AGENT, RETRIEVER, ...")
    spans.add_argument("--status", help="OK, ERROR or UNSET")
    spans.add_argument("--name", help="exact span name")
    spans.add_argument("--trace-id", dest="trace_id")
    spans.add_argument("--root", action="store_true", help="only root spans")
    spans.add_argument("--start", help="ISO 8601: started at or after")
    spans.add_argument("--end", help="ISO 8601: started before")
    spans.add_argument("--since", help="a duration back from now, e.g. 30m, 24h, 7d (sets --start)")
    spans.add_argument("--annotation", help="NAME or NAME:LABEL")
    spans.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute equals value (repeatable)",
    )
    spans.add_argument("--session-id", dest="session_id")
    spans.add_argument("--user-id", dest="user_id")
    _duration_and_exception_flags(spans)
    spans.add_argument("--limit", type=int, default=100, help="page size, 1-1000")
    spans.add_argument(
        "--max",
        type=int,
        default=1000,
        dest="max_items",
        help="stop after this many spans (follows cursors until then)",
    )

    stats = sub.add_parser(
        "stats",
        help="span metrics per group, time bucket and baseline (a table; --json for all)",
    )
    stats.add_argument(
        "--group-by",
        dest="group_by",
        action="append",
        default=[],
        metavar="DIM",
        help="name, kind, status, model_name, session_id, user_id, exception.type or "
        "attr:KEY (up to 2)",
    )
    stats.add_argument("--bucket", help="time buckets, e.g. 5m, 1h, 1d")
    stats.add_argument("--since", help="window back from now, e.g. 1h, 24h, 7d (default 24h)")
    stats.add_argument("--start", help="ISO 8601: window start")
    stats.add_argument("--end", help="ISO 8601: window end (default now)")
    stats.add_argument(
        "--baseline", help="previous (the window before) or a shift like 7d (a week earlier)"
    )
    stats.add_argument("--baseline-start", dest="baseline_start")
    stats.add_argument("--baseline-end", dest="baseline_end")
    stats.add_argument("--limit", type=int, help="top groups, 1-100 (default 20)")
    stats.add_argument("--kind")
    stats.add_argument("--status", help="OK, ERROR or UNSET")
    stats.add_argument("--name", help="exact span name")
    stats.add_argument("--root", action="store_true", help="only root spans")
    stats.add_argument(
        "--eval",
        "--annotation",
        dest="annotation",
        metavar="NAME[=LABEL]",
        help="spans with this eval label, e.g. hallucination=hallucinated",
    )
    stats.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE")
    stats.add_argument("--session-id", dest="session_id")
    stats.add_argument("--user-id", dest="user_id")
    _duration_and_exception_flags(stats)
    stats.add_argument("--json", action="store_true", help="print the whole answer as JSON")

    trace = sub.add_parser("trace", help="one trace as a tree of spans (one JSON object)")
    trace.add_argument("trace_id")

    annotations = sub.add_parser("annotations", help="eval labels, one JSON object per line")
    annotations.add_argument("--name")
    annotations.add_argument("--label")
    annotations.add_argument("--span-id", dest="span_id")
    annotations.add_argument("--trace-id", dest="trace_id")
    annotations.add_argument("--annotator-kind", dest="annotator_kind")
    annotations.add_argument("--limit", type=int, default=100)
    annotations.add_argument("--max", type=int, default=1000, dest="max_items")

    label = sub.add_parser(
        "label", help="propose an eval label (adds it to artifacts/eval_labels.json)"
    )
    label.add_argument("--span-id", dest="span_id", required=True)
    label.add_argument("--trace-id", dest="trace_id")
    label.add_argument("--name", required=True, help="the eval, e.g. correctness")
    label.add_argument("--label", help="e.g. correct, incorrect, hallucinated")
    label.add_argument("--score", help="a number, e.g. 0 or 1")
    label.add_argument("--explanation", default="")
    label.add_argument("--file", help=f"where to write (default: ./{LABELS_FILE})")
    return parser


def _duration_and_exception_flags(parser) -> None:
    parser.add_argument("--min-duration-ms", dest="min_duration_ms", type=float)
    parser.add_argument("--max-duration-ms", dest="max_duration_ms", type=float)
    parser.add_argument(
        "--exception-type", dest="exception_type", help="e.g. TimeoutError (exact exception.type)"
    )
    parser.add_argument(
        "--attr-missing",
        dest="attr_missing",
        action="append",
        default=[],
        metavar="KEY",
        help="spans without this attribute, e.g. retrieval.documents.0.document.id (repeatable)",
    )


def _eval_annotation(value: str | None) -> str | None:
    """--eval NAME=LABEL (or NAME:LABEL, or NAME) as the API's annotation=NAME:LABEL."""
    if not value:
        return None
    name, sep, label = value.replace("=", ":", 1).partition(":")
    return f"{name}:{label}" if sep else name


def _number(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _percent(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _times(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_stats(result: dict) -> str:
    """The analytics answer as a plain-text table for people and agents to read."""
    window = result["window"]
    lines = [f"window {window['start']} .. {window['end']}"]
    if result.get("baseline_window"):
        base = result["baseline_window"]
        lines[0] += f"   baseline {base['start']} .. {base['end']}"
    with_baseline = bool(result.get("baseline_window"))
    header = ["group", "spans", "traces", "errors", "err%", "lift", "p50ms", "p95ms", "p99ms"]
    header += ["tokens", "cost"]
    if with_baseline:
        header += ["base err%", "err x", "p95 x", "rate x"]
    rows = []

    def row(label: str, cell: dict) -> list[str]:
        values = [
            label,
            _number(cell["spans"]),
            _number(cell["traces"]),
            _number(cell["errors"]),
            _percent(cell["error_rate"]),
            _times(cell.get("error_rate_lift")),
            _number(cell["p50_ms"], 1),
            _number(cell["p95_ms"], 1),
            _number(cell["p99_ms"], 1),
            _number(cell["total_tokens"]),
            "-" if cell["cost"] is None else f"{cell['cost']:.4f}",
        ]
        if with_baseline:
            versus = cell.get("vs_baseline") or {}
            values += [
                _percent((cell.get("baseline") or {}).get("error_rate")),
                _times(versus.get("error_rate_ratio")),
                _times(versus.get("p95_ratio")),
                _times(versus.get("span_rate_ratio")),
            ]
        return values

    rows.append(row("(all)", result["total"]))
    for group in result["groups"]:
        label = " ".join(f"{k}={'(none)' if v is None else v}" for k, v in group["key"].items())
        rows.append(row(label, group))
    if result.get("other"):
        rows.append(row(f"(other: {result['other']['groups']} groups)", result["other"]))
    lines += _table(header, rows)
    buckets = result["total"].get("buckets")
    if buckets:
        lines += ["", f"buckets of {result['bucket_seconds']} s (all groups):"]
        bucket_rows = [
            [
                b["start"],
                _number(b["spans"]),
                _number(b["errors"]),
                _percent(b["error_rate"]),
                _number(b["p95_ms"], 1),
            ]
            for b in buckets
        ]
        lines += _table(["start", "spans", "errors", "err%", "p95ms"], bucket_rows)
    lines.append(f"(percentiles within {result['percentile_error'] * 100:g}% of exact)")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for values in [header, *rows]:
        cells = [
            str(v).ljust(widths[i]) if i == 0 else str(v).rjust(widths[i])
            for i, v in enumerate(values)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _print_lines(items, out) -> None:
    for item in items:
        out.write(json.dumps(item, sort_keys=True) + "\n")


def _check_paging(args) -> None:
    if not 1 <= args.limit <= PAGE_LIMIT_MAX:
        raise CliError(f"--limit: must be between 1 and {PAGE_LIMIT_MAX}, not {args.limit}")
    if args.max_items < 1:
        raise CliError(f"--max: must be at least 1, not {args.max_items}")


def run(
    argv: list[str] | None = None,
    *,
    env: dict | None = None,
    out=None,
    now: datetime | None = None,
    cwd: Path | None = None,
) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.command == "label":
            path = Path(args.file) if args.file else (cwd or Path.cwd()) / LABELS_FILE
            [proposal] = propose_labels(path, [vars(args)])
            _print_lines([{"proposed": proposal, "file": str(path)}], out)
            return 0
        api = api_from_env(env, max_attempts=3)
        if args.command == "spans":
            _check_paging(args)
            filters = {key: getattr(args, key) for key, _ in SPAN_FILTERS}
            if args.since:
                if args.start:
                    raise CliError("give --since or --start, not both")
                filters["start"] = iso((now or datetime.now(UTC)) - parse_duration(args.since))
            _print_lines(api.spans(filters, limit=args.limit, max_items=args.max_items), out)
        elif args.command == "stats":
            params = {key: getattr(args, key, None) for key, _ in STATS_PARAMS}
            params["annotation"] = _eval_annotation(args.annotation)
            result = fetch_stats(api, since=args.since, now=now, **params)
            if args.json:
                _print_lines([result], out)
            else:
                out.write(format_stats(result))
        elif args.command == "annotations":
            _check_paging(args)
            filters = {key: getattr(args, key) for key, _ in ANNOTATION_FILTERS}
            _print_lines(api.annotations(filters, limit=args.limit, max_items=args.max_items), out)
        elif args.command == "trace":
            _print_lines([api.trace(args.trace_id)], out)
    except (CliError, ApiError) as error:
        print(f"agentloop-traces: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head` closed the pipe: not an error
        return 0
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
