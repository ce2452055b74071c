"""Runner API under /api/runner/v1/ (see docs/runner-protocol.md)."""

urlpatterns: list = []
