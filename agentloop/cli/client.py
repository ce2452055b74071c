"""The HTTP client of the CLI: one httpx.Client, JSON in and out, errors as ApiError."""

from __future__ import annotations

import sys

# httpx's __init__ imports its own command line (httpx._main) whenever click is
# installed, as it is here: click, pygments and rich.progress, about a third of
# this CLI's imports (docs/benchmarks.md, "The CLI"). A None in sys.modules makes
# that import fail, which httpx expects (it then defines a stub `httpx.main`);
# nothing else in httpx uses the module. Only when httpx is not loaded yet: a
# process that already has it keeps it as it is.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)

import httpx  # noqa: E402

from agentloop.cli.config import Context  # noqa: E402

USER_AGENT = "agentloop-cli/1"


class ApiError(Exception):
    """A refusal or failure, with the server's message (and its per-field errors)."""

    def __init__(self, message: str, status: int | None = None, errors: dict | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or {}


def _message(response: httpx.Response) -> tuple[str, dict]:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase, {}
    if isinstance(body, dict):
        return str(body.get("detail") or body), body.get("errors") or {}
    return str(body), {}


def explain(response: httpx.Response) -> ApiError:
    detail, errors = _message(response)
    status = response.status_code
    if status == 401:
        detail = (
            f"The server refused the token: {detail} Create one under Settings → API tokens "
            "and set AGENTLOOP_TOKEN (or `agentloop context add`)."
        )
    elif status == 403:
        detail = f"Not allowed: {detail}"
    elif status == 404:
        detail = f"Not found: {detail}"
    elif status >= 500:
        detail = f"The server failed ({status}): {detail}"
    return ApiError(detail, status, errors)


def _verify(url: str):
    """What httpx checks an https server's certificate with. For a plain http://
    server there is none to check, and loading certifi's CA bundle (httpx's
    default) would cost every command 20-30 ms: a bare TLS context instead. It
    still requires a certificate and checks host names, and trusts no CA, so
    should a request ever go to https with it, it fails rather than trusts."""
    if url.startswith("http://"):
        import ssl

        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


class Api:
    def __init__(self, context: Context, timeout: float = 30.0, transport=None):
        self.context = context
        self.http = httpx.Client(
            verify=_verify(context.url),
            base_url=context.url,
            headers={
                "Authorization": f"Bearer {context.token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, params=None, json=None) -> httpx.Response:
        try:
            response = self.http.request(method, path, params=params, json=json)
        except httpx.TransportError as error:
            raise ApiError(f"Cannot reach {self.context.url}: {error}") from None
        if response.status_code >= 400:
            raise explain(response)
        return response

    def get(self, path: str, **params):
        params = {k: v for k, v in params.items() if v not in (None, "")}
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: dict | None = None):
        response = self.request("POST", path, json=body if body is not None else {})
        return response.json() if response.content else None

    def patch(self, path: str, body: dict):
        return self.request("PATCH", path, json=body).json()

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def text(self, path: str) -> str:
        return self.request("GET", path).text

    def all_pages(self, path: str, limit: int | None = None, **params) -> list[dict]:
        """Every row of a paginated list (or the first `limit`)."""
        rows: list[dict] = []
        cursor = None
        while True:
            page_size = min(1000, limit - len(rows)) if limit else 1000
            page = self.get(path, cursor=cursor, limit=page_size, **params)
            rows.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor or (limit and len(rows) >= limit):
                return rows[:limit] if limit else rows
