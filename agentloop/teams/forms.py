"""Forms of the spaces, members, projects and API key pages."""

from __future__ import annotations

from django import forms

from agentloop.teams.models import Project, Role


def _zones() -> list[tuple[str, str]]:
    import zoneinfo

    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=_zones,
        help_text="Every page shows times in this zone, with its abbreviation.",
    )


class SpaceForm(forms.Form):
    name = forms.CharField(max_length=200, strip=True)


class InviteForm(forms.Form):
    who = forms.CharField(label="Username or email", max_length=254, strip=True)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class UnknownProjectsForm(forms.Form):
    # A hidden "true"/"false": a checkbox would read an absent field as False.
    refuse_unknown_projects = forms.TypedChoiceField(
        choices=[("true", "refuse"), ("false", "create")], coerce=lambda v: v == "true"
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200, strip=True)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, space, **kwargs):
        super().__init__(*args, **kwargs)
        self.space = space

    def clean_name(self):
        name = self.cleaned_data["name"]
        if Project.objects.filter(space=self.space, internal=False, name=name).exists():
            raise forms.ValidationError(f"{self.space.name} already has a project named {name}.")
        return name


class RetentionForm(forms.Form):
    retention_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=36500,
        label="Keep spans for (days)",
        help_text="Empty: keep them forever.",
    )


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100, strip=True, help_text="What uses it, e.g. “production ingest”."
    )


class PersonalTokenForm(forms.Form):
    EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("", "never")]

    name = forms.CharField(
        max_length=100, strip=True, help_text="What uses it, e.g. “CI pipeline” or “laptop”."
    )
    expires_in_days = forms.ChoiceField(
        label="Expires", choices=EXPIRY_CHOICES, initial="90", required=False
    )
    spaces = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unchecked for every space you belong to.",
    )

    def __init__(self, *args, spaces, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["spaces"].queryset = spaces
