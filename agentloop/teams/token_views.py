"""Settings → API tokens: create (shown once), list, revoke one's own personal tokens.

A token is the person's: nobody else sees or revokes it, and it can only be
limited to spaces the person belongs to (the form offers only those).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from agentloop.teams import actions
from agentloop.teams.access import spaces_for_user
from agentloop.teams.forms import PersonalTokenForm

NEW_TOKEN_SESSION_KEY = "new_personal_token"


def _render(request, form=None, status=200):
    new_token = request.session.pop(NEW_TOKEN_SESSION_KEY, None)  # shown on this render only
    spaces = spaces_for_user(request.user).order_by("name")
    context = {
        "tokens": request.user.personal_tokens.prefetch_related("spaces"),
        "form": form or PersonalTokenForm(spaces=spaces),
        "new_token": new_token,
        "server_url": request.build_absolute_uri("/").rstrip("/"),
    }
    response = render(request, "teams/personal_tokens.html", context, status=status)
    if new_token:
        add_never_cache_headers(response)
    return response


@login_required
def token_list(request):
    return _render(request)


@login_required
@require_POST
def token_create(request):
    form = PersonalTokenForm(request.POST, spaces=spaces_for_user(request.user))
    if not form.is_valid():
        return _render(request, form=form, status=400)
    days = form.cleaned_data["expires_in_days"]
    token, raw = actions.create_personal_token(
        request.user,
        form.cleaned_data["name"],
        int(days) if days else None,
        form.cleaned_data["spaces"],
    )
    request.session[NEW_TOKEN_SESSION_KEY] = {"id": token.pk, "name": token.name, "raw": raw}
    messages.success(request, f"Created the token {token.name}.")
    return redirect("personal-tokens")


@login_required
@require_POST
def token_revoke(request, token_id):
    try:
        token = actions.revoke_personal_token(request.user, token_id)
    except actions.ActionError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Revoked the token {token.name} (…{token.hint}).")
    return redirect("personal-tokens")
