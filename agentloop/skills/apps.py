from django.apps import AppConfig


class SkillsConfig(AppConfig):
    name = "agentloop.skills"
    label = "skills"
