from django.apps import AppConfig


class AgentloopConfig(AppConfig):
    """The project package as an app: management commands (serve) live here."""

    name = "agentloop"
    verbose_name = "agentloop"
