from django.urls import path

from agentloop.teams import views

urlpatterns = [
    path("traces/", views.home, name="traces-explorer"),  # placeholder until the explorer
]
