"""ASGI entry point: HTTP (pages, APIs, ingest) and websockets (live transcripts)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentloop.settings")
django_asgi_app = get_asgi_application()  # set up Django before importing consumers

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from agentloop import key_throttle  # noqa: E402
from agentloop.api import stream_app  # noqa: E402
from agentloop.gateway import app as gateway  # noqa: E402
from agentloop.routing import websocket_urlpatterns  # noqa: E402
from agentloop.runs import events_app, inbox_app  # noqa: E402
from agentloop.traces import ingest_app  # noqa: E402


def with_fast_paths(site_app):
    """The hot paths go to plain ASGI apps (agentloop/fastpath.py says why):
    every model call and every transcript line of a sandbox, OTLP ingest, and
    the runner's inbox long-poll (which would hold a thread while it waits).
    Everything else goes to Django."""

    async def app(scope, receive, send):
        path = scope["path"]
        if path.startswith(gateway.PREFIX):
            return await gateway.application(scope, receive, send)
        if path == events_app.PATH:
            return await events_app.application(scope, receive, send)
        if path == inbox_app.PATH:
            return await inbox_app.application(scope, receive, send)
        if path == ingest_app.PATH:
            return await ingest_app.application(scope, receive, send)
        if path.endswith("/stream") and stream_app.matches(path):
            return await stream_app.application(scope, receive, send)
        return await site_app(scope, receive, send)

    return app


application = ProtocolTypeRouter(
    {
        "http": key_throttle.throttled(with_fast_paths(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
