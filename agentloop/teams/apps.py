from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "agentloop.teams"
    label = "teams"
    verbose_name = "Spaces and projects"
