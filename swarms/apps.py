from django.apps import AppConfig


class SwarmsConfig(AppConfig):
    name = "swarms"
