from django.apps import AppConfig


class TracesConfig(AppConfig):
    name = "agentloop.traces"
    label = "traces"
    verbose_name = "Traces"
