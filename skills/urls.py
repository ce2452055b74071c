from django.urls import path

from skills import views

urlpatterns = [
    path("", views.index, name="skills-index"),
    path("spaces/<int:space_id>/", views.skill_list, name="skills-list"),
    path("spaces/<int:space_id>/new/<str:kind>/", views.skill_create, name="skills-create"),
    path("spaces/<int:space_id>/<int:skill_id>/edit/", views.skill_edit, name="skills-edit"),
    path("spaces/<int:space_id>/<int:skill_id>/delete/", views.skill_delete, name="skills-delete"),
]
