"""Agent Presets pages: list, detail, create, edit, duplicate, delete.

Everyone in a space sees its presets; only its admins change them. Each view
fetches through agentloop.presets.actions (built on agentloop.teams.access: 404 for
outsiders, 403 for a role that may look but not act) and calls one function.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from agentloop.presets import actions as presets
from agentloop.presets.access import get_preset_for_user, may_manage, presets_for_user
from agentloop.presets.forms import PresetForm
from agentloop.presets.models import AgentPreset
from agentloop.runs.models import Run
from agentloop.teams.access import get_space_for_user, spaces_for_user


@login_required
def preset_list(request):
    spaces = list(spaces_for_user(request.user).order_by("name"))
    wanted = request.GET.get("space")
    if wanted:
        spaces = [get_space_for_user(request.user, wanted, "view")]
    visible = presets_for_user(request.user, include_hidden=True).prefetch_related("skills")
    by_space = {space.pk: [] for space in spaces}
    for preset in visible:
        if preset.space_id in by_space:
            preset.can_manage = may_manage(request.user, preset)
            by_space[preset.space_id].append(preset)
    sections = [
        {
            "space": space,
            "presets": by_space[space.pk],
            "can_use": space.can_use(request.user),
        }
        for space in spaces
    ]
    return render(request, "presets/list.html", {"sections": sections})


@login_required
def preset_detail(request, preset_id):
    preset = get_preset_for_user(request.user, preset_id, "view")
    context = {
        "preset": preset,
        "skills": preset.skills.order_by("name"),
        "can_use": preset.space.can_use(request.user),
        "can_manage": may_manage(request.user, preset),
        "run_count": Run.objects.filter(space_id=preset.space_id, preset_id=preset.pk).count(),
    }
    return render(request, "presets/detail.html", context)


def _save(request, form, verb: str):
    try:
        preset = presets.save_preset(request.user, form.instance, form.cleaned_data["skills"])
    except ValidationError as error:
        for field, errors in error.message_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
        return None
    messages.success(request, f"{verb} preset {preset.name}.")
    return redirect("preset-detail", preset.pk)


@login_required
@require_http_methods(["GET", "POST"])
def preset_create(request, space_id):
    space = get_space_for_user(request.user, space_id, "use")  # members create presets
    form = PresetForm(request.POST or None, space=space, instance=AgentPreset(space=space))
    if request.method == "POST" and form.is_valid():
        response = _save(request, form, "Created")
        if response:
            return response
    status = 400 if form.errors else 200
    return render(
        request,
        "presets/form.html",
        {"form": form, "space": space, "preset": None},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def preset_edit(request, preset_id):
    preset = get_preset_for_user(request.user, preset_id, "manage")
    saved_name = preset.name  # the form writes what was typed onto the instance
    form = PresetForm(
        request.POST or None,
        space=preset.space,
        instance=preset,
        initial={"skills": list(preset.skills.all())},
    )
    if request.method == "POST" and form.is_valid():
        response = _save(request, form, "Saved")
        if response:
            return response
    status = 400 if form.errors else 200
    return render(
        request,
        "presets/form.html",
        {"form": form, "space": preset.space, "preset": preset, "saved_name": saved_name},
        status=status,
    )


@login_required
@require_POST
def preset_duplicate(request, preset_id):
    preset = get_preset_for_user(request.user, preset_id, "use")  # a copy is a new preset
    try:
        copy = presets.duplicate_preset(request.user, preset)
    except ValidationError as error:
        messages.error(request, f"Could not duplicate {preset.name}: {' '.join(error.messages)}")
        return redirect("preset-detail", preset.pk)
    messages.success(request, f"Created {copy.name}. Change what differs and save.")
    return redirect("preset-edit", copy.pk)


@login_required
@require_POST
def preset_delete(request, preset_id):
    preset = get_preset_for_user(request.user, preset_id, "manage")
    space_id = preset.space_id
    name = presets.delete_preset(request.user, preset)
    messages.success(request, f"Deleted preset {name}. Runs started from it keep their settings.")
    return redirect(f"{reverse('preset-list')}?space={space_id}")
