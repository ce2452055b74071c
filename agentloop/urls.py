from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from agentloop.teams import views as team_views

urlpatterns = [
    path("", team_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("spaces/", include("agentloop.teams.urls")),
    path("projects/<int:project_id>/", include("agentloop.traces.page_urls")),
    path("projects/<int:project_id>/signal/", include("agentloop.signal.urls")),
    path("api/v1/run-groups/", include("agentloop.comparisons.api_urls")),
    path("api/v1/", include("agentloop.api.urls")),
    path("api/runner/v1/", include("agentloop.runs.urls")),
    path("studio/compare/", include("agentloop.comparisons.urls")),
    path("studio/", include("studio.urls")),
    path("automations/", include("agentloop.automations.urls")),
    path("review/", include("agentloop.review.urls")),
    path("swarms/", include("swarms.urls")),
    path("skills/", include("skills.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
    path("django-admin/", admin.site.urls),
]
