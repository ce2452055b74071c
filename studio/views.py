"""Studio session pages: the gallery, starting a session, and following one.

Each view fetches through the access helpers (projects_for_user,
get_run_for_user) and calls one action of agentloop.runs.actions. The session
page renders the transcript with the same partials the websocket consumer
pushes (studio/transcript.py builds both).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agentloop.runs import actions
from agentloop.runs.access import get_run_for_user, runs_for_user
from agentloop.runs.models import TERMINAL, RunKind, RunStatus
from agentloop.teams.access import projects_for_user
from studio import transcript
from studio.forms import SessionForm
from studio.prompt_templates import TEMPLATES, get_template

MAX_SEARCH_LENGTH = 200


@login_required
@require_GET
def gallery(request):
    return render(
        request,
        "studio/gallery.html",
        {
            "templates": TEMPLATES,
            "can_start": projects_for_user(request.user, "use").exists(),
            "recent": runs_for_user(request.user)
            .filter(kind=RunKind.SESSION, creator=request.user)
            .select_related("project")
            .order_by("-created_at")[:5],
        },
    )


def _apply_config_errors(form: SessionForm, error: ValidationError) -> None:
    """Show normalize_config's messages on the fields they name, the rest on top."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for field, errors in error.message_dict.items():
        # A preset's own settings are not on the form: their messages go on top.
        on_form = field in form.fields and (field == "preset" or not form.uses_preset)
        target = field if on_form else None
        for message in errors:
            form.add_error(target, message)


SESSION_SCOPES = {"mine": "Mine", "all": "All of my spaces"}
SESSION_STATES = {
    "": "Any state",
    "active": "Going on",
    "ended": "Ended",
    **{value: label for value, label in RunStatus.choices},
}
SESSIONS_SHOWN = 100


@login_required
@require_GET
def sessions(request):
    """The sessions a person can go back to: theirs or their spaces', newest first."""
    scope = request.GET.get("scope") or "mine"
    state = request.GET.get("state") or ""
    project = request.GET.get("project") or ""
    q = (request.GET.get("q") or "").strip()
    problems = []
    if scope not in SESSION_SCOPES:
        problems.append(f"Unknown scope {scope!r}; choose mine or all.")
        scope = "mine"
    if state not in SESSION_STATES:
        problems.append(f"Unknown state {state!r}.")
        state = ""
    if project and not project.isdigit():
        problems.append(f"Project must be a project id; got {project!r}.")
        project = ""
    if len(q) > MAX_SEARCH_LENGTH:
        problems.append(f"The search text is longer than {MAX_SEARCH_LENGTH} characters.")
        q = ""
    runs = runs_for_user(request.user).filter(kind=RunKind.SESSION)
    if scope == "mine":
        runs = runs.filter(creator=request.user)
    if state == "active":
        runs = runs.exclude(status__in=TERMINAL)
    elif state == "ended":
        runs = runs.filter(status__in=TERMINAL)
    elif state:
        runs = runs.filter(status=state)
    if project:
        runs = runs.filter(project_id=int(project))
    if q:
        runs = runs.filter(prompt__icontains=q)
    total = runs.count()
    shown = list(
        runs.select_related("project__space", "creator").order_by("-created_at", "-pk")[
            :SESSIONS_SHOWN
        ]
    )
    status = 400 if problems else 200
    return render(
        request,
        "studio/sessions.html",
        {
            "sessions": shown,
            "total": total,
            "problems": problems,
            "scope": scope,
            "state": state,
            "project": project,
            "q": q,
            "scopes": SESSION_SCOPES,
            "states": SESSION_STATES,
            "projects": projects_for_user(request.user).filter(internal=False),
            "can_start": projects_for_user(request.user, "use").exists(),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def new_session(request):
    template = get_template(request.GET.get("template") or request.POST.get("template"))
    if request.method == "POST":
        form = SessionForm(request.user, request.POST)
        if form.is_valid():
            try:
                preset, config = form.config()
                run = actions.start_session(
                    request.user,
                    form.cleaned_data["project"],
                    config,
                    form.cleaned_data["prompt"],
                    preset=preset,
                )
            except ValidationError as error:
                _apply_config_errors(form, error)
            else:
                return redirect("studio-session", code=run.code)
    else:
        initial = {}
        if template is not None:
            initial.update(prompt=template.prompt, harness=template.harness)
        project_id = request.GET.get("project")
        if project_id:
            initial["project"] = project_id
        preset_id = request.GET.get("preset")
        if preset_id:  # "Start session" on a preset's page
            initial["preset"] = preset_id
        form = SessionForm(request.user, initial=initial)
    return render(
        request,
        "studio/new_session.html",
        {
            "form": form,
            "template": template,
            "can_start": form.fields["project"].queryset.exists(),
        },
    )


@login_required
@require_GET
def session(request, code):
    run = get_run_for_user(request.user, code, "view")
    context = transcript.page_context(run, request.user)
    return render(request, "studio/session.html", context)


def _back_to_session(request, run, form_error: str | None = None, text: str = ""):
    """htmx gets the controls partial back (the new event arrives over the
    websocket); a plain form post is redirected to the session page."""
    if request.htmx:
        context = transcript.controls_context(run, can_use=True)
        context.update(followup_error=form_error, followup_text=text)
        return render(request, "studio/transcript.html#controls", context)
    if form_error:
        messages.error(request, form_error)
    return redirect(reverse("studio-session", kwargs={"code": run.code}))


@login_required
@require_POST
def followup(request, code):
    run = get_run_for_user(request.user, code, "use")
    text = request.POST.get("text", "")
    try:
        actions.send_followup(request.user, run, text)
    except ValidationError as error:
        return _back_to_session(request, run, " ".join(error.messages), text)
    return _back_to_session(request, run)


@login_required
@require_POST
def stop(request, code):
    run = get_run_for_user(request.user, code, "use")
    stopping = actions.cancel(request.user, run)
    if stopping and not request.htmx:
        messages.success(request, "Asked the session to stop.")
    run.refresh_from_db()
    return _back_to_session(request, run)
