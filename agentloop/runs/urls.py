"""Runner API under /api/runner/v1/ (see docs/runner-protocol.md).

`POST events` is not here: every transcript line passes there, so agentloop.asgi
sends it to a plain ASGI app (agentloop/runs/events_app.py) before Django sees it.
"""

from django.urls import path

from agentloop.runs import runner_api

app_name = "runner_api"

urlpatterns = [
    path("spec", runner_api.spec, name="spec"),
    path("inbox", runner_api.inbox, name="inbox"),
    path("artifacts", runner_api.artifacts, name="artifacts"),
    path("heartbeat", runner_api.heartbeat, name="heartbeat"),
    path("status", runner_api.status, name="status"),
]
