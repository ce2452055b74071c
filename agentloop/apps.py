from django.apps import AppConfig


class AgentloopConfig(AppConfig):
    """The project package as an app: management commands (serve) live here."""

    name = "agentloop"
    verbose_name = "agentloop"

    def ready(self):
        from django.db.backends.signals import connection_created

        from agentloop import private_files

        connection_created.connect(private_files.on_connection_created)
