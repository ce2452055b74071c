"""The preset form: the fields people fill in; presets.actions.check_preset checks the whole."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from agentloop.presets.actions import GITHUB_KIND, check_preset
from agentloop.presets.models import AgentPreset
from agentloop.runs.availability import PROVIDER_LABELS, availability, harness_choices
from agentloop.runs.config import MAX_SYSTEM_PROMPT_LENGTH, MAX_TIME_LIMIT_SECONDS
from agentloop.runs.protocol import HARNESS_PROVIDERS, LLM_PROVIDERS
from agentloop.runs.providers import provider_names
from agentloop.skills.models import Skill


def _tools(text: str) -> list[str]:
    parts = [p.strip() for chunk in text.splitlines() for p in chunk.split(",")]
    return [p for p in parts if p]


class SkillCheckboxes(forms.CheckboxSelectMultiple):
    """Each box carries its skill's kind, so the page can offer the repository
    fields only while a GitHub skill is ticked (the server checks it anyway)."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        skill = getattr(value, "instance", None)
        if skill is not None:
            option["attrs"]["data-kind"] = skill.kind
        return option


class HarnessSelect(forms.Select):
    """Harness options labelled with their availability; `disable_unavailable`
    also makes them unselectable (the session form: such a run could not start)."""

    def __init__(self, *args, disable_unavailable=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.disable_unavailable = disable_unavailable

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        found = availability(str(value))
        if not found.available:
            option["attrs"]["data-unavailable"] = found.reason
            if self.disable_unavailable and not selected:
                option["attrs"]["disabled"] = True
        return option


def provider_choices() -> list[tuple[str, str]]:
    speakers = {
        p: [h for h, speaks in HARNESS_PROVIDERS.items() if p in speaks] for p in LLM_PROVIDERS
    }
    return [("", "the harness's own")] + [
        (p, f"{PROVIDER_LABELS[p]} ({', '.join(speakers[p])})") for p in LLM_PROVIDERS
    ]


class PresetForm(forms.ModelForm):
    harness = forms.ChoiceField(
        widget=HarnessSelect,
        help_text="A harness marked unavailable can be saved in a preset, but its sessions "
        "start only once the deployment has its CLI and key.",
    )
    llm_provider = forms.ChoiceField(
        required=False,
        label="Model provider",
        help_text="Which API the harness calls through the gateway; only OpenCode speaks more "
        "than one.",
    )
    sandbox = forms.ChoiceField(required=False, label="Sandbox provider")
    system_prompt = forms.CharField(
        required=False,
        max_length=MAX_SYSTEM_PROMPT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text=f"Up to {MAX_SYSTEM_PROMPT_LENGTH:,} characters.",
    )
    skills = forms.ModelMultipleChoiceField(
        queryset=Skill.objects.none(), required=False, widget=SkillCheckboxes
    )
    allowed_tools_text = forms.CharField(
        required=False,
        label="Allowed tools",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Comma or newline separated, e.g. Read, Edit, Bash(git:*). "
        "Empty: the harness default.",
    )
    network = forms.ChoiceField(
        required=False,
        label="Network",
        choices=[
            ("", "Runner only: agentloop, and the allowed hosts below through the egress proxy"),
            (
                "open",
                "Open (trusted workloads only): everything the host reaches, its database too",
            ),
        ],
        help_text="Open gives the agent the host's own network, including services bound to "
        "its loopback (PostgreSQL, Redis). Choose it only for code you trust.",
    )
    egress_hosts_text = forms.CharField(
        required=False,
        label="Allowed hosts",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Comma or newline separated host names the agent may reach through the "
        "egress proxy, e.g. pypi.org, *.pythonhosted.org, registry.npmjs.org:443 "
        "(without a port: 80 and 443). The repository's host is added by itself.",
    )
    time_limit_minutes = forms.IntegerField(
        min_value=1, max_value=MAX_TIME_LIMIT_SECONDS // 60, label="Time limit (minutes)"
    )
    cost_budget_usd = forms.DecimalField(
        required=False,
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        label="Cost budget (USD)",
    )

    class Meta:
        model = AgentPreset
        fields = [
            "name",
            "harness",
            "llm_provider",
            "sandbox",
            "model",
            "system_prompt",
            "skills",
            "repository_url",
            "base_branch",
            "max_turns",
            "token_budget",
            "cost_budget_usd",
            "cpu",
            "memory_mb",
        ]
        labels = {
            "repository_url": "GitHub repository",
            "token_budget": "Token budget",
            "cpu": "CPU (cores, Kubernetes)",
            "memory_mb": "Memory (MB, Kubernetes)",
        }
        help_texts = {
            "repository_url": "https://github.com/owner/repo — needs a GitHub skill. The agent's "
            "work is pushed as branch agentloop/<run>; a pull request opens only when a "
            "reviewer approves it.",
            "base_branch": "Cloned before the agent starts; default main.",
        }

    def __init__(self, *args, space, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.space = space
        self.fields["harness"].choices = harness_choices()
        self.fields["llm_provider"].choices = provider_choices()
        for field in self.fields.values():
            # A browser's maxlength cuts a paste short without a word; the
            # server refuses over-long text with a message instead.
            if isinstance(field.widget, forms.Textarea):
                field.widget.attrs.pop("maxlength", None)
        default = ("", f"default ({settings.SANDBOX_PROVIDER_DEFAULT})")
        self.fields["sandbox"].choices = [default] + [(n, n) for n in sorted(provider_names())]
        self.fields["skills"].queryset = Skill.objects.filter(space=space).order_by("name")
        self.fields["skills"].label_from_instance = lambda skill: (
            f"{skill.name} ({skill.get_kind_display()})"
        )
        self.has_github_skills = self.fields["skills"].queryset.filter(kind=GITHUB_KIND).exists()
        if self.instance.pk:
            self.initial.setdefault("allowed_tools_text", ", ".join(self.instance.allowed_tools))
            self.initial.setdefault("egress_hosts_text", "\n".join(self.instance.egress_hosts))
            self.initial.setdefault("network", self.instance.network)
        self.initial.setdefault("time_limit_minutes", self.instance.time_limit_seconds // 60)

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        taken = AgentPreset.objects.filter(space=self.instance.space, name=name)
        if taken.exclude(pk=self.instance.pk).exists():
            raise ValidationError(f"{self.instance.space.name} already has a preset named {name}.")
        return name

    def _post_clean(self):
        # ModelForm copies the cleaned fields onto the instance here; only then
        # can the whole preset be checked the way a run would check it.
        super()._post_clean()
        if self.errors:
            return
        preset = self.instance
        preset.allowed_tools = _tools(self.cleaned_data.get("allowed_tools_text") or "")
        preset.network = self.cleaned_data.get("network") or ""
        preset.egress_hosts = _tools(self.cleaned_data.get("egress_hosts_text") or "")
        preset.time_limit_seconds = self.cleaned_data["time_limit_minutes"] * 60
        try:
            check_preset(preset, self.cleaned_data.get("skills") or [])
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                target = field if field in self.fields else None
                for message in messages:
                    self.add_error(target, message)
