from django.urls import path

from agentloop.teams import views

urlpatterns = [
    path("<int:space_id>/", views.home, name="space-detail"),  # placeholder until the members page
]
