"""Agent Studio: sessions (studio.session_urls), presets (studio.preset_urls), automations."""

from django.urls import include, path

urlpatterns = [
    path("", include("studio.session_urls")),
    path("presets/", include("studio.preset_urls")),
    path("automations/", include("studio.automation_urls")),
]
