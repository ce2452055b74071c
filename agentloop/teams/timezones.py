"""Every page in the viewer's time zone (their UserSettings; UTC until they choose).

The middleware activates the zone for the request, so `{% when %}` and Django's
own date filters write times in it. The websocket consumer asks
`UserSettings.time_zone_of` itself: frames are rendered per zone.
"""

from __future__ import annotations

from django.utils import timezone

from agentloop.formatting import zone_named
from agentloop.teams.models import UserSettings


class UserTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            timezone.activate(zone_named(UserSettings.time_zone_of(user)))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
