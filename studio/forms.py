"""The new-session form: a preset (or None for an ad-hoc choice), a project, a prompt.

The form only offers what the user may use: projects through
`projects_for_user(user, "use")`, presets through the presets module's
`presets_for_user`. It builds the run configuration; `normalize_config` (called
by start_session) remains the one validator of it, and the view shows its
messages on the fields they name. Presets and skills are read through their
own access helpers (agentloop.presets.access, agentloop.skills.access).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from agentloop.presets.access import presets_for_user
from agentloop.presets.actions import config_from_preset
from agentloop.presets.forms import HarnessSelect, provider_choices
from agentloop.runs.availability import harness_choices, unavailable
from agentloop.runs.config import DEFAULT_MODEL
from agentloop.runs.providers import provider_names
from agentloop.skills.access import skills_for_user
from agentloop.teams.access import projects_for_user

NO_PRESET = ""


class ProjectChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, project) -> str:
        return f"{project.space.name} / {project.name}"


class SessionForm(forms.Form):
    preset = forms.ChoiceField(required=False, label="Preset")
    project = ProjectChoiceField(queryset=None, label="Project", empty_label="Choose a project")
    harness = forms.ChoiceField(
        widget=HarnessSelect(disable_unavailable=True),
        initial="analyst",
        help_text="A harness needs its CLI and its provider's key; an unavailable one says what "
        "is missing.",
    )
    llm_provider = forms.ChoiceField(required=False, label="Model provider")
    sandbox = forms.ChoiceField(label="Sandbox provider")
    model = forms.CharField(
        max_length=200,
        required=False,
        initial=DEFAULT_MODEL,
        help_text="Blank: the provider's default.",
    )
    skills = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), label="Task", strip=True)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["harness"].choices = harness_choices()
        self.fields["llm_provider"].choices = provider_choices()
        self.fields["project"].queryset = projects_for_user(user, "use").order_by(
            "space__name", "name"
        )
        sandboxes = sorted(provider_names())
        self.fields["sandbox"].choices = [(s, s) for s in sandboxes]
        self.fields["sandbox"].initial = settings.SANDBOX_PROVIDER_DEFAULT
        self.fields["preset"].choices = [(NO_PRESET, "None — choose below")] + [
            (str(p.pk), f"{p.space.name} / {p.name}") for p in presets_for_user(user, need="use")
        ]
        self.fields["skills"].choices = [
            (str(skill.pk), f"{skill.space.name} / {skill.name}")
            for skill in skills_for_user(user, "use").select_related("space")
        ]
        if not self.fields["skills"].choices:
            self.fields["skills"].help_text = "No skills available to you yet."

    @property
    def uses_preset(self) -> bool:
        return bool(self.cleaned_data.get("preset"))

    def clean(self):
        data = super().clean()
        if data.get("preset"):
            # A preset decides harness, sandbox, model and skills: ad-hoc fields are ignored.
            for name in ("harness", "llm_provider", "sandbox", "model", "skills"):
                self.errors.pop(name, None)
        elif data.get("harness"):
            why = unavailable(data["harness"], data.get("llm_provider") or "")
            if why:
                self.add_error("harness", why)
        return data

    def config(self) -> tuple[object | None, dict]:
        """(the preset or None, the run config); a preset's is checked against the
        project (ValidationError)."""
        data = self.cleaned_data
        if data.get("preset"):
            preset, config = config_from_preset(self.user, data["project"], int(data["preset"]))
            why = unavailable(config["harness"], config.get("llm_provider") or "")
            if why:
                raise ValidationError({"preset": why})
            return preset, config
        return None, {
            "harness": data["harness"],
            "llm_provider": data.get("llm_provider") or "",
            "sandbox": data["sandbox"],
            "model": data["model"],
            "skills": [int(pk) for pk in data.get("skills") or []],
        }
