"""The runner's main loop: spec → running → turn → (waiting → follow-up → turn)* → final status.

Standard library only. Four helper threads run beside the turn:
- the event queue's sender (events.py);
- the inbox poller: long-polls GET inbox the whole time, queues follow-ups for
  the main thread and turns a stop request into harness.stop() at once, even
  mid-turn; the main thread never blocks on the network while waiting, so a
  SIGTERM is acted on within a fraction of a second;
- the heartbeat: tells the server we are alive; its answer can also say stop;
- the signal watcher: the SIGTERM/SIGINT handler (on_signal) only writes a byte
  to a pipe, because a handler runs in the main thread between two bytecodes,
  possibly while that thread holds the runner's lock; this thread reads the
  byte and stops the run the ordinary way (locks, harness.stop() and its wait).

How a run ends (the state POSTed last):
- the harness finished a non-interactive turn → succeeded;
- a turn failed (or the harness crashed, or is unknown) → failed, with the reason;
- the user asked to stop (inbox/heartbeat), or the runner got SIGTERM → cancelled;
- the spec's time limit passed → failed, "time limit ... reached".
Events are flushed before the final status: the server refuses writes to a
finished run.
"""

from __future__ import annotations

import os
import queue
import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from agentloop.runner.client import ApiError, RunnerClient
from agentloop.runner.credentials import harness_environment, make_undumpable, take_run_token
from agentloop.runner.events import EventQueue
from agentloop.runner.harnesses.base import Harness, TurnResult
from agentloop.runner.harnesses.registry import UnknownHarness, get_harness
from agentloop.runner.repo import (
    RepositoryError,
    branch_artifact,
    clone_repository,
    publish_branch,
)
from agentloop.runner.workspace import ArtifactTracker, prepare_workspace

STOP_USER = "user"
STOP_SIGNAL = "signal"
STOP_TIME_LIMIT = "time_limit"
STOP_GONE = "gone"  # the server no longer accepts us (token revoked)


def _log(message: str) -> None:
    print(f"agentloop-runner: {message}", file=sys.stderr, flush=True)


