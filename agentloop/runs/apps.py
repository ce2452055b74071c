from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "agentloop.runs"
    label = "runs"
    verbose_name = "Runs"
