"""Route `/llm/…` to the gateway's plain ASGI app (agentloop/gateway/app.py), the rest to Django."""

from __future__ import annotations

from agentloop.gateway.app import PREFIX
from agentloop.gateway.app import application as gateway_app


def with_gateway(site_app):
    """An ASGI app: `/llm/…` to the gateway, everything else to site_app."""

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            return await gateway_app(scope, receive, send)
        return await site_app(scope, receive, send)

    return app
