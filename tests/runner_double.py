"""An in-process double of the web process, as the runner sees it. No Django.

It serves docs/runner-protocol.md (spec, events, inbox, artifacts, heartbeat,
status) and the read routes of docs/api.md (spans, traces/<id>, annotations)
from in-memory data on 127.0.0.1, in a thread, and records every request. It
lets the runner, the traces CLI and the analyst be tested without Django; the
end-to-end test against the real server lives with the runs app.

What it receives and what it answers go through the server's own schema,
agentloop.runs.protocol: a body the server would refuse gets the server's 400,
and an event payload off its kind's shape, or an answer of the double's own that
the schema does not allow, is a protocol problem that fails the test on close.

    with RunnerDouble(spec={...}, spans=[...]) as double:
        env = {"AGENTLOOP_URL": double.url, "AGENTLOOP_RUN_TOKEN": double.token}
"""

from __future__ import annotations

import json
import math
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydantic

from agentloop.runs import protocol

RUNNER = "/api/runner/v1/"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# The server's state machine (agentloop.runs.models.TRANSITIONS) as far as a
# runner can move it; a runner starts in provisioning. tests/test_protocol_schema.py
# checks the two agree.
TRANSITIONS = {
    "provisioning": {"running", "failed", "cancelled"},
    "running": {"waiting", "succeeded", "failed", "cancelled"},
    "waiting": {"running", "succeeded", "failed", "cancelled"},
}
# Spec keys the runner reads that the server never sends: tests set them to
# steer the analyst's window or a harness, so they are left out of the schema check.
RUNNER_ONLY_SPEC_KEYS = {"window", "window_hours", "claude_path"}
ANSWERS = {
    ("GET", "spec"): protocol.Spec,
    ("POST", "events"): protocol.EventsAnswer,
    ("GET", "inbox"): protocol.InboxAnswer,
    ("POST", "artifacts"): protocol.ArtifactAnswer,
    ("POST", "heartbeat"): protocol.HeartbeatAnswer,
    ("POST", "status"): protocol.StatusAnswer,
    "error": protocol.ErrorBody,
}
KINDS = {
    "LLM",
    "CHAIN",
    "TOOL",
    "AGENT",
    "RETRIEVER",
    "EMBEDDING",
    "RERANKER",
    "GUARDRAIL",
    "EVALUATOR",
    "UNKNOWN",
}


class BadFilter(Exception):
    pass


def _time(value: str, param: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"{param}: not an ISO 8601 time: {value!r}") from None


