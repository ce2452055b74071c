"""Side by side pages: start a group, and the comparison of its runs (/compare/)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from agentloop.comparisons import actions
from agentloop.comparisons.forms import CompareForm


@login_required
@require_http_methods(["GET", "POST"])
def group_new(request):
    form = CompareForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            group = actions.start_group(
                request.user,
                form.cleaned_data["project"],
                form.variants(),
                form.cleaned_data["prompt"],
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                target = field if field in form.fields else None
                for message in messages:
                    form.add_error(target if field != "variants" else "choices", message)
        else:
            return redirect("compare-detail", group_id=group.pk)
    return render(request, "comparisons/new.html", {"form": form})


@login_required
def group_detail(request, group_id: int):
    group = actions.get_group_for_user(request.user, group_id)
    return render(request, "comparisons/detail.html", {"group": group, "rows": actions.rows(group)})
