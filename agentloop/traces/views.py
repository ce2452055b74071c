from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse

from agentloop.teams.access import get_project_for_user


@login_required
def explorer(request, project_id):
    get_project_for_user(request.user, project_id, "view")
    return HttpResponse("explorer coming")


@login_required
def trace_detail(request, project_id, trace_id):
    get_project_for_user(request.user, project_id, "view")
    return HttpResponse("trace coming")


@login_required
def span_detail(request, project_id, span_id):
    get_project_for_user(request.user, project_id, "view")
    return HttpResponse("span coming")