class RunnerDouble:
    def __init__(
        self,
        *,
        spec: dict | None = None,
        spans: list[dict] | None = None,
        token: str = "al_sk_test",
        harness_key: str = "al_sk_harness_test",
        project_id: int = 7,
    ):
        self.token = token
        # As the server: the harness key reads spans (the agent's traces CLI) and
        # nothing of the runner protocol; the runner hands it to its harness.
        self.harness_key = harness_key
        self.project_id = project_id
        self.spec = {
            "run": "r-test",
            "project": {"id": project_id, "name": "Shop assistant"},
            "harness": "analyst",
            "model": "",
            "system_prompt": "",
            "prompt": "Investigate the last day.",
            "max_turns": 10,
            "allowed_tools": [],
            "time_limit_seconds": None,
            "api_url": "",
            "llm_base_url": "",
            "env": {},
            "repository": None,
            "skills": [],
            **(spec or {}),
        }
        self.spec["env"] = {"AGENTLOOP_HARNESS_KEY": harness_key, **self.spec["env"]}
        # A spec the server could not send is the test's mistake: say so at once.
        self._check_answer(("GET", "spec"), self._spec_answer("provisioning"), strict=True)
        self.spans = list(spans or [])
        self.status = "provisioning"  # as the server has it when the sandbox starts
        self.protocol_problems: list[str] = []  # fail the test on close
        self.statuses: list[dict] = []  # every accepted POST status body
        self.events: list[dict] = []  # stored events, with "seq"
        self.event_keys: set[str] = set()
        self._seq_of: dict[str, int] = {}  # event key → the seq it was stored with
        self.event_posts: list[list[str]] = []  # keys of every POST events, in order
        self.artifacts: dict[str, dict] = {}
        self.artifact_posts: list[str] = []
        self.followups: list[dict] = []
        self.stop = False
        self.heartbeats = 0
        self.requests: list[dict] = []
        self._failures: list[list] = []  # [method, path suffix, status, times left]
        self._seq = 0
        self._cond = threading.Condition()
        self.server: ThreadingHTTPServer | None = None

    # -- test controls ------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(
        self,
        method: str,
        path_suffix: str,
        status: int = 500,
        times: int = 1,
        detail: str = "injected failure",
    ) -> None:
        """The next `times` requests to a path ending so answer `status` and change nothing."""
        with self._cond:
            self._failures.append([method, path_suffix, status, times, detail])

    def add_followup(self, text: str) -> int:
        with self._cond:
            self._seq += 1
            self.followups.append({"seq": self._seq, "text": text})
            self._cond.notify_all()
            return self._seq

    def request_stop(self) -> None:
        with self._cond:
            self.stop = True
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Block until predicate() holds (checked whenever the double's state changes)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def requests_to(self, method: str, suffix: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"].endswith(suffix)]

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> RunnerDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                double._handle(self, "GET")

            def do_POST(self):
                double._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def check_protocol(self) -> None:
        """Fail when something crossed the boundary that the schema does not allow."""
        assert not self.protocol_problems, "\n".join(self.protocol_problems)

    def __enter__(self) -> RunnerDouble:
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.close()
        if exc_type is None:  # never hide the test's own failure
            self.check_protocol()

    # -- dispatch ------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._cond:
            self.requests.append(
                {
                    "method": method,
                    "path": parsed.path,
                    "query": query,
                    "raw": raw,
                    "auth": handler.headers.get("Authorization"),
                }
            )
            self._cond.notify_all()
        status, answer = self._route(method, parsed.path, query, raw, handler)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method, path, query, raw, handler):
        auth = handler.headers.get("Authorization")
        if auth == f"Bearer {self.harness_key}" and path.startswith(RUNNER):
            return 403, {"detail": "This token lacks the spec:read scope."}
        if auth not in (f"Bearer {self.token}", f"Bearer {self.harness_key}"):
            return 401, {"detail": "Unknown, expired or revoked run token."}
        with self._cond:
            for failure in self._failures:
                if failure[0] == method and path.endswith(failure[1]) and failure[3] > 0:
                    failure[3] -= 1
                    return failure[2], {"detail": failure[4]}
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return 400, {"detail": "The body is not valid JSON."}
        else:
            body = {}
        try:
            if path.startswith(RUNNER):
                return self._runner(method, path[len(RUNNER) :], query, body)
            prefix = f"/api/v1/projects/{self.project_id}/"
            if path.startswith("/api/v1/projects/") and not path.startswith(prefix):
                return 404, {"detail": "Not found."}
            if path.startswith(prefix) and method == "GET":
                return self._span_api(path[len(prefix) :], query)
        except BadFilter as error:
            return 400, {"detail": str(error)}
        return 404, {"detail": "Not found."}

    # -- runner protocol ---------------------------------------------------------------------

    def _spec_answer(self, status: str) -> dict:
        return {**self.spec, "status": status}

    def _check_answer(self, route, answer: dict, *, strict: bool = False) -> None:
        if route == ("GET", "spec"):
            answer = {k: v for k, v in answer.items() if k not in RUNNER_ONLY_SPEC_KEYS}
        try:
            ANSWERS[route].model_validate(answer)
        except pydantic.ValidationError as error:
            problem = f"the double's answer {route} is off the schema: {error}"
            if strict:
                raise AssertionError(problem) from None
            with self._cond:
                self.protocol_problems.append(problem)

    def _runner(self, method, route, query, body):
        status, answer = self._runner_route(method, route, query, body)
        if (method, route) in ANSWERS:
            self._check_answer((method, route) if status < 300 else "error", answer)
        return status, answer

    def _runner_route(self, method, route, query, body):
        if (method, route) == ("GET", "spec"):
            return 200, self._spec_answer(self.status)
        if (method, route) == ("POST", "events"):
            return self._post_events(body)
        if (method, route) == ("GET", "inbox"):
            return self._inbox(query)
        if (method, route) == ("POST", "artifacts"):
            return self._post_artifact(body)
        if (method, route) == ("POST", "heartbeat"):
            with self._cond:
                self.heartbeats += 1
                self._cond.notify_all()
                return 200, {"status": self.status, "stop": self.stop}
        if (method, route) == ("POST", "status"):
            return self._post_status(body)
        return 404, {"detail": "Not found."}

    def _finished(self):
        return 409, {"detail": f"The run has already finished ({self.status})."}

    def _check_payloads(self, events: list[protocol.Event]) -> None:
        """The server stores any object; the runner must still write each kind's shape."""
        for event in events:
            try:
                protocol.PAYLOADS[event.kind].model_validate(event.payload)
            except pydantic.ValidationError as error:
                with self._cond:
                    self.protocol_problems.append(
                        f"event {event.key} ({event.kind}) has a payload off the schema: {error}"
                    )

    def _post_events(self, body):
        try:
            batch = protocol.EventBatch.model_validate(body)
        except pydantic.ValidationError as error:
            return 400, {"detail": protocol.problem(error)}
        self._check_payloads(batch.events)
        with self._cond:
            if self.status in TERMINAL:
                return self._finished()
            self.event_posts.append([e.key for e in batch.events])
            stored = duplicates = 0
            seqs = []
            for event in batch.events:
                first = self._seq_of.get(event.key)
                if first is not None:
                    duplicates += 1
                    seqs.append(first)
                    continue
                self._seq += 1
                self.event_keys.add(event.key)
                self._seq_of[event.key] = self._seq
                # As the server: who posts sets the source, and a runner is the agent.
                self.events.append({**event.model_dump(), "source": "agent", "seq": self._seq})
                seqs.append(self._seq)
                stored += 1
            self._cond.notify_all()
            return 200, {
                "stored": stored,
                "duplicates": duplicates,
                "last_seq": self._seq,
                "seqs": seqs,
            }

    def _inbox(self, query):
        try:
            after = int(query.get("after", ["0"])[0] or 0)
            wait = min(protocol.MAX_INBOX_WAIT_SECONDS, int(query.get("wait", ["0"])[0] or 0))
        except ValueError:
            return 400, {"detail": "after and wait must be whole numbers"}

        def ready():
            return self.stop or any(f["seq"] > after for f in self.followups)

        with self._cond:
            self._cond.wait_for(ready, timeout=wait)
            followups = [f for f in self.followups if f["seq"] > after]
            return 200, {"followups": followups, "stop": self.stop}

    def _post_artifact(self, body):
        try:
            artifact = protocol.Artifact.model_validate(body).model_dump()
        except pydantic.ValidationError as error:
            return 400, {"detail": protocol.problem(error)}
        with self._cond:
            if self.status in TERMINAL:
                return self._finished()
            self.artifact_posts.append(artifact["key"])
            existing = self.artifacts.get(artifact["key"])
            if existing:
                return 200, {"id": existing["id"], "created": False}
            artifact["id"] = len(self.artifacts) + 1
            self.artifacts[artifact["key"]] = artifact
            self._cond.notify_all()
            return 201, {"id": artifact["id"], "created": True}

    def _post_status(self, body):
        try:
            state = protocol.StatusPost.model_validate(body).state
        except pydantic.ValidationError as error:
            return 400, {"detail": protocol.problem(error)}
        with self._cond:
            if state == self.status:  # a retry whose answer was lost, as the server has it
                self.statuses.append(body)
                return 200, {"status": self.status}
            if self.status in TERMINAL:
                return self._finished()
            if state not in TRANSITIONS.get(self.status, set()):
                return 409, {"detail": f"A run cannot go from {self.status} to {state}."}
            self.status = state
            self.statuses.append(body)
            self._cond.notify_all()
            return 200, {"status": self.status}

    # -- span API -------------------------------------------------------------------------

    def _span_api(self, route, query):
        if route == "spans":
            return self._page(self._filter_spans(query), query)
        if route == "annotations":
            return self._page(self._filter_annotations(query), query)
        if route == "analytics":
            return 200, self._analytics(query)
        if route.startswith("traces/"):
            return self._trace(route[len("traces/") :])
        return 404, {"detail": "Not found."}

    def _page(self, items, query):
        limit_raw = query.get("limit", ["100"])[0]
        try:
            limit = int(limit_raw)
        except ValueError:
            raise BadFilter(f"limit: must be a whole number, not {limit_raw!r}") from None
        if not 1 <= limit <= 1000:
            raise BadFilter(f"limit: must be between 1 and 1000, not {limit}")
        cursor = query.get("cursor", [None])[0]
        offset = int(cursor) if cursor else 0
        page = items[offset : offset + limit]
        more = offset + limit < len(items)
        return 200, {"data": page, "next_cursor": str(offset + limit) if more else None}

    def _filter_spans(self, query):
        def one(name):
            values = query.get(name)
            return values[0] if values else None

        spans = self.spans
        if one("start"):
            start = _time(one("start"), "start")
            spans = [s for s in spans if _time(s["start_time"], "start_time") >= start]
        if one("end"):
            end = _time(one("end"), "end")
            spans = [s for s in spans if _time(s["start_time"], "start_time") < end]
        if one("kind"):
            if one("kind") not in KINDS:
                raise BadFilter(f"kind: {one('kind')!r} is not one of {', '.join(sorted(KINDS))}")
            spans = [s for s in spans if s["kind"] == one("kind")]
        if one("status"):
            if one("status") not in {"OK", "ERROR", "UNSET"}:
                raise BadFilter(f"status: {one('status')!r} is not one of OK, ERROR, UNSET")
            spans = [s for s in spans if s["status_code"] == one("status")]
        for field in ("name", "trace_id", "session_id", "user_id"):
            if one(field):
                spans = [s for s in spans if s.get(field) == one(field)]
        if one("root") is not None:
            if one("root") not in ("true", "false"):
                raise BadFilter(f"root: expected true or false, not {one('root')!r}")
            want_root = one("root") == "true"
            spans = [s for s in spans if (not s.get("parent_span_id")) == want_root]
        if one("annotation"):
            name, sep, label = one("annotation").partition(":")
            spans = [
                s
                for s in spans
                if any(
                    a["name"] == name and (not sep or a.get("label") == label)
                    for a in s.get("annotations", [])
                )
            ]
        for pair in query.get("attr", []):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise BadFilter(f"attr: expected key=value, not {pair!r}")
            spans = [s for s in spans if str(s.get("attributes", {}).get(key)) == value]
        for key in query.get("attr_missing", []):
            spans = [s for s in spans if key not in s.get("attributes", {})]
        if one("min_duration_ms"):
            spans = [s for s in spans if s["duration_ms"] >= float(one("min_duration_ms"))]
        if one("max_duration_ms"):
            spans = [s for s in spans if s["duration_ms"] <= float(one("max_duration_ms"))]
        if one("exception_type"):
            spans = [s for s in spans if _exception_type(s) == one("exception_type")]
        return sorted(spans, key=lambda s: (s["start_time"], s["span_id"]), reverse=True)

    def _analytics(self, query):
        """GET analytics (docs/api.md), computed exactly in Python over the double's
        spans: the reference the SQL engine is checked against (tests/test_analytics.py
        uses it), and what the analyst reads in runner tests."""
        now = datetime.now(UTC)
        end = _time(query["end"][0], "end") if query.get("end") else now
        start = _time(query["start"][0], "start") if query.get("start") else end - timedelta(days=1)
        dimensions = query.get("group_by", [])
        limit = int(query.get("limit", ["20"])[0])
        bucket = _seconds(query["bucket"][0]) if query.get("bucket") else None
        baseline = None
        if query.get("baseline", [None])[0] == "previous":
            baseline = (start - (end - start), start)
        window_query = {k: v for k, v in query.items() if k not in ("start", "end")}

        def spans_in(lo, hi):
            return self._filter_spans({**window_query, "start": [_iso(lo)], "end": [_iso(hi)]})

        def key_of(span):
            return tuple(_dimension(span, d) for d in dimensions)

        spans = spans_in(start, end)
        counts = {}
        for span in spans:
            counts[key_of(span)] = counts.get(key_of(span), 0) + 1
        top = sorted(counts, key=lambda k: (-counts[k], [str(v) for v in k]))[:limit]
        origin = math.floor(start.timestamp())
        n_buckets = math.ceil((end.timestamp() - origin) / bucket) if bucket else 0

        def with_buckets(members):
            metrics = _metrics(members)
            if bucket:
                metrics["buckets"] = [
                    {
                        "start": _iso(datetime.fromtimestamp(origin + i * bucket, tz=UTC)),
                        **_metrics(
                            [
                                s
                                for s in members
                                if origin + i * bucket
                                <= _time(s["start_time"], "start_time").timestamp()
                                < origin + (i + 1) * bucket
                            ]
                        ),
                    }
                    for i in range(n_buckets)
                ]
            return metrics

        before = spans_in(*baseline) if baseline else []
        groups = []
        for key in top:
            members = [s for s in spans if key_of(s) == key]
            group = {"key": dict(zip(dimensions, key, strict=True)), **with_buckets(members)}
            if baseline:
                group["baseline"] = _metrics([s for s in before if key_of(s) == key])
            groups.append(group)
        total = with_buckets(spans)
        if baseline:
            total["baseline"] = _metrics(before)
        return {
            "window": {"start": _iso(start), "end": _iso(end)},
            "group_by": dimensions,
            "bucket_seconds": bucket,
            "total": total,
            "groups": groups,
            "group_count": len(counts),
        }

    def _filter_annotations(self, query):
        rows = []
        for span in sorted(self.spans, key=lambda s: (s["start_time"], s["span_id"]), reverse=True):
            for annotation in span.get("annotations", []):
                rows.append(
                    {**annotation, "span_id": span["span_id"], "trace_id": span["trace_id"]}
                )
        for field in ("name", "label", "span_id", "trace_id", "annotator_kind"):
            values = query.get(field)
            if values:
                rows = [r for r in rows if str(r.get(field)) == values[0]]
        return rows

    def _trace(self, trace_id):
        spans = sorted(
            (s for s in self.spans if s["trace_id"] == trace_id),
            key=lambda s: (s["start_time"], s["span_id"]),
        )
        if not spans:
            return 404, {"detail": "No such trace."}
        start = min(s["start_time"] for s in spans)
        end = max(s["end_time"] for s in spans)
        origin = _time(start, "start")
        ids = {s["span_id"] for s in spans}

        def node(span, depth):
            offset = (_time(span["start_time"], "start") - origin).total_seconds() * 1000
            children = [
                node(c, depth + 1) for c in spans if c.get("parent_span_id") == span["span_id"]
            ]
            return {**span, "offset_ms": offset, "depth": depth, "children": children}

        roots = [node(s, 0) for s in spans if not s.get("parent_span_id")]
        orphans = [
            node(s, 0) for s in spans if s.get("parent_span_id") and s["parent_span_id"] not in ids
        ]
        duration = (_time(end, "end") - origin).total_seconds() * 1000
        return 200, {
            "trace_id": trace_id,
            "start_time": start,
            "end_time": end,
            "duration_ms": duration,
            "spans": len(spans),
            "root": roots[0] if roots else None,
            "orphans": orphans,
        }


