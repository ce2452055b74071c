"""Studio sessions: the gallery, starting a session, the live session page."""

from django.urls import path

from studio import views

urlpatterns = [
    path("", views.gallery, name="studio-gallery"),
    path("sessions/", views.sessions, name="studio-sessions"),
    path("sessions/new/", views.new_session, name="studio-new-session"),
    path("sessions/<uuid:code>/", views.session, name="studio-session"),
    path("sessions/<uuid:code>/followup/", views.followup, name="studio-followup"),
    path("sessions/<uuid:code>/stop/", views.stop, name="studio-stop"),
]
