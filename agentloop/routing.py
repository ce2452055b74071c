"""Websocket routes. Each consumer checks access with the same helper as its page."""

from django.urls import path

from studio.consumers import RunTranscriptConsumer

websocket_urlpatterns: list = [
    path("ws/runs/<str:code>/", RunTranscriptConsumer.as_asgi()),
]
