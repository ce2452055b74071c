"""Runner API under /api/runner/v1/ (see docs/runner-protocol.md)."""

from django.urls import path

from agentloop.runs import runner_api

app_name = "runner_api"

urlpatterns = [
    path("spec", runner_api.spec, name="spec"),
    path("events", runner_api.events, name="events"),
    path("inbox", runner_api.inbox, name="inbox"),
    path("artifacts", runner_api.artifacts, name="artifacts"),
    path("heartbeat", runner_api.heartbeat, name="heartbeat"),
    path("status", runner_api.status, name="status"),
]
