"""The gateway's own ASGI entry: Django without the site's middleware.

Every model call of every run passes here, and each of Django's middleware
classes costs two hops to a worker thread per request under ASGI
(MiddlewareMixin runs process_request/process_response via sync_to_async): the
stack of nine added about 5 ms to each call's first byte on a 2-core machine
(benches/bench_gateway.py). The gateway's views need none of it — no session,
user, CSRF (callers authenticate with the run key), messages, static files
or HTML headers — so `/llm/` requests go to a handler whose middleware chain
is empty; the request_started/finished signals (database connections closed
after the request) still fire as for any request.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

PREFIX = "/llm/"


class GatewayHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)


def with_gateway(site_app):
    """An ASGI app: `/llm/…` to the gateway's handler, everything else to site_app."""
    gateway_app = GatewayHandler()

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            return await gateway_app(scope, receive, send)
        return await site_app(scope, receive, send)

    return app
