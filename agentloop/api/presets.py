"""REST: agent presets (list, show, create, update, delete, duplicate) and skills
(list, show, create, update, delete; secrets write-only).

Presets: everyone in a space sees them, members create and duplicate them and
change or delete their own, admins any (docs/roles.md; agentloop.presets.access
/ actions, with the same needs as the Presets pages). Skills: members
see them, admins change them (agentloop.skills.access / actions, as the
Agent Skills pages). A skill's secrets are never returned: only which are
set and the short hint the page shows (`secret_hints`).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from agentloop.api.common import PAGE_PARAMETERS, ApiView, page_serializer, paginated, validated
from agentloop.presets import actions as preset_actions
from agentloop.presets.access import get_preset_for_user, presets_for_user
from agentloop.presets.models import AgentPreset
from agentloop.skills import actions as skill_actions
from agentloop.skills.access import get_skill_for_user, skills_for_user
from agentloop.skills.kinds import KINDS
from agentloop.skills.models import Skill
from agentloop.teams.access import get_space_for_user

PRESET_FIELDS = [
    "name",
    "harness",
    "sandbox",
    "model",
    "system_prompt",
    "repository_url",
    "base_branch",
    "allowed_tools",
    "max_turns",
    "time_limit_seconds",
    "token_budget",
    "cost_budget_usd",
    "cpu",
    "memory_mb",
]


class PresetSerializer(serializers.ModelSerializer):
    space = serializers.SerializerMethodField()
    skills = serializers.SerializerMethodField()

    class Meta:
        model = AgentPreset
        fields = ["id", "space", *PRESET_FIELDS, "skills", "hidden", "created_at", "updated_at"]
        read_only_fields = fields

    def get_space(self, preset) -> dict:
        return {"id": preset.space_id, "name": preset.space.name}

    def get_skills(self, preset) -> list[int]:
        return sorted(s.pk for s in preset.skills.all())


class PresetWriteSerializer(serializers.ModelSerializer):
    space = serializers.IntegerField(required=False, help_text="Required to create.")
    skills = serializers.ListField(child=serializers.IntegerField(), required=False)
    allowed_tools = serializers.ListField(child=serializers.CharField(), required=False)

    class Meta:
        model = AgentPreset
        fields = ["space", *PRESET_FIELDS, "skills"]
        extra_kwargs = {"name": {"required": False}}
        validators = []  # a name unique in its space: save_preset says so, per field


PresetPage = page_serializer("PresetPage", PresetSerializer)


def _skills_of_space(space, ids) -> list[Skill]:
    skills = list(Skill.objects.filter(space=space, pk__in=ids))
    missing = sorted(set(ids) - {s.pk for s in skills})
    if missing:
        raise ValidationError({"skills": [f"No skill {missing[0]} in {space.name}."]})
    return skills


def _apply(user, preset: AgentPreset, data: dict) -> AgentPreset:
    skills = data.pop("skills", None)
    data.pop("space", None)
    for field, value in data.items():
        setattr(preset, field, value)
    if not (preset.name or "").strip():
        raise ValidationError({"name": ["This field is required."]})
    preset.name = preset.name.strip()
    if skills is None:
        skills = list(preset.skills.all()) if preset.pk else []
    else:
        skills = _skills_of_space(preset.space, skills)
    return preset_actions.save_preset(user, preset, skills)


class PresetListView(ApiView):
    @extend_schema(
        operation_id="presets_list",
        summary="Presets the caller may see",
        parameters=[
            OpenApiParameter("space", int),
            OpenApiParameter("hidden", bool, description="Include built-in (Signal's) presets."),
            *PAGE_PARAMETERS,
        ],
        responses=PresetPage,
    )
    def get(self, request):
        space = request.query_params.get("space")
        if space:
            space = get_space_for_user(request.user, space, "view")
        hidden = request.query_params.get("hidden") in ("1", "true")
        presets = presets_for_user(request.user, space or None, include_hidden=hidden)
        return paginated(request, presets.prefetch_related("skills"), PresetSerializer)

    @extend_schema(
        summary="Create a preset (members)",
        request=PresetWriteSerializer,
        responses={201: PresetSerializer},
    )
    def post(self, request):
        data = dict(validated(PresetWriteSerializer, request.data))
        if "space" not in data:
            raise ValidationError({"space": ["This field is required."]})
        space = get_space_for_user(request.user, data["space"], "use")  # members create presets
        preset = _apply(request.user, AgentPreset(space=space), data)
        return Response(PresetSerializer(preset).data, status=status.HTTP_201_CREATED)


class PresetDetailView(ApiView):
    @extend_schema(summary="One preset", responses=PresetSerializer)
    def get(self, request, preset_id):
        return Response(PresetSerializer(get_preset_for_user(request.user, preset_id, "view")).data)

    @extend_schema(
        summary="Change a preset (its creator or a space admin; only the fields given)",
        request=PresetWriteSerializer,
        responses=PresetSerializer,
    )
    def patch(self, request, preset_id):
        preset = get_preset_for_user(request.user, preset_id, "manage")
        data = dict(validated(PresetWriteSerializer, request.data, partial=True))
        preset = _apply(request.user, preset, data)
        return Response(PresetSerializer(preset).data)

    @extend_schema(summary="Delete a preset (its creator or a space admin)", responses={204: None})
    def delete(self, request, preset_id):
        preset = get_preset_for_user(request.user, preset_id, "manage")
        preset_actions.delete_preset(request.user, preset)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PresetDuplicateView(ApiView):
    @extend_schema(
        summary="Duplicate a preset (“Copy of …”)", request=None, responses={201: PresetSerializer}
    )
    def post(self, request, preset_id):
        preset = get_preset_for_user(request.user, preset_id, "use")  # a copy is a new preset
        copy = preset_actions.duplicate_preset(request.user, preset)
        return Response(PresetSerializer(copy).data, status=status.HTTP_201_CREATED)


# -- skills ---------------------------------------------------------------------------


class SkillSerializer(serializers.ModelSerializer):
    space = serializers.SerializerMethodField()
    secrets_set = serializers.SerializerMethodField()

    class Meta:
        model = Skill
        fields = [
            "id",
            "space",
            "kind",
            "name",
            "config",
            "secrets_set",
            "secret_hints",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_space(self, skill) -> dict:
        return {"id": skill.space_id, "name": skill.space.name}

    def get_secrets_set(self, skill) -> list[str]:
        return sorted(skill.secret_hints)


class SkillWriteSerializer(serializers.Serializer):
    space = serializers.IntegerField(required=False, help_text="Required to create.")
    kind = serializers.ChoiceField(choices=sorted(KINDS), required=False)
    name = serializers.CharField(required=False, allow_blank=True)
    config = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        write_only=True,
        help_text="Write-only. A field left out (or empty) keeps its stored value. "
        "Custom skills: environment secrets as `env.NAME`.",
    )
    remove_secrets = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="`env.NAME` secrets to remove."
    )


SkillPage = page_serializer("SkillPage", SkillSerializer)


class SkillListView(ApiView):
    @extend_schema(
        operation_id="skills_list",
        summary="Skills of the spaces where the caller is a member or admin",
        parameters=[OpenApiParameter("space", int), *PAGE_PARAMETERS],
        responses=SkillPage,
    )
    def get(self, request):
        space = request.query_params.get("space")
        if space:
            space = get_space_for_user(request.user, space, "use")
        skills = skills_for_user(request.user, "use", space=space or None)
        return paginated(request, skills, SkillSerializer)

    @extend_schema(
        summary="Create a skill (space admins)",
        request=SkillWriteSerializer,
        responses={201: SkillSerializer},
    )
    def post(self, request):
        data = validated(SkillWriteSerializer, request.data)
        missing = [f for f in ("space", "kind", "name") if f not in data]
        if missing:
            raise ValidationError({f: ["This field is required."] for f in missing})
        skill = skill_actions.create_skill(
            request.user,
            data["space"],
            data["kind"],
            data["name"],
            data.get("config") or {},
            data.get("secrets") or {},
        )
        return Response(SkillSerializer(skill).data, status=status.HTTP_201_CREATED)


class SkillDetailView(ApiView):
    @extend_schema(summary="One skill (never its secrets)", responses=SkillSerializer)
    def get(self, request, skill_id):
        return Response(SkillSerializer(get_skill_for_user(request.user, skill_id, "use")).data)

    @extend_schema(
        summary="Change a skill (space admins); secrets left out keep their values",
        request=SkillWriteSerializer,
        responses=SkillSerializer,
    )
    def patch(self, request, skill_id):
        skill = get_skill_for_user(request.user, skill_id, "admin")
        data = validated(SkillWriteSerializer, request.data)
        if "kind" in data and data["kind"] != skill.kind:
            raise ValidationError({"kind": ["A skill's kind cannot change."]})
        skill, _ = skill_actions.update_skill(
            request.user,
            skill.pk,
            data.get("name", skill.name),
            {**skill.config, **(data.get("config") or {})},
            data.get("secrets") or {},
            remove=data.get("remove_secrets") or (),
        )
        return Response(SkillSerializer(skill).data)

    @extend_schema(summary="Delete a skill (space admins)", responses={204: None})
    def delete(self, request, skill_id):
        skill_actions.delete_skill(
            request.user, get_skill_for_user(request.user, skill_id, "admin").pk
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