def make_span(
    trace_id: str,
    span_id: str,
    name: str,
    *,
    kind: str = "CHAIN",
    status: str = "OK",
    start: str = "2025-03-01T10:00:00Z",
    duration_ms: float = 100.0,
    parent: str = "",
    exception: tuple[str, str] | None = None,
    annotations: list[dict] | None = None,
    total_tokens: int | None = None,
    model_name: str = "",
    attributes: dict | None = None,
) -> dict:
    """A span shaped like docs/api.md's, with the ids padded to their real lengths."""
    begin = _time(start, "start")
    finish = begin + timedelta(milliseconds=duration_ms)
    events = []
    if exception:
        events.append(
            {
                "name": "exception",
                "time": finish.isoformat(),
                "attributes": {"exception.type": exception[0], "exception.message": exception[1]},
            }
        )
    return {
        "trace_id": trace_id.ljust(32, "0"),
        "span_id": span_id.ljust(16, "0"),
        "parent_span_id": parent.ljust(16, "0") if parent else "",
        "name": name,
        "kind": kind,
        "status_code": status,
        "status_message": exception[1] if exception else "",
        "start_time": begin.isoformat().replace("+00:00", "Z"),
        "end_time": finish.isoformat().replace("+00:00", "Z"),
        "duration_ms": duration_ms,
        "attributes": attributes or {},
        "events": events,
        "model_name": model_name,
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": total_tokens,
        "session_id": "",
        "user_id": "",
        "annotations": annotations or [],
    }


