from django.apps import AppConfig


class SignalConfig(AppConfig):
    name = "agentloop.signal"
    label = "signal"
