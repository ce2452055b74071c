from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "agentloop.review"
    label = "review"