# -- a synthetic project for the analyst --------------------------------------------------

WINDOW = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"}


def trace_id(n: int) -> str:
    return f"ab{n:02d}".ljust(32, "0")


def span_id(n: int, k: int) -> str:
    return f"{n:02d}{k:02d}".ljust(16, "0")


def synthetic_spans() -> list[dict]:
    """Twelve agent traces on 2025-03-01, hour n for trace n, each: agent → retrieve_docs,
    search_inventory, ChatOpenAI. Planted problems:

    - search_inventory raises TimeoutError in traces 1-4, ValueError in trace 5;
    - ChatOpenAI raises RateLimitError in traces 6 and 7;
    - retrieve_docs takes 2.5 s instead of 0.1 s in traces 8, 9, 10;
    - ChatOpenAI is labelled correctness=incorrect in 9, 10, 11 (correct in 12),
      and hallucination score 0.2 in 11;
    - ChatOpenAI uses 20,000 tokens in trace 12 (1,000 elsewhere);
    - an error outside the window (2025-02-27) that must be ignored.
    """
    spans = []
    for n in range(1, 13):
        tid = trace_id(n)
        root = span_id(n, 0)
        at = f"2025-03-01T{n:02d}:00:0"
        spans.append(make_span(tid, root, "agent", kind="AGENT", start=at + "0Z", duration_ms=4000))
        spans.append(
            make_span(
                tid,
                span_id(n, 1),
                "retrieve_docs",
                kind="RETRIEVER",
                start=at + "1Z",
                parent=root,
                duration_ms=2500 if n in (8, 9, 10) else 100,
            )
        )
        tool_error = {
            1: ("TimeoutError", "inventory service timed out after 30s"),
            2: ("TimeoutError", "inventory service timed out after 30s"),
            3: ("TimeoutError", "inventory service timed out after 30s"),
            4: ("TimeoutError", "inventory service timed out after 30s"),
            5: ("ValueError", "sku must not be empty"),
        }.get(n)
        spans.append(
            make_span(
                tid,
                span_id(n, 2),
                "search_inventory",
                kind="TOOL",
                start=at + "2Z",
                parent=root,
                duration_ms=200,
                status="ERROR" if tool_error else "OK",
                exception=tool_error,
            )
        )
        llm_error = ("RateLimitError", "Rate limit reached for gpt-4o") if n in (6, 7) else None
        annotations = []
        if n in (9, 10, 11):
            annotations.append(
                {
                    "name": "correctness",
                    "label": "incorrect",
                    "score": 0.0,
                    "explanation": f"Quoted the wrong price (trace {n}).",
                    "annotator_kind": "LLM",
                    "identifier": "",
                }
            )
        if n == 12:
            annotations.append(
                {
                    "name": "correctness",
                    "label": "correct",
                    "score": 1.0,
                    "explanation": "",
                    "annotator_kind": "HUMAN",
                    "identifier": "",
                }
            )
        if n == 11:
            annotations.append(
                {
                    "name": "hallucination",
                    "label": "",
                    "score": 0.2,
                    "explanation": "Invented a return policy.",
                    "annotator_kind": "LLM",
                    "identifier": "",
                }
            )
        spans.append(
            make_span(
                tid,
                span_id(n, 3),
                "ChatOpenAI",
                kind="LLM",
                start=at + "3Z",
                parent=root,
                duration_ms=800,
                model_name="gpt-4o",
                status="ERROR" if llm_error else "OK",
                exception=llm_error,
                total_tokens=None if llm_error else (20000 if n == 12 else 1000),
                annotations=annotations,
            )
        )
    spans.append(
        make_span(
            trace_id(99),
            span_id(99, 0),
            "search_inventory",
            kind="TOOL",
            start="2025-02-27T12:00:00Z",
            status="ERROR",
            exception=("KeyError", "old failure"),
        )
    )
    return spans


