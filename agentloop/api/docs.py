"""The API docs pages, offline: Swagger UI and Redoc from this server's static files.

drf-spectacular-sidecar ships their scripts and styles (SPECTACULAR_SETTINGS
"SIDECAR"). Redoc still reaches out on its own — Google Fonts in
drf-spectacular's template (replaced: templates/api/redoc.html) and its
"API docs by Redocly" logo from a CDN — so its page also carries a Content
Security Policy that lets nothing leave the server.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

ONLY_THIS_SERVER = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:; "
    "connect-src 'self'"
)


class RedocView(SpectacularRedocView):
    template_name = "api/redoc.html"

    @extend_schema(exclude=True)  # as the views they extend: pages, not API routes
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = ONLY_THIS_SERVER
        return response


class SwaggerView(SpectacularSwaggerView):
    @extend_schema(exclude=True)  # as the views they extend: pages, not API routes
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = ONLY_THIS_SERVER
        return response
