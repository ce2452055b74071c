"""The skill form, built from the kind's fields.

Secret inputs never render a value back — not after saving and not when the
form is shown again with errors: the page says only whether a value is set
(and at most its last 4 characters). A secret left blank keeps the stored one.
"""

from __future__ import annotations

from django import forms

from agentloop.skills.kinds.custom import ENV_PREFIX, has_credentials
from agentloop.skills.models import NAME_RULE


class WriteOnlyTextarea(forms.Textarea):
    def format_value(self, value):
        return ""


def parse_env_lines(text: str) -> dict[str, str]:
    """NAME=value lines → {"env.NAME": value}; raises ValidationError naming the line only."""
    values: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip() or not value:
            # Never echo the line: it may hold a secret.
            raise forms.ValidationError(f"Line {number} is not NAME=value.")
        values[ENV_PREFIX + name.strip()] = value
    return values


class SkillForm(forms.Form):
    name = forms.CharField(max_length=253, help_text=f"Use {NAME_RULE}.")

    def __init__(self, kind, *args, skill=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.skill = skill
        values = dict(kind.initial())
        if skill is not None:
            values.update(skill.config)
            self.fields["name"].initial = skill.name
        hints = skill.secret_hints if skill is not None else {}
        for f in kind.plain_fields:
            if f.choices:
                field = forms.ChoiceField(choices=f.choices, label=f.label, help_text=f.help)
            else:
                field = forms.CharField(
                    label=f.label, max_length=f.max_length, help_text=f.help, required=f.required
                )
            field.initial = values.get(f.name, f.default)
            self.fields[f.name] = field
        for f in kind.secret_fields:
            is_set = f.name in hints
            help_text = f.help
            if is_set:
                shown = f" (ending {hints[f.name]})" if hints[f.name] else ""
                help_text = f"A value is set{shown}. Leave blank to keep it. {f.help}".strip()
            self.fields[f.name] = forms.CharField(
                label=f.label,
                required=f.required and not is_set,
                strip=False,
                max_length=f.max_length,
                help_text=help_text,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            )
        if kind.has_env_secrets:
            self.fields["env_secrets"] = forms.CharField(
                label="Environment secrets",
                required=False,
                strip=False,
                widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
                help_text="One NAME=value per line. A name already set is replaced.",
            )
            names = skill.env_secret_names() if skill is not None else []
            if names:
                self.fields["remove_env"] = forms.MultipleChoiceField(
                    label="Remove environment secrets",
                    required=False,
                    choices=[(ENV_PREFIX + n, n) for n in names],
                    widget=forms.CheckboxSelectMultiple,
                )

    def clean_repo_url(self):
        url = self.cleaned_data.get("repo_url", "")
        if has_credentials(url):
            # Shown again with the error, the URL would show its token: blank it.
            self.data = self.data.copy()
            self.data["repo_url"] = ""
            raise forms.ValidationError(
                "Leave credentials out of the URL; put a token in an environment secret."
            )
        return url

    def clean_env_secrets(self):
        return parse_env_lines(self.cleaned_data.get("env_secrets", ""))

    def config(self) -> dict[str, str]:
        return {f.name: self.cleaned_data.get(f.name, "") for f in self.kind.plain_fields}

    def secrets(self) -> dict[str, str]:
        typed = {f.name: self.cleaned_data.get(f.name) or "" for f in self.kind.secret_fields}
        typed.update(self.cleaned_data.get("env_secrets") or {})
        return {k: v for k, v in typed.items() if v}

    def removed(self) -> list[str]:
        return list(self.cleaned_data.get("remove_env") or [])

    def add_errors(self, error) -> None:
        """Show an action's ValidationError({field: message}) on the form."""
        for field, messages in error.message_dict.items():
            self.add_error(field if field in self.fields else None, messages)