def _exception_type(span: dict) -> str | None:
    for event in span.get("events") or []:
        attributes = event.get("attributes") or {}
        if event.get("name") == "exception" or "exception.type" in attributes:
            return str(attributes.get("exception.type") or "")
    return None


def _dimension(span: dict, dimension: str):
    if dimension.startswith("attr:"):
        value = (span.get("attributes") or {}).get(dimension[5:])
        return None if value is None else str(value)
    if dimension == "exception.type":
        return _exception_type(span)
    return span.get({"status": "status_code", "model": "model_name"}.get(dimension, dimension))


def _nearest_rank(values: list[float], fraction: float):
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(fraction * len(ordered))) - 1])


def _metrics(spans: list[dict]) -> dict:
    durations = [s["duration_ms"] for s in spans]
    errors = sum(1 for s in spans if s["status_code"] == "ERROR")
    costs = [
        s["attributes"]["llm.cost.total"]
        for s in spans
        if s.get("kind") == "LLM"
        and isinstance((s.get("attributes") or {}).get("llm.cost.total"), int | float)
    ]
    return {
        "spans": len(spans),
        "traces": len({s["trace_id"] for s in spans}),
        "errors": errors,
        "error_rate": round(errors / len(spans), 6) if spans else None,
        "p50_ms": _nearest_rank(durations, 0.5),
        "p95_ms": _nearest_rank(durations, 0.95),
        "p99_ms": _nearest_rank(durations, 0.99),
        "max_ms": max(durations) if durations else None,
        "prompt_tokens": sum(s.get("prompt_tokens") or 0 for s in spans),
        "completion_tokens": sum(s.get("completion_tokens") or 0 for s in spans),
        "total_tokens": sum(s.get("total_tokens") or 0 for s in spans),
        "cost": round(sum(costs), 6) if costs else None,
    }


def _seconds(interval: str) -> int:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(interval[-1])
    return int(interval[:-1]) * unit if unit else int(interval)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
