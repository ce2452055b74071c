"""The security headers of every page: a strict Content-Security-Policy and Permissions-Policy.

The rest come from Django's SecurityMiddleware and settings (nosniff,
Referrer-Policy, Cross-Origin-Opener-Policy, HSTS, X-Frame-Options).

The policy allows only this server's own files: no inline script, no on*
handler, no hx-on (htmx would eval it), no eval; behaviour lives in static/js/.
Style attributes stay allowed (`style-src-attr`): the waterfall and swarm map
place their bars with them, and a style attribute can neither run script nor
load anything (img-src and font-src are 'self').
"""

from __future__ import annotations

from functools import wraps

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# /api/docs/ (Redoc, served from our static files): Redoc injects its styles and
# runs its search in a blob: worker. Still no script but our own files.
DOCS_POLICY = POLICY.replace(
    "style-src 'self'; style-src-attr 'unsafe-inline'", "style-src 'self' 'unsafe-inline'"
).replace("object-src", "worker-src 'self' blob:; object-src")
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response


def docs_policy(view):
    """The view's answers carry DOCS_POLICY instead of POLICY."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.headers["Content-Security-Policy"] = DOCS_POLICY
        return response

    return wrapper
