"""`{% project_tabs project "traces" %}`: the tab bar at the top of every project page.

Apps that add a project page add their tab to traces/project_tabs.html.
"""

from __future__ import annotations

from django import template

from agentloop.teams.models import Role

register = template.Library()


@register.inclusion_tag("traces/project_tabs.html", takes_context=True)
def project_tabs(context, project, active: str):
    request = context["request"]
    return {
        "project": project,
        "active": active,
        "is_admin": project.space.role_of(request.user) == Role.ADMIN,
    }
