"""The automation form: fields only; automations.actions.check_automation decides validity."""

from __future__ import annotations

from django import forms

from agentloop.automations import metrics, triggers
from agentloop.automations.models import Automation
from agentloop.presets.models import AgentPreset
from agentloop.teams.access import projects_for_user
from agentloop.traces.models import SpanKind

FIELDS = [
    "name",
    "project",
    "preset",
    "prompt",
    "trigger",
    "cron_expression",
    "time_zone",
    "metric",
    "comparison",
    "threshold",
    "window_minutes",
    "every_minutes",
    "min_spans",
    "eval_name",
    "eval_label",
    "filter_kind",
    "filter_name",
    "filter_attribute",
    "filter_value",
    "cooldown_minutes",
    "max_concurrent",
    "max_consecutive_failures",
]


class AutomationForm(forms.ModelForm):
    trigger = forms.ChoiceField(choices=Automation.TRIGGER_CHOICES, widget=forms.RadioSelect)
    metric = forms.ChoiceField(choices=[("", "—")] + list(metrics.METRICS.items()), required=False)
    comparison = forms.ChoiceField(choices=list(metrics.COMPARISONS.items()), required=False)
    every_minutes = forms.TypedChoiceField(
        choices=[(m, f"every {m} min") for m in triggers.EVERY_MINUTES], coerce=int, initial=5
    )
    filter_kind = forms.ChoiceField(choices=[("", "any")] + list(SpanKind.choices), required=False)
    threshold = forms.FloatField(
        required=False,
        error_messages={"invalid": "Enter the threshold as a number, e.g. 0.2 or 1500."},
    )

    class Meta:
        model = Automation
        fields = FIELDS
        widgets = {"prompt": forms.Textarea(attrs={"rows": 5})}
        labels = {
            "cron_expression": "Cron expression",
            "time_zone": "Time zone",
            "window_minutes": "Window (minutes)",
            "min_spans": "Minimum spans before a rate can fire",
            "cooldown_minutes": "Cooldown (minutes)",
            "max_concurrent": "At most this many runs at once",
            "max_consecutive_failures": "Pause after this many failed runs in a row",
            "eval_name": "Eval name (annotation name)",
            "eval_label": "Eval label",
        }

    def __init__(self, *args, space, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.space = space
        self.fields["project"].queryset = projects_for_user(user, "use").filter(space=space)
        self.fields["preset"].queryset = AgentPreset.objects.filter(space=space).order_by("name")
        self.fields["preset"].required = True
        for name in ("metric", "comparison", "filter_kind"):
            self.fields[name].initial = getattr(self.instance, name) or self.fields[name].initial
