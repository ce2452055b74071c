"""`agentloop`: the command line of the agentloop REST API (docs/cli.md).

Every command is one or a few API calls; the server decides who may do what
(the same access helpers as the pages). Exit status: 0 done; 2 refused, bad
usage or server unreachable (the message says which); and for a followed run
its outcome: 0 succeeded, 1 failed, 3 cancelled, 4 timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from agentloop.cli import config, output
from agentloop.cli.client import Api, ApiError
from agentloop.cli.follow import follow

OUTCOME_STATUS = {"succeeded": 0, "failed": 1, "cancelled": 3, "timed_out": 4}
ERROR_STATUS = 2
DEFAULT_LIST_LIMIT = 100  # sessions list: the newest; --all for every one

SESSION_COLUMNS = ["id", "status", "project.name", "harness", "preset_name", "created_at"]
PRESET_COLUMNS = ["id", "space.name", "name", "harness", "model"]
SKILL_COLUMNS = ["id", "space.name", "kind", "name", "secrets_set"]
AUTOMATION_COLUMNS = ["id", "space.name", "name", "trigger", "enabled", "next_fire_at"]
SIGNAL_COLUMNS = ["project.id", "project.name", "enabled", "running", "open_issues"]
ISSUE_COLUMNS = ["id", "severity", "state", "title", "affected_traces", "last_seen_at"]
REVIEW_COLUMNS = ["id", "kind", "name", "project.name", "session", "created_at"]
ARTIFACT_COLUMNS = ["id", "kind", "name", "review_state", "created_at"]
EVENT_COLUMNS = ["seq", "source", "kind", "payload"]


class UsageError(Exception):
    pass


# -- helpers ----------------------------------------------------------------------------


def _columns(args, default: list[str]) -> list[str]:
    return [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else default


def _show_list(args, rows, default):
    output.emit(rows, args.output, _columns(args, default))


def _show_one(args, row, default=None):
    output.emit(row, args.output, _columns(args, default) if args.columns or default else None)


def _read_text(args, what: str) -> str:
    """A prompt or message: the argument, a file (--file), or stdin when it is '-'."""
    text = getattr(args, "text", None)
    path = getattr(args, "file", None)
    if path:
        return Path(path).read_text()
    if text == "-" or (text is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    if not text:
        raise UsageError(f"Give the {what} as an argument, with --file, or on stdin ('-').")
    return text


def _json_file(path: str | None) -> dict:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text() if path != "-" else sys.stdin.read())
    except (OSError, ValueError) as error:
        raise UsageError(f"Cannot read JSON from {path}: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object.")
    return data


def _secrets(args) -> dict[str, str]:
    """Skill secrets, never from argv: FIELD=ENVVAR, FIELD=@file, or FIELD from stdin."""
    secrets: dict[str, str] = {}
    for item in args.secret_env or []:
        field, _, var = item.partition("=")
        if not var:
            raise UsageError(f"--secret-env wants FIELD=ENVVAR, not {item!r}.")
        if var not in os.environ:
            raise UsageError(f"--secret-env {item}: the environment has no {var}.")
        secrets[field] = os.environ[var]
    for item in args.secret_file or []:
        field, _, path = item.partition("=")
        if not path:
            raise UsageError(f"--secret-file wants FIELD=PATH, not {item!r}.")
        try:
            secrets[field] = Path(path).expanduser().read_text().rstrip("\n")
        except OSError as error:
            raise UsageError(f"--secret-file {item}: {error.strerror}.") from None
    if args.secret_stdin:
        secrets[args.secret_stdin] = sys.stdin.read().rstrip("\n")
    return secrets


def _fields(args, names: list[str]) -> dict:
    body = {}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    return body


# -- contexts -----------------------------------------------------------------------------


def cmd_context(args, _api=None):
    data = config.load_file()
    if args.action == "list":
        rows = [
            {"name": name, "url": entry.get("url", ""), "current": name == data.get("current")}
            for name, entry in sorted(data["contexts"].items())
        ]
        return _show_list(args, rows, ["name", "url", "current"])
    if args.action == "show":
        context = config.resolve(args.context)
        hint = "…" + context.token[-4:] if context.token else ""
        return _show_one(args, {"name": context.name, "url": context.url, "token": hint})
    if args.action == "add":
        if not args.name or not args.url:
            raise UsageError("agentloop context add NAME --url URL (the token comes from stdin).")
        entry = {"url": args.url.rstrip("/")}
        if args.token_file:
            entry["token_file"] = args.token_file
        else:
            token = os.environ.get("AGENTLOOP_TOKEN") or ""
            if not token:
                if sys.stdin.isatty():
                    import getpass

                    token = getpass.getpass("Token (al_pt_…): ")
                else:
                    token = sys.stdin.read()
            token = token.strip()
            if not token:
                raise UsageError("No token: pipe it on stdin, or use --token-file.")
            entry["token"] = token
        data["contexts"][args.name] = entry
        data.setdefault("current", args.name)
        path = config.save_file(data)
        return output.console.print(f"Saved the context {args.name} in {path}.")
    if args.action == "use":
        if args.name not in data["contexts"]:
            raise UsageError(f"No context named {args.name!r}.")
        data["current"] = args.name
        config.save_file(data)
        return output.console.print(f"Using {args.name}.")
    if args.action == "remove":
        if data["contexts"].pop(args.name, None) is None:
            raise UsageError(f"No context named {args.name!r}.")
        if data.get("current") == args.name:
            data.pop("current")
        config.save_file(data)
        return output.console.print(f"Removed {args.name}.")
    raise UsageError(f"Unknown context action {args.action}.")


# -- sessions -----------------------------------------------------------------------------


def _follow(api, args, code: str, after: int = 0) -> int:
    def on_reconnect(last: int, why: str) -> None:
        output.errors.print(f"[dim]reconnecting after seq {last} ({why})[/dim]")

    end = follow(
        api,
        code,
        lambda event: output.print_event(event, args.output),
        after=after,
        on_reconnect=on_reconnect,
    )
    if args.output == "json":
        sys.stdout.write(json.dumps({"end": end}) + "\n")
    else:
        reason = f": {end['exit_reason']}" if end.get("exit_reason") else ""
        output.console.print(f"[bold]Session {code} {end['status']}{reason}[/bold]")
    return OUTCOME_STATUS.get(end["status"], 1)


def cmd_sessions(args, api: Api):
    if args.action == "list":
        rows = api.all_pages(
            "/api/v1/sessions/",
            limit=None if args.all else (args.limit or DEFAULT_LIST_LIMIT),
            project=args.project,
            status=args.status,
            kind=args.kind,
            trigger=args.trigger,
            preset=args.preset,
            creator=args.creator,
        )
        return _show_list(args, rows, SESSION_COLUMNS)
    if args.action == "show":
        return _show_one(args, api.get(f"/api/v1/sessions/{args.id}/"))
    if args.action == "start":
        if args.id is not None and args.text is None:
            args.text, args.id = args.id, None  # start takes no id: it was the prompt
        if args.project is None:
            raise UsageError("sessions start needs --project ID.")
        body = {"project": args.project, "prompt": _read_text(args, "prompt")}
        if args.preset is not None:
            body["preset"] = args.preset
            overrides = _json_file(args.overrides)
            if args.model:
                overrides["model"] = args.model
            if overrides:
                body["overrides"] = overrides
        else:
            body["config"] = _json_file(args.config)
            if args.harness:
                body["config"]["harness"] = args.harness
            if args.model:
                body["config"]["model"] = args.model
        run = api.post("/api/v1/sessions/", body)
        if not args.follow:
            return _show_one(args, run)
        if args.output != "json":
            output.console.print(f"Started session {run['id']}.")
        return _follow(api, args, run["id"])
    if args.action == "send":
        event = api.post(
            f"/api/v1/sessions/{args.id}/messages", {"text": _read_text(args, "message")}
        )
        return _show_one(args, event)
    if args.action == "events":
        page = api.get(f"/api/v1/sessions/{args.id}/events", after=args.after, limit=args.limit)
        if args.output == "json":
            return output.emit(page, "json")
        for event in page["data"]:
            output.print_event(event, args.output)
        return None
    if args.action == "artifacts":
        if args.content is not None:
            text = api.text(f"/api/v1/sessions/{args.id}/artifacts/{args.content}/content")
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            return None
        rows = api.all_pages(f"/api/v1/sessions/{args.id}/artifacts")
        return _show_list(args, rows, ARTIFACT_COLUMNS)
    if args.action == "stop":
        answer = api.post(f"/api/v1/sessions/{args.id}/stop")
        if args.output == "json":
            return output.emit(answer, "json")
        state = answer["session"]["status"]
        said = "Asked it to stop" if answer["stopping"] else "Nothing to stop"
        return output.console.print(f"{said} (it is {state}).")
    raise UsageError(f"Unknown sessions action {args.action}.")


def cmd_follow(args, api: Api) -> int:
    return _follow(api, args, args.id, after=args.after)


# -- presets and skills -------------------------------------------------------------------

PRESET_FLAGS = ["name", "harness", "model", "system_prompt", "max_turns", "time_limit_seconds"]


def cmd_presets(args, api: Api):
    if args.action == "list":
        rows = api.all_pages("/api/v1/presets/", space=args.space)
        return _show_list(args, rows, PRESET_COLUMNS)
    if args.action == "show":
        return _show_one(args, api.get(f"/api/v1/presets/{args.id}/"))
    if args.action in ("create", "update"):
        body = {**_json_file(args.from_file), **_fields(args, PRESET_FLAGS)}
        if args.skills is not None:
            body["skills"] = [int(s) for s in args.skills.split(",") if s]
        if args.action == "create":
            if args.space is None:
                raise UsageError("presets create needs --space ID.")
            body["space"] = args.space
            return _show_one(args, api.post("/api/v1/presets/", body))
        return _show_one(args, api.patch(f"/api/v1/presets/{args.id}/", body))
    if args.action == "duplicate":
        return _show_one(args, api.post(f"/api/v1/presets/{args.id}/duplicate"))
    if args.action == "delete":
        api.delete(f"/api/v1/presets/{args.id}/")
        return output.console.print(f"Deleted preset {args.id}.")
    raise UsageError(f"Unknown presets action {args.action}.")


def cmd_skills(args, api: Api):
    if args.action == "list":
        return _show_list(args, api.all_pages("/api/v1/skills/", space=args.space), SKILL_COLUMNS)
    if args.action == "show":
        return _show_one(args, api.get(f"/api/v1/skills/{args.id}/"))
    if args.action in ("create", "update"):
        body = _fields(args, ["name", "kind"])
        config_values = dict(item.partition("=")[::2] for item in args.set or [])
        if config_values:
            body["config"] = config_values
        secrets = _secrets(args)
        if secrets:
            body["secrets"] = secrets
        if args.remove_secret:
            body["remove_secrets"] = args.remove_secret
        if args.action == "create":
            if args.space is None:
                raise UsageError("skills create needs --space ID.")
            body["space"] = args.space
            return _show_one(args, api.post("/api/v1/skills/", body))
        return _show_one(args, api.patch(f"/api/v1/skills/{args.id}/", body))
    if args.action == "delete":
        api.delete(f"/api/v1/skills/{args.id}/")
        return output.console.print(f"Deleted skill {args.id}.")
    raise UsageError(f"Unknown skills action {args.action}.")


# -- automations, Signal, review -------------------------------------------------------------


def cmd_automations(args, api: Api):
    if args.action == "list":
        rows = api.all_pages("/api/v1/automations/", space=args.space)
        return _show_list(args, rows, AUTOMATION_COLUMNS)
    if args.action == "show":
        return _show_one(args, api.get(f"/api/v1/automations/{args.id}/"))
    if args.action == "trigger":
        fire = api.post(f"/api/v1/automations/{args.id}/trigger")
        if args.follow and fire.get("session"):
            return _follow(api, args, fire["session"]["id"])
        return _show_one(args, fire)
    if args.action in ("pause", "resume"):
        body = {"reason": args.reason} if args.action == "pause" and args.reason else None
        return _show_one(args, api.post(f"/api/v1/automations/{args.id}/{args.action}", body))
    if args.action == "delete":
        api.delete(f"/api/v1/automations/{args.id}/")
        return output.console.print(f"Deleted automation {args.id}.")
    raise UsageError(f"Unknown automations action {args.action}.")


def cmd_signal(args, api: Api):
    base = f"/api/v1/projects/{args.project}/signal" if args.project is not None else None
    if args.action == "projects":
        return _show_list(args, api.get("/api/v1/signal/projects/")["data"], SIGNAL_COLUMNS)
    if base is None:
        raise UsageError(f"signal {args.action} needs a project id.")
    if args.action == "status":
        return _show_one(args, api.get(base))
    if args.action in ("enable", "disable"):
        status = api.post(f"{base}/{args.action}")
        if args.output == "json":
            return output.emit(status, "json")
        state = "on" if status["enabled"] else "off"
        return output.console.print(f"Signal is {state} for {status['project']['name']}.")
    if args.action == "run":
        fire = api.post(f"{base}/run")
        if args.follow and fire.get("session"):
            return _follow(api, args, fire["session"]["id"])
        return _show_one(args, fire)
    if args.action == "issues":
        rows = api.all_pages(f"{base}/issues", state=args.state, severity=args.severity)
        return _show_list(args, rows, ISSUE_COLUMNS)
    if args.action == "show":
        if args.issue is None:
            raise UsageError("signal show PROJECT ISSUE")
        return _show_one(args, api.get(f"{base}/issues/{args.issue}"))
    raise UsageError(f"Unknown signal action {args.action}.")


def cmd_review(args, api: Api):
    if args.action == "list":
        return _show_list(args, api.all_pages("/api/v1/review/"), REVIEW_COLUMNS)
    if args.action in ("approve", "reject"):
        body = {"comment": args.comment} if args.comment else {}
        artifact = api.post(f"/api/v1/review/{args.id}/{args.action}", body)
        if args.output == "json":
            return output.emit(artifact, "json")
        return output.console.print(f"{artifact['name']}: {artifact['review_state']}.")
    raise UsageError(f"Unknown review action {args.action}.")


# -- the parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", choices=["table", "json"], default=None)
    common.add_argument("--columns", help="Comma separated, dotted for nested: id,project.name")
    common.add_argument("--context", help="A context of the contexts file (docs/cli.md).")

    parser = argparse.ArgumentParser(
        prog="agentloop",
        description="The agentloop API from a terminal. With no command: the terminal UI.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command")

    def command(name, help_text, actions_):
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.add_argument("action", choices=actions_)
        return p

    p = command("context", "servers and tokens", ["list", "show", "add", "use", "remove"])
    p.add_argument("name", nargs="?")
    p.add_argument("--url")
    p.add_argument("--token-file", help="Read the token from this file when used.")
    p.set_defaults(handler=cmd_context, needs_api=False)

    p = command(
        "sessions", "sessions", ["list", "show", "start", "send", "events", "artifacts", "stop"]
    )
    p.add_argument("id", nargs="?", help="A session id (show, send, events, artifacts, stop).")
    p.add_argument("text", nargs="?", help="start: the prompt; send: the message ('-': stdin).")
    p.add_argument("--file", help="Read the prompt or message from a file.")
    p.add_argument("--project", type=int)
    p.add_argument("--preset", type=int)
    p.add_argument("--harness")
    p.add_argument("--model")
    p.add_argument("--config", help="start without a preset: a JSON file of the run config.")
    p.add_argument("--overrides", help="start from a preset: a JSON file of overrides.")
    p.add_argument("--follow", action="store_true", help="start: follow it; exit with its outcome.")
    p.add_argument("--status", help="list: comma separated statuses.")
    p.add_argument("--kind")
    p.add_argument("--trigger", help="list: manual, cron, metric, signal or api.")
    p.add_argument("--creator")
    p.add_argument(
        "--limit", type=int, help=f"list: at most this many (default {DEFAULT_LIST_LIMIT})."
    )
    p.add_argument("--all", action="store_true", help="list: every session, page by page.")
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--content", type=int, metavar="ARTIFACT", help="artifacts: print this one.")
    p.set_defaults(handler=cmd_sessions)

    p = sub.add_parser("follow", help="a live transcript; exits with the outcome", parents=[common])
    p.add_argument("id")
    p.add_argument("--after", type=int, default=0, help="Start after this sequence number.")
    p.set_defaults(handler=cmd_follow)

    p = command(
        "presets", "agent presets", ["list", "show", "create", "update", "duplicate", "delete"]
    )
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--space", type=int)
    p.add_argument("--from-file", help="A JSON object of preset fields.")
    p.add_argument("--name")
    p.add_argument("--harness")
    p.add_argument("--model")
    p.add_argument("--system-prompt", dest="system_prompt")
    p.add_argument("--max-turns", dest="max_turns", type=int)
    p.add_argument("--time-limit-seconds", dest="time_limit_seconds", type=int)
    p.add_argument("--skills", help="Comma separated skill ids.")
    p.set_defaults(handler=cmd_presets)

    p = command("skills", "agent skills", ["list", "show", "create", "update", "delete"])
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--space", type=int)
    p.add_argument("--kind", help="github, traces_api, datadog, custom")
    p.add_argument("--name")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="A plain config field.")
    p.add_argument("--secret-env", action="append", metavar="FIELD=ENVVAR")
    p.add_argument("--secret-file", action="append", metavar="FIELD=PATH")
    p.add_argument("--secret-stdin", metavar="FIELD", help="Read this secret from stdin.")
    p.add_argument("--remove-secret", action="append", metavar="env.NAME")
    p.set_defaults(handler=cmd_skills)

    p = command(
        "automations", "automations", ["list", "show", "trigger", "pause", "resume", "delete"]
    )
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--space", type=int)
    p.add_argument("--reason")
    p.add_argument("--follow", action="store_true", help="trigger: follow the run it starts.")
    p.set_defaults(handler=cmd_automations)

    p = command(
        "signal", "Signal", ["projects", "status", "enable", "disable", "run", "issues", "show"]
    )
    p.add_argument("project", nargs="?", type=int)
    p.add_argument("issue", nargs="?", type=int)
    p.add_argument("--state")
    p.add_argument("--severity")
    p.add_argument("--follow", action="store_true", help="run: follow the pass it starts.")
    p.set_defaults(handler=cmd_signal)

    p = command("review", "the review queue", ["list", "approve", "reject"])
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--comment")
    p.set_defaults(handler=cmd_review)
    return parser


def _needs_id(args) -> None:
    wants_id = {
        "sessions": {"show", "send", "events", "artifacts", "stop"},
        "presets": {"show", "update", "duplicate", "delete"},
        "skills": {"show", "update", "delete"},
        "automations": {"show", "trigger", "pause", "resume", "delete"},
        "review": {"approve", "reject"},
    }
    if args.action in wants_id.get(args.command, set()) and args.id is None:
        raise UsageError(f"{args.command} {args.action} needs an id.")


POSITIONALS = ("id", "text", "name", "project", "issue")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse matches a command's optional positionals at their first chance,
    so `sessions start --project 1 "the prompt"` would leave the prompt over:
    what is left over fills the positionals still empty, in order."""
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if item.startswith("-") and item != "-"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    for name in POSITIONALS:
        if extra and hasattr(args, name) and getattr(args, name) is None:
            value = extra.pop(0)
            if name in ("id", "project", "issue") and args.command not in ("sessions", "follow"):
                if not value.isdigit():
                    parser.error(f"{name} must be a number, not {value!r}")
                value = int(value)
            setattr(args, name, value)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    args.output = args.output or os.environ.get("AGENTLOOP_OUTPUT") or "table"
    if args.command is None:
        from agentloop.cli.tui import run_tui

        try:
            return run_tui(config.resolve(args.context))
        except config.ConfigError as error:
            output.fail(f"agentloop: {error}")
            return ERROR_STATUS
    api = None
    try:
        if hasattr(args, "action"):
            _needs_id(args)
        if getattr(args, "needs_api", True):
            api = Api(config.resolve(args.context))
        result = args.handler(args, api)
        return result if isinstance(result, int) else 0
    except (ApiError, config.ConfigError, UsageError) as error:
        output.fail(f"agentloop: {error}")
        for field, messages in getattr(error, "errors", {}).items():
            output.fail(f"  {field}: {' '.join(messages)}")
        return ERROR_STATUS
    except KeyboardInterrupt:
        return 130
    finally:
        if api is not None:
            api.close()


if __name__ == "__main__":
    sys.exit(main())
