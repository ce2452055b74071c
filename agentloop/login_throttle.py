"""Login throttling (django-axes): the page a locked-out person sees.

Axes counts failed logins per account and per client address (either one
reaching AXES_FAILURE_LIMIT locks it) and refuses further attempts, the right
password too, for AXES_COOLOFF_TIME. Its own answer is a bare sentence; this
one is the login page's layout with what happened and when to try again, with
status 429.
"""

from __future__ import annotations

import math

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.shortcuts import render


def locked_out(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    return render(
        request,
        "registration/locked_out.html",
        {
            "failure_limit": get_failure_limit(request, credentials),
            "username": get_client_username(request, credentials) or "",
            "minutes": math.ceil(cool_off.total_seconds() / 60) if cool_off else 0,
        },
        status=429,
    )
