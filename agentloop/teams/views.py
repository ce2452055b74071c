from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from agentloop.teams.access import projects_for_user, spaces_for_user


@login_required
def home(request):
    """The user's spaces and, in each, its projects: all they may see, nothing else."""
    spaces = list(spaces_for_user(request.user).prefetch_related("projects"))
    return render(request, "teams/home.html", {"spaces": spaces})
