from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "agentloop.automations"
    label = "automations"
