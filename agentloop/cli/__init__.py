"""The `agentloop` command line and terminal UI: a client of the REST API (docs/cli.md).

It talks HTTP only (httpx), never imports server code (import-linter checks),
and reads the server URL and token from the environment or a contexts file,
never from its command line.
"""