def add_usage(total: dict, usage: dict) -> dict:
    for key, value in (usage or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = round(total.get(key, 0) + value, 6)
    return total


class Runner:
    def __init__(
        self,
        client: RunnerClient,
        env: dict[str, str],
        workspace: Path,
        *,
        harness_factory: Callable[[str], type[Harness]] = get_harness,
        events: EventQueue | None = None,
        heartbeat_interval: float = 10.0,
        inbox_wait: int = 25,
        log: Callable[[str], None] = _log,
    ):
        self.client = client
        self.env = env
        self.workspace = workspace
        self.harness_factory = harness_factory
        self.events = events or EventQueue(client)
        self.heartbeat_interval = heartbeat_interval
        self.inbox_wait = inbox_wait
        self.log = log
        self.artifacts = ArtifactTracker(workspace)
        self.checkout = None  # the run's repository, when its spec has one

        self.stop_event = threading.Event()
        self.stop_reason: str | None = None
        self.done = threading.Event()
        self.followups: queue.Queue[dict] = queue.Queue()
        self._lock = threading.Lock()
        self.harness: Harness | None = None
        self.turn_running = False
        self.session_id: str | None = None
        self.usage: dict = {}
        self.spec: dict = {}
        self.time_limit: float | None = None
        # Made here, not in run(): a signal may come as soon as the handler is
        # installed. Non-blocking, so the handler can never wait on a full pipe.
        self._signal_read, self._signal_write = os.pipe()
        os.set_blocking(self._signal_write, False)
        self._signals_watched = True

    # -- stopping -----------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Safe from any thread, but not from a signal handler (it locks, and
        harness.stop() may wait): the handler is on_signal."""
        with self._lock:
            if self.stop_event.is_set():
                return
            self.stop_reason = reason
            self.stop_event.set()
            harness = self.harness if self.turn_running else None
        if harness is not None:
            try:
                harness.stop()
            except Exception as error:  # a harness bug must not keep the run alive
                self.log(f"harness.stop() failed: {error!r}")

    def on_signal(self, signum, frame) -> None:
        """The SIGTERM/SIGINT handler: records the wish to stop, nothing else.

        Async-signal-safe: no lock, no wait, no harness call (the main thread may
        be holding the very lock request_stop takes). The signal watcher thread
        does the stopping.
        """
        fd = self._signal_write
        if fd is None:  # the run is over and the pipe closed
            return
        try:
            os.write(fd, b"s")
        except OSError:  # a full pipe already holds a wish to stop
            pass

    def _watch_signals(self) -> None:
        while True:
            os.read(self._signal_read, 1)
            if not self._signals_watched:
                return
            self.request_stop(STOP_SIGNAL)

    def _stop_watching_signals(self, watcher: threading.Thread) -> None:
        self._signals_watched = False
        fd, self._signal_write = self._signal_write, None
        try:
            os.write(fd, b"x")  # wakes the watcher, which now returns
        except OSError:  # full: the watcher has bytes to read and wakes anyway
            pass
        watcher.join(timeout=10)
        os.close(fd)
        if not watcher.is_alive():
            os.close(self._signal_read)

    def _stopped_outcome(self) -> tuple[str, str]:
        if self.stop_reason == STOP_TIME_LIMIT:
            return "failed", f"time limit of {self.time_limit:g} s reached"
        if self.stop_reason == STOP_SIGNAL:
            return "cancelled", "runner terminated by a signal"
        if self.stop_reason == STOP_GONE:
            return "cancelled", "the server no longer accepts this run"
        return "cancelled", "stopped by user"

    # -- background threads -------------------------------------------------------------

    def _poll_inbox(self) -> None:
        # A continued run's earlier follow-ups were answered by its earlier launches.
        after = int(self.spec.get("inbox_after") or 0)
        failures = 0
        while not self.done.is_set() and not self.stop_event.is_set():
            try:
                answer = self.client.inbox(after, self.inbox_wait)
                failures = 0
            except ApiError as error:
                if error.status in (401, 403, 404, 409, 410):
                    self.log(f"inbox refused ({error.message}); stopping")
                    self.request_stop(STOP_GONE)
                    return
                failures += 1
                self.done.wait(min(30.0, 0.5 * 2**failures))
                continue
            for item in answer.get("followups") or []:
                seq = int(item.get("seq", 0))
                if seq > after:
                    after = seq
                    self.followups.put(item)
            if answer.get("stop"):
                self.request_stop(STOP_USER)
                return

    def _heartbeat(self) -> None:
        while not self.done.wait(self.heartbeat_interval):
            try:
                answer = self.client.heartbeat()
            except ApiError as error:
                self.log(f"heartbeat failed: {error.message}")
                if error.status in (401, 403):
                    self.request_stop(STOP_GONE)
                continue
            if answer.get("stop"):
                self.request_stop(STOP_USER)

    def _start_threads(self) -> None:
        for target, name in (
            (self._poll_inbox, "agentloop-inbox"),
            (self._heartbeat, "agentloop-heartbeat"),
        ):
            threading.Thread(target=target, name=name, daemon=True).start()
        limit = self.spec.get("time_limit_seconds")
        if isinstance(limit, int | float) and limit > 0:
            self.time_limit = float(limit)
            timer = threading.Timer(self.time_limit, self.request_stop, args=(STOP_TIME_LIMIT,))
            timer.daemon = True
            timer.start()
            self._timer = timer

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        watcher = threading.Thread(
            target=self._watch_signals, name="agentloop-signals", daemon=True
        )
        watcher.start()
        try:
            return self._run()
        finally:
            self._stop_watching_signals(watcher)

    def _run(self) -> int:
        try:
            self.spec = self.client.spec()
        except ApiError as error:
            self.log(f"cannot read the run's spec: {error.message}")
            return 1
        harness_env = harness_environment(prepare_workspace(self.workspace, self.spec, self.env))
        self.events.start()
        try:
            self.client.post_status("running")
        except ApiError as error:
            self.log(f"the server did not let the run start: {error.message}")
            self.events.close(timeout=10)
            return 1
        self._start_threads()
        try:
            clone_error = self._clone_repository(harness_env)
            state, reason = ("failed", clone_error) if clone_error else self._drive(harness_env)
        except Exception as error:  # the runner's own bug: still end the run honestly
            state, reason = "failed", f"runner error: {error!r}"
            self.events.emit("error", {"message": reason}, source="system")
        finally:
            self.done.set()
            timer = getattr(self, "_timer", None)
            if timer is not None:
                timer.cancel()
        self._publish_branch(harness_env)
        self._upload_artifacts()
        if not self.events.close(timeout=60):
            self.log("some events were not delivered")
        return self._finish(state, reason)

    def _drive(self, harness_env: dict[str, str]) -> tuple[str, str]:
        name = self.spec.get("harness") or ""
        try:
            harness_class = self.harness_factory(name)
        except UnknownHarness as error:
            self.events.emit("error", {"message": str(error)}, source="system")
            return "failed", str(error)
        self.harness = harness_class(self.spec, self.workspace, harness_env, self.events)
        prompt = self.spec.get("prompt") or ""
        while True:
            result = self._turn(prompt)
            if self.stop_event.is_set():
                return self._stopped_outcome()
            if not result.ok:
                return "failed", result.error or "the turn failed"
            self._upload_artifacts()
            if not self.harness.interactive:
                return "succeeded", ""
            self.client.post_status(
                "waiting",
                harness_session_id=self.session_id,
                harness_state=self._harness_state(),
                usage=self.usage or None,
            )
            followup = self._next_followup()
            if followup is None:
                return self._stopped_outcome()
            self.client.post_status("running")
            prompt = followup.get("text") or ""

    def _turn(self, prompt: str) -> TurnResult:
        with self._lock:
            if self.stop_event.is_set():
                return TurnResult(ok=False, stopped=True, error="stopped before the turn began")
            self.turn_running = True
        try:
            result = self.harness.run_turn(prompt)
        except Exception as error:
            name = getattr(self.harness, "name", type(self.harness).__name__)
            message = f"harness {name} crashed: {error!r}"
            self.events.emit("error", {"message": message}, source="system")
            result = TurnResult(ok=False, error=message)
        finally:
            with self._lock:
                self.turn_running = False
        if result.session_id:
            self.session_id = result.session_id
        add_usage(self.usage, result.usage)
        # Which CLI call the turn was (claude-code's --session-id or --resume), for
        # whoever reads the sandbox log; the prompt went to stdin, not here.
        command = getattr(self.harness, "last_command", None)
        if command:
            self.log("turn ran: " + shlex.join(command)[:400])
        return result

    def _harness_state(self) -> str | None:
        """The harness's record of its session (claude-code's), posted with
        "waiting" (after every turn, before any stop) so a continued run resumes it."""
        saved = getattr(self.harness, "saved_state", None)
        return saved() if saved is not None else None

    def _next_followup(self) -> dict | None:
        while not self.stop_event.is_set():
            try:
                return self.followups.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    # -- the repository (agentloop/runner/repo.py) ---------------------------------------

    def _clone_repository(self, harness_env: dict[str, str]) -> str | None:
        """Check out the spec's repository in the workspace; the reason when that failed."""
        repository = self.spec.get("repository")
        if not repository:
            return None
        try:
            self.checkout = clone_repository(repository, self.workspace, harness_env)
        except RepositoryError as error:
            self.events.emit("error", {"message": str(error)}, source="system")
            return str(error)
        return None

    def _publish_branch(self, harness_env: dict[str, str]) -> None:
        """Push what the agent left as agentloop/<run-code> and report a branch artifact."""
        if self.checkout is None:
            return
        try:
            metadata = publish_branch(self.checkout, str(self.spec.get("run") or ""), harness_env)
        except (RepositoryError, ValueError) as error:
            self.events.emit("error", {"message": f"branch not pushed: {error}"}, source="system")
            return
        if metadata is None:
            return
        key, name, content = branch_artifact(metadata)
        try:
            answer = self.client.post_artifact(key, "branch", name, content, metadata)
        except ApiError as error:
            self.events.emit(
                "error",
                {"message": f"branch artifact not recorded: {error.message}"},
                source="system",
            )
            return
        self.events.emit(
            "artifact",
            {"artifact_id": answer.get("id"), "kind": "branch", "name": name},
            source="system",
        )

    def _upload_artifacts(self) -> None:
        changed, problems = self.artifacts.changed()
        for problem in problems:
            self.events.emit("error", {"message": problem}, source="system")
        for artifact in changed:
            try:
                answer = self.client.post_artifact(
                    artifact.key, artifact.kind, artifact.name, artifact.content, artifact.metadata
                )
            except ApiError as error:
                self.events.emit(
                    "error",
                    {"message": f"artifact {artifact.name} not uploaded: {error.message}"},
                    source="system",
                )
                continue
            self.artifacts.mark_uploaded(artifact)
            self.events.emit(
                "artifact",
                {"artifact_id": answer.get("id"), "kind": artifact.kind, "name": artifact.name},
                source="system",
            )

    def _finish(self, state: str, reason: str) -> int:
        try:
            self.client.post_status(
                state,
                exit_reason=reason or None,
                harness_session_id=self.session_id,
                usage=self.usage or None,
            )
        except ApiError as error:
            # 409: maybe the server already ended the run the same way (a stop it
            # recorded itself). That is the outcome we wanted to report.
            if error.status == 409:
                try:
                    current = self.client.heartbeat().get("status")
                except ApiError:
                    current = None
                if current == state:
                    return 0
            if error.status == 401:
                # A run's token dies the moment it ends: a retried final post (its
                # first answer lost), or a stop the server recorded first.
                self.log(f"the server has ended the run (its token is revoked); ours: {state}")
                return 0
            self.log(f"could not report the run {state}: {error.message}")
            return 1
        self.log(f"run {state}" + (f": {reason}" if reason else ""))
        return 0


def build_runner(env: dict[str, str], cwd: Path, **runner_kwargs) -> Runner | None:
    """A Runner for this environment, or None (after saying why) when it lacks what it needs.

    The run token leaves the environment here (agentloop.runner.credentials): the
    harness gets the narrower harness key, and this process becomes undumpable so
    the agent cannot read the token out of it."""
    url = env.get("AGENTLOOP_URL", "").strip()
    token = take_run_token(env)
    make_undumpable()
    missing = [
        name
        for name, value in (("AGENTLOOP_URL", url), ("AGENTLOOP_RUN_TOKEN", token))
        if not value
    ]
    if missing:
        _log(f"missing environment variable(s): {', '.join(missing)}")
        return None
    return Runner(RunnerClient(url, token), env, cwd, **runner_kwargs)
