"""The skill form, built from the kind's fields.

Secret inputs never render a value back — not after saving and not when the
form is shown again with errors: the page says only whether a value is set
(and at most its last 4 characters). A secret left blank keeps the stored one.

A secret typed into a form that comes back with errors is kept, not lost and
not shown: it rides along sealed (Fernet, the skills' own keys, valid for
KEPT_SECONDS) in a hidden field, and is used when the field is left blank.
Environment secrets are typed as NAME + value pairs in password fields.
Every problem of a form shows at once: the field rules and the skill's own
checks (agentloop.skills.actions.check_skill) together.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django import forms

from agentloop.skills import crypto
from agentloop.skills.actions import check_skill
from agentloop.skills.kinds.custom import ENV_PREFIX, has_credentials
from agentloop.skills.models import NAME_RULE

KEPT_SECONDS = 3600
ENV_PAIRS = 3
KEPT = "kept_"


def seal(value: str) -> str:
    return crypto.fernet().encrypt(value.encode()).decode()


def unseal(token: str) -> str:
    try:
        return crypto.fernet().decrypt(token.encode(), ttl=KEPT_SECONDS).decode()
    except (InvalidToken, ValueError):
        return ""


class WriteOnlyHidden(forms.HiddenInput):
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
                # Checked in clean(): a value kept from the last try counts.
                required=False,
                strip=False,
                max_length=f.max_length,
                help_text=help_text,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            )
            self.fields[KEPT + f.name] = forms.CharField(required=False, widget=forms.HiddenInput)
        if kind.has_env_secrets:
            # Clients of the old form (and the API helpers) may still send NAME=value lines.
            self.fields["env_secrets"] = forms.CharField(
                required=False, strip=False, widget=WriteOnlyHidden
            )
            for number in range(1, ENV_PAIRS + 1):
                self.fields[f"env_name_{number}"] = forms.CharField(
                    label=f"Environment secret {number}: name",
                    required=False,
                    max_length=100,
                    help_text="e.g. SERVICE_TOKEN. A name already set is replaced.",
                )
                self.fields[f"env_value_{number}"] = forms.CharField(
                    label=f"Environment secret {number}: value",
                    required=False,
                    strip=False,
                    max_length=10_000,
                    widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                )
                self.fields[KEPT + f"env_value_{number}"] = forms.CharField(
                    required=False, widget=forms.HiddenInput
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

    def _typed_or_kept(self, name: str) -> str:
        typed = self.cleaned_data.get(name) or ""
        return typed or unseal(self.data.get(KEPT + name) or "")

    def clean(self):
        cleaned = super().clean()
        hints = self.skill.secret_hints if self.skill is not None else {}
        for f in self.kind.secret_fields:
            value = self._typed_or_kept(f.name)
            cleaned[f.name] = value
            if f.required and not value and f.name not in hints and not self.has_error(f.name):
                self.add_error(f.name, f"{f.label} is required.")
        if self.kind.has_env_secrets:
            env = dict(cleaned.get("env_secrets") or {})
            for number in range(1, ENV_PAIRS + 1):
                name = (cleaned.get(f"env_name_{number}") or "").strip()
                value = self._typed_or_kept(f"env_value_{number}")
                cleaned[f"env_value_{number}"] = value
                if name and value:
                    env[ENV_PREFIX + name] = value
                elif name or value:
                    self.add_error(
                        f"env_name_{number}" if value else f"env_value_{number}",
                        "Give both the name and the value, or neither.",
                    )
            cleaned["env_secrets"] = env
        return cleaned

    def collect_errors(self, space) -> None:
        """Add the skill's own checks to a form that failed its field rules, so a
        person sees every problem at once, not one per try."""
        data = getattr(self, "cleaned_data", {})
        config = {f.name: str(data.get(f.name, self.data.get(f.name, ""))) for f in
                  self.kind.plain_fields}  # fmt: skip
        try:
            check_skill(
                self.kind,
                str(data.get("name", self.data.get("name", ""))).strip(),
                config,
                self.secrets() if data else {},
                space,
                skill_id=self.skill.pk if self.skill is not None else None,
            )
        except forms.ValidationError as error:
            for field, messages in error.message_dict.items():
                target = field if field in self.fields else None
                if target is None or not self.has_error(target):
                    self.add_error(target, messages)

    def keep_typed_secrets(self) -> None:
        """Carry what was typed into secret fields to the next try, sealed."""
        data = getattr(self, "cleaned_data", {})
        names = [f.name for f in self.kind.secret_fields]
        names += [f"env_value_{n}" for n in range(1, ENV_PAIRS + 1) if self.kind.has_env_secrets]
        self.data = self.data.copy()
        self.kept = []
        for name in names:
            value = data.get(name) or self._raw_typed_or_kept(name)
            if value:
                self.data[KEPT + name] = seal(value)
                self.kept.append(name)

    def _raw_typed_or_kept(self, name: str) -> str:
        return self.data.get(name) or unseal(self.data.get(KEPT + name) or "")

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
