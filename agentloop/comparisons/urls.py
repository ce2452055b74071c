from django.urls import path

from agentloop.comparisons import views

urlpatterns = [
    path("new/", views.group_new, name="compare-new"),
    path("<int:group_id>/", views.group_detail, name="compare-detail"),
]
