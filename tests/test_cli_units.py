"""The CLI's parts that need no server: the SSE parser, contexts, the parser's rules."""

from __future__ import annotations

import ssl
import tomllib
from pathlib import Path

import pytest

from agentloop.cli import config, output
from agentloop.cli.client import Api
from agentloop.cli.follow import parse_sse
from agentloop.cli.main import build_parser, parse

ROOT = Path(__file__).resolve().parent.parent


def test_the_console_script_is_installed_with_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"agentloop": "agentloop.cli.main:main"}


def test_sse_events_are_parsed_comments_skipped_and_multiline_data_joined():
    lines = iter(
        [": keepalive", "", "id: 7", "event: message", 'data: {"a":', "data: 1}", "", "event: end"]
        + ["data: {}", ""]
    )
    assert list(parse_sse(lines)) == [("7", "message", '{"a":\n1}'), ("", "end", "{}")]


def test_no_command_takes_a_token_on_the_command_line():
    parser = build_parser()
    options = set()
    for action in parser._subparsers._group_actions[0].choices.values():
        options.update(o for a in action._actions for o in a.option_strings)
    assert not any("token" in o and o != "--token-file" for o in options), options
    with pytest.raises(SystemExit):
        parse(parser, ["sessions", "list", "--token", "al_pt_x"])


def test_the_environment_wins_then_the_named_context_then_current(tmp_path, monkeypatch):
    path = tmp_path / "contexts.toml"
    monkeypatch.setenv("AGENTLOOP_CONFIG", str(path))
    for name in ("AGENTLOOP_URL", "AGENTLOOP_TOKEN", "AGENTLOOP_TOKEN_FILE", "AGENTLOOP_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(config.ConfigError, match="No server configured"):
        config.resolve()
    (tmp_path / "b.token").write_text("al_pt_from_file\n")
    config.save_file(
        {
            "current": "a",
            "contexts": {
                "a": {"url": "http://a.test/", "token": "al_pt_a"},
                "b": {"url": "http://b.test", "token_file": str(tmp_path / "b.token")},
            },
        }
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert config.resolve() == config.Context("a", "http://a.test", "al_pt_a")
    assert config.resolve("b") == config.Context("b", "http://b.test", "al_pt_from_file")
    monkeypatch.setenv("AGENTLOOP_CONTEXT", "b")
    assert config.resolve().name == "b"
    monkeypatch.setenv("AGENTLOOP_URL", "http://env.test")
    monkeypatch.setenv("AGENTLOOP_TOKEN", "al_pt_env")
    assert config.resolve() == config.Context("environment", "http://env.test", "al_pt_env")
    with pytest.raises(config.ConfigError, match="No context named 'c'"):
        config.resolve("c")


def test_a_prompt_after_the_options_is_the_prompt_and_ids_must_be_numbers():
    parser = build_parser()
    args = parse(parser, ["sessions", "start", "--project", "3", "--follow", "Why?"])
    assert (args.project, args.follow, args.id) == (3, True, "Why?")  # main() moves it to text
    assert parse(parser, ["signal", "show", "4", "9"]).issue == 9
    with pytest.raises(SystemExit):
        parse(parser, ["presets", "show", "abc"])


def test_an_http_server_gets_a_tls_context_that_trusts_nothing_and_https_the_ca_bundle():
    """Loading certifi's CA bundle costs every command 20-30 ms; a plain http://
    server does not need it. The context it gets instead still refuses any
    certificate (no CA, host names checked), so it can never trust by mistake."""
    plain = Api(config.Context("t", "http://127.0.0.1:8000", "al_pt_x"))
    secure = Api(config.Context("t", "https://agentloop.example.com", "al_pt_x"))
    try:
        # The context httpcore connects with (no public accessor for it).
        plain_ssl = plain.http._transport._pool._ssl_context
        secure_ssl = secure.http._transport._pool._ssl_context
    finally:
        plain.close()
        secure.close()
    assert plain_ssl.cert_store_stats()["x509_ca"] == 0
    assert plain_ssl.verify_mode == ssl.CERT_REQUIRED and plain_ssl.check_hostname
    assert secure_ssl.cert_store_stats()["x509_ca"] > 50  # certifi's bundle
    assert secure_ssl.verify_mode == ssl.CERT_REQUIRED and secure_ssl.check_hostname


def test_a_list_prints_as_aligned_columns_one_line_per_row():
    rows = [
        {"id": 1, "project": {"name": "支払い"}, "prompt": "Why do\nrefunds   fail?"},
        {"id": 22, "project": {"name": "bench"}, "prompt": None},
    ]
    lines = output.table_lines(rows, ["id", "project.name", "prompt"])
    assert lines == [
        "id  project.name  prompt",
        "1   支払い        Why do refunds fail?",  # wide characters take two cells
        "22  bench",  # an empty last cell leaves no trailing blanks
    ]
