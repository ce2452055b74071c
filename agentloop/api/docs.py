"""The API docs pages, offline: Swagger UI and Redoc from this server's static files.

drf-spectacular-sidecar ships their scripts and styles (SPECTACULAR_SETTINGS
"SIDECAR"). Redoc still reaches out on its own — Google Fonts in
drf-spectacular's template (replaced: templates/api/redoc.html) and its
"API docs by Redocly" logo from a CDN — so its page also carries a Content
Security Policy that lets nothing leave the server.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

from agentloop.security_headers import DOCS_POLICY

# The pages' own policy (security_headers.py): scripts from this server only (the
# split Swagger view serves its start-up script as a file, not inline), styles
# inline too, as both UIs set them.
ONLY_THIS_SERVER = DOCS_POLICY


class RedocView(SpectacularRedocView):
    template_name = "api/redoc.html"

    @extend_schema(exclude=True)  # as the views they extend: pages, not API routes
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = ONLY_THIS_SERVER
        return response


class SwaggerView(SpectacularSwaggerSplitView):
    @extend_schema(exclude=True)  # as the views they extend: pages, not API routes
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = ONLY_THIS_SERVER
        return response
