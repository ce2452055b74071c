from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from agentloop.api import docs as api_docs
from agentloop.teams import views as team_views

urlpatterns = [
    path("", team_views.home, name="home"),
    # Browsers ask for /favicon.ico whatever the page links.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", team_views.account, name="account"),
    path("spaces/", include("agentloop.teams.urls")),
    path("projects/<int:project_id>/", include("agentloop.traces.page_urls")),
    path("projects/<int:project_id>/signal/", include("agentloop.signal.urls")),
    path("api/v1/run-groups/", include("agentloop.comparisons.api_urls")),
    path("api/v1/", include("agentloop.api.urls")),
    path("", include("agentloop.api.phoenix_urls")),  # Phoenix's client's paths
    path("api/runner/v1/", include("agentloop.runs.urls")),
    path("studio/compare/", include("agentloop.comparisons.urls")),
    path("studio/", include("studio.urls")),
    path("automations/", include("agentloop.automations.urls")),
    path("review/", include("agentloop.review.urls")),
    path("swarms/", include("swarms.urls")),
    path("skills/", include("skills.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs.SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "api/redoc/",
        api_docs.RedocView.as_view(url_name="api-schema"),
        name="api-redoc",
    ),
    path("settings/tokens/", include("agentloop.teams.token_urls")),
    path("django-admin/", admin.site.urls),
]
