"""LLM gateway: Anthropic-compatible endpoint that sandboxes reach with the run key.

Mounted at `llm/`; a run's ANTHROPIC_BASE_URL is `{public}/llm/anthropic`, so the
Claude Code CLI calls `…/llm/anthropic/v1/messages` (docs/gateway.md).
"""

from django.urls import path

from agentloop.gateway import views

app_name = "gateway"

urlpatterns = [
    path("anthropic/v1/messages", views.messages, name="messages"),
    path("anthropic/v1/messages/count_tokens", views.count_tokens, name="count_tokens"),
]
