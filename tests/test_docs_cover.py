"""docs/api.md and docs/cli.md name every route and every command, checked
against the code rather than by reading: a route added to a urls.py, or a
command or option added to the CLI's parser, fails here until it is documented."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.urls import URLPattern, URLResolver, get_resolver

from agentloop.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("get", "post", "put", "patch", "delete")


def _flatten(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _flatten(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def api_v1_routes() -> set[tuple[str, str]]:
    """(METHOD, path under /api/v1/ with `<>` for each parameter) of every view."""
    routes = set()
    for route, callback in _flatten(get_resolver().url_patterns):
        if not route.startswith("api/v1/"):
            continue
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        assert view is not None, f"{route} is not a class-based view"
        path = re.sub(r"<[^>]+>", "<>", route.removeprefix("api/v1/"))
        routes |= {(m.upper(), path) for m in METHODS if hasattr(view, m)}
    return routes


def test_every_api_v1_route_is_in_the_schema_and_in_docs_api_md(client):
    routes = api_v1_routes()
    assert ("GET", "sessions/<>/stream") in routes and len(routes) > 40

    schema = yaml.safe_load(client.get("/api/schema/").content)
    in_schema = {
        (method.upper(), re.sub(r"\{[^}]+\}", "<>", path.removeprefix("/api/v1/")))
        for path, operations in schema["paths"].items()
        for method in operations
        if method in METHODS
    }
    assert routes - in_schema == set()

    text = (ROOT / "docs" / "api.md").read_text()
    documented = {
        (method, re.sub(r"<[^>]+>", "<>", path.split("?")[0]))
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) ([^`\s]+)`", text)
        if not path.startswith("/")  # Phoenix's paths, outside /api/v1/
    }
    assert sorted(routes - documented) == []
    assert sorted(documented - routes) == []  # and nothing that is not there


def _commands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    for name, command in sub.choices.items():
        actions = next((a.choices for a in command._actions if a.dest == "action"), None)
        options = {
            option
            for a in command._actions
            for option in a.option_strings
            if option.startswith("--") and option not in ("--help", "--output")
        }
        yield name, actions or [None], options


def test_every_command_action_and_option_is_in_docs_cli_md():
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = []
    for name, actions, options in _commands():
        for action in actions:
            usage = f"agentloop {name}" + (f" {action}" if action else "")
            if not re.search(re.escape(usage) + r"\b", text):
                missing.append(usage)
        missing += [f"{name} {o}" for o in sorted(options) if not re.search(o + r"\b", text)]
    assert missing == []
