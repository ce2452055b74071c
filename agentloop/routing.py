"""Websocket routes. Each consumer checks access with the same helper as its page."""

websocket_urlpatterns: list = []
