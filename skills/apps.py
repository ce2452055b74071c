from django.apps import AppConfig


class SkillPagesConfig(AppConfig):
    """The skills settings pages; the skill domain (models, kinds, secrets) is agentloop.skills."""

    name = "skills"
    label = "skill_pages"
