"""Runner API under /api/runner/v1/ (see docs/runner-protocol.md).

`POST events` and `GET inbox` are not here: every transcript line passes through
the first, and the second waits for follow-ups, so agentloop.asgi sends them to
plain ASGI apps (agentloop/runs/events_app.py, inbox_app.py) before Django sees them.
"""

from django.urls import path

from agentloop.runs import runner_api

app_name = "runner_api"

urlpatterns = [
    path("spec", runner_api.spec, name="spec"),
    path("artifacts", runner_api.artifacts, name="artifacts"),
    path("heartbeat", runner_api.heartbeat, name="heartbeat"),
    path("status", runner_api.status, name="status"),
]
