"""Read-mostly admin: runs change only through the state machine, never by hand."""

from django.contrib import admin

from agentloop.runs.models import Artifact, Run, RunEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RunEventInline(admin.TabularInline):
    model = RunEvent
    fields = ("seq", "source", "kind", "payload", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = (
        "code",
        "project",
        "kind",
        "trigger",
        "status",
        "creator",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "kind", "trigger")
    search_fields = ("code", "prompt", "project__name")
    list_select_related = ("project", "creator")
    inlines = [RunEventInline]
    exclude = ("secret_env_encrypted",)


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ("run", "seq", "source", "kind", "created_at")
    list_filter = ("source", "kind")
    list_select_related = ("run",)


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "run", "review_state", "created_at")
    list_filter = ("kind", "review_state")
    search_fields = ("name",)
    list_select_related = ("run",)
