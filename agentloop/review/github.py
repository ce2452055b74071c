"""The one GitHub REST call agentloop makes: open a draft pull request.

Called from runs.review when a person approves a run's branch, never from a
sandbox. The API base URL is AGENTLOOP_GITHUB_API_URL (default
https://api.github.com; GitHub Enterprise uses https://<host>/api/v3; tests
point it at tests/github_double.py). Error messages never contain the token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"


class GitHubError(Exception):
    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def api_url() -> str:
    return (getattr(settings, "AGENTLOOP_GITHUB_API_URL", "") or DEFAULT_API_URL).rstrip("/")


def parse_repository(url: str) -> tuple[str, str]:
    """(owner, repo) from https://github.com/owner/repo(.git); the last two path parts."""
    path = urllib.parse.urlsplit(url).path.strip("/")
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2:
        raise GitHubError(None, f"Cannot tell the owner and repository from {url}.")
    owner, repo = parts[-2], parts[-1]
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    return owner, repo


def _message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return f"GitHub answered {status}."
    message = str(body.get("message") or "") if isinstance(body, dict) else ""
    details = []
    for error in (body.get("errors") or []) if isinstance(body, dict) else []:
        if isinstance(error, dict):
            details.append(
                error.get("message") or f"{error.get('field', '')} {error.get('code', '')}".strip()
            )
        else:
            details.append(str(error))
    text = message + (f": {'; '.join(d for d in details if d)}" if details else "")
    return f"GitHub answered {status}: {text or 'no message'}."


class GitHubClient:
    def __init__(self, token: str, base_url: str | None = None, timeout: float = 20.0):
        self.token = token
        self.base_url = (base_url or api_url()).rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "Content-Type": "application/json",
                "User-Agent": "agentloop",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            raise GitHubError(error.code, _message(error.code, error.read())) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            message = f"Could not reach GitHub at {self.base_url}: {reason}."
            raise GitHubError(None, message) from None
        except ValueError:
            raise GitHubError(None, "GitHub answered with something that is not JSON.") from None

    def create_pull_request(
        self,
        owner: str,
        repo: str,
        *,
        head: str,
        base: str,
        title: str,
        body: str,
        draft: bool = True,
    ) -> dict:
        """POST /repos/{owner}/{repo}/pulls; the created pull request (number, html_url, ...)."""
        path = f"/repos/{urllib.parse.quote(owner)}/{urllib.parse.quote(repo)}/pulls"
        return self._post(
            path, {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        )
