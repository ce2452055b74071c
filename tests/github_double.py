"""A local double of the GitHub REST endpoint agentloop uses: POST /repos/{owner}/{repo}/pulls.

Faithful to what matters to the caller (docs.github.com/rest/pulls/pulls#create-a-pull-request):
- 401 {"message": "Bad credentials"} without the right `Authorization: Bearer|token <token>`;
- 404 {"message": "Not Found"} for a repository it does not hold;
- 422 {"message": "Validation Failed", "errors": [...]} when title/head/base are
  missing, when the head or base branch does not exist in the repository (checked
  against the refs of a real bare git repository), or when an open pull request
  already exists for that head;
- 201 with the pull request: number, html_url, url, state, draft, title, body,
  head {ref, sha}, base {ref, sha}.
Every request is recorded (method, path, headers, JSON body).

    with GitHubDouble(token="ghp_...", repos={"acme/shop": bare_repo_path}) as github:
        settings.AGENTLOOP_GITHUB_API_URL = github.url
"""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class GitHubDouble:
    def __init__(self, *, token: str, repos: dict[str, Path]):
        self.token = token
        self.repos = dict(repos)
        self.requests: list[dict] = []
        self.pulls: dict[str, list[dict]] = {name: [] for name in self.repos}
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> GitHubDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                double._handle(self)

            def do_GET(self):
                double._send(self, 404, {"message": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the endpoint -------------------------------------------------------------------------

    def _send(self, handler, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    def _sha(self, repo: Path, branch: str) -> str | None:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        record = {
            "method": "POST",
            "path": handler.path,
            "headers": {k.lower(): v for k, v in handler.headers.items()},
            "body": body,
        }
        with self._lock:
            self.requests.append(record)
        auth = handler.headers.get("Authorization") or ""
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            return self._send(
                handler,
                401,
                {
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest",
                },
            )
        parts = handler.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "repos" or parts[3] != "pulls":
            return self._send(handler, 404, {"message": "Not Found"})
        name = f"{parts[1]}/{parts[2]}"
        if name not in self.repos:
            return self._send(handler, 404, {"message": "Not Found"})
        if not isinstance(body, dict):
            return self._send(handler, 400, {"message": "Problems parsing JSON"})
        missing = [f for f in ("title", "head", "base") if not body.get(f)]
        if missing:
            return self._send(
                handler,
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {"resource": "PullRequest", "field": f, "code": "missing_field"}
                        for f in missing
                    ],
                },
            )
        repo = self.repos[name]
        head_sha = self._sha(repo, body["head"])
        base_sha = self._sha(repo, body["base"])
        errors = []
        if head_sha is None:
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if base_sha is None:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if errors:
            return self._send(handler, 422, {"message": "Validation Failed", "errors": errors})
        with self._lock:
            if any(p["head"]["ref"] == body["head"] for p in self.pulls[name]):
                exists = f"A pull request already exists for {parts[1]}:{body['head']}."
                return self._send(
                    handler,
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": exists,
                            }
                        ],
                    },
                )
            number = sum(len(p) for p in self.pulls.values()) + 1
            pull = {
                "number": number,
                "url": f"{self.url}/repos/{name}/pulls/{number}",
                "html_url": f"https://github.com/{name}/pull/{number}",
                "state": "open",
                "draft": bool(body.get("draft", False)),
                "title": body["title"],
                "body": body.get("body"),
                "head": {"ref": body["head"], "sha": head_sha},
                "base": {"ref": body["base"], "sha": base_sha},
            }
            self.pulls[name].append(pull)
        return self._send(handler, 201, pull)
