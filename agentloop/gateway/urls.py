"""LLM gateway: Anthropic-compatible endpoint that sandboxes reach with the run key."""

urlpatterns: list = []
