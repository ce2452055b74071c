from django.apps import AppConfig


class PresetsConfig(AppConfig):
    name = "agentloop.presets"
    label = "presets"
