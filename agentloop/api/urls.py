"""REST API for people and workers (DRF). Filled in by the API module."""

urlpatterns: list = []
