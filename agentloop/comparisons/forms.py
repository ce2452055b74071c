"""The side-by-side form: a project, a task, and the harnesses/presets to run it on."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from agentloop.comparisons.actions import Variant
from agentloop.presets.access import presets_for_user
from agentloop.runs.availability import harness_choices
from agentloop.runs.protocol import HARNESSES
from agentloop.teams.access import projects_for_user


class CompareForm(forms.Form):
    project = forms.ModelChoiceField(queryset=None, empty_label="Choose a project")
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), label="Task")
    choices = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Run it on",
        help_text="Each harness with its provider's default model, or a preset.",
    )
    more = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="More variants",
        help_text="One per line: harness model, e.g. codex gpt-5-mini",
    )

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["project"].queryset = projects_for_user(user, "use").order_by("name")
        self.fields["project"].label_from_instance = lambda p: f"{p.space.name} / {p.name}"
        harnesses = [(f"harness:{h}", label) for h, label in harness_choices() if h != "analyst"]
        presets = [
            (f"preset:{p.pk}", f"Preset {p.space.name} / {p.name}")
            for p in presets_for_user(user, need="use")
        ]
        self.fields["choices"].choices = harnesses + presets

    def clean_more(self):
        variants = []
        for number, line in enumerate((self.cleaned_data["more"] or "").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if parts[0] not in HARNESSES or len(parts) > 2:
                raise ValidationError(
                    f"Line {number}: write a harness and a model, e.g. codex gpt-5."
                )
            variants.append(
                Variant({"harness": parts[0], "model": parts[1] if len(parts) > 1 else ""})
            )
        return variants

    def variants(self) -> list[Variant]:
        found = []
        for choice in self.cleaned_data.get("choices") or []:
            kind, _, value = choice.partition(":")
            if kind == "preset":
                found.append(Variant({}, preset_id=int(value)))
            else:
                found.append(Variant({"harness": value}))  # start_group says if it cannot run
        return found + self.cleaned_data.get("more", [])
