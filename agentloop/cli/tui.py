"""`agentloop` with no command: sessions, a live transcript, Signal issues (textual).

The same API and the same follow() as the command line: the transcript is the
session's SSE stream, resumed after the last event shown when it drops.
Keys: Enter opens the selected session's transcript, s/t/i switch tabs,
r refreshes the lists, q quits.
"""

from __future__ import annotations

import threading

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header, RichLog, TabbedContent, TabPane

from agentloop.cli.client import Api, ApiError
from agentloop.cli.config import Context
from agentloop.cli.follow import follow
from agentloop.cli.output import event_text

SESSION_LIMIT = 200


class Stopped(Exception):
    """The transcript being followed was closed (another session was opened)."""


class AgentloopApp(App):
    TITLE = "agentloop"
    BINDINGS = [
        ("q", "quit", "Quit"),
        ("s", "tab('sessions')", "Sessions"),
        ("t", "tab('transcript')", "Transcript"),
        ("i", "tab('issues')", "Signal issues"),
        ("r", "refresh", "Refresh"),
    ]

    def __init__(self, api: Api):
        super().__init__()
        self.api = api
        self.following: threading.Event | None = None
        self.sub_title = api.context.url

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="sessions"):
            with TabPane("Sessions", id="sessions"):
                yield DataTable(id="session-table", cursor_type="row")
            with TabPane("Transcript", id="transcript"):
                yield RichLog(id="transcript-log", wrap=True, markup=False)
            with TabPane("Signal issues", id="issues"):
                yield DataTable(id="issue-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        sessions = self.query_one("#session-table", DataTable)
        sessions.add_columns("id", "status", "project", "harness", "prompt", "created")
        issues = self.query_one("#issue-table", DataTable)
        issues.add_columns("project", "severity", "state", "title", "traces", "last seen")
        sessions.focus()
        self.action_refresh()

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        focus = {"sessions": "#session-table", "issues": "#issue-table"}.get(name)
        if focus:
            self.query_one(focus).focus()

    def action_refresh(self) -> None:
        self.run_worker(self._load_lists, thread=True, group="lists", exclusive=True)

    def _load_lists(self) -> None:
        try:
            sessions = self.api.all_pages("/api/v1/sessions/", limit=SESSION_LIMIT)
            projects = self.api.get("/api/v1/signal/projects/")["data"]
            issues = []
            for status in projects:
                project = status["project"]
                for issue in self.api.all_pages(f"/api/v1/projects/{project['id']}/signal/issues"):
                    issues.append((project, issue))
        except ApiError as error:
            self.call_from_thread(self.notify, str(error), severity="error", timeout=10)
            return
        self.call_from_thread(self._show_lists, sessions, issues)

    def _show_lists(self, sessions: list[dict], issues: list) -> None:
        table = self.query_one("#session-table", DataTable)
        table.clear()
        for run in sessions:
            prompt = " ".join(run["prompt"].split())[:60]
            table.add_row(
                run["id"][:8],
                run["status"],
                run["project"]["name"],
                run["harness"],
                prompt,
                run["created_at"][:16].replace("T", " "),
                key=run["id"],
            )
        table = self.query_one("#issue-table", DataTable)
        table.clear()
        for project, issue in issues:
            table.add_row(
                project["name"],
                issue["severity"],
                issue["state"],
                issue["title"],
                str(issue["affected_traces"]),
                (issue["last_seen_at"] or "")[:16].replace("T", " "),
                key=f"{project['id']}:{issue['id']}",
            )

    async def action_quit(self) -> None:
        # A followed transcript's thread is blocked reading the stream: stop it
        # and close the client under it, so quitting does not wait for the next event.
        if self.following is not None:
            self.following.set()
        self.api.close()
        self.exit()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        if message.data_table.id == "session-table":
            self.open_transcript(message.row_key.value)

    def open_transcript(self, code: str) -> None:
        if self.following is not None:
            self.following.set()
        stop = self.following = threading.Event()
        log = self.query_one("#transcript-log", RichLog)
        log.clear()
        log.write(f"Session {code}")
        self.action_tab("transcript")
        self.run_worker(lambda: self._follow(code, stop, log), thread=True, group="follow")

    def _follow(self, code: str, stop: threading.Event, log: RichLog) -> None:
        def on_event(event: dict) -> None:
            if stop.is_set():
                raise Stopped
            self.call_from_thread(log.write, event_text(event))

        try:
            end = follow(self.api, code, on_event, stop=stop)
        except Stopped:
            return
        except ApiError as error:
            if not stop.is_set():
                self.call_from_thread(log.write, f"✗ {error}")
            return
        if end is not None and not stop.is_set():
            reason = f": {end['exit_reason']}" if end.get("exit_reason") else ""
            self.call_from_thread(log.write, f"Session {end['status']}{reason}")


def run_tui(context: Context) -> int:
    api = Api(context)
    try:
        AgentloopApp(api).run()
    finally:
        api.close()
    return 0
