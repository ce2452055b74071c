"""Agent Studio: sessions (studio.session_urls) and presets (agentloop.presets.urls)."""

from django.urls import include, path

urlpatterns = [
    path("", include("studio.session_urls")),
    path("presets/", include("agentloop.presets.urls")),
]
