from django.urls import path

from agentloop.comparisons import api

urlpatterns = [
    path("", api.RunGroupList.as_view(), name="api-run-groups"),
    path("<int:group_id>/", api.RunGroupDetail.as_view(), name="api-run-group"),
]
