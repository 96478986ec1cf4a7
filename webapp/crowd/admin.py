"""Admin for the crowd side. Judgments are append-only: the admin can look but not change or delete."""

from django.contrib import admin

from webapp.crowd.models import Assignment, Judgment, Participant
from webapp.experiments.access import OwnedByResearcherAdmin


@admin.register(Participant)
class ParticipantAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    owner_field = "experiment__owner"
    list_display = ("id", "experiment", "platform", "platform_id", "consent_at", "created")
    list_filter = ("experiment", "platform")
    search_fields = ("platform_id",)


@admin.register(Assignment)
class AssignmentAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    owner_field = "experiment__owner"
    list_display = ("token", "experiment", "participant", "state", "created", "expires_at", "completed_at")
    list_filter = ("experiment", "state")
    raw_id_fields = ("participant",)


@admin.register(Judgment)
class JudgmentAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    owner_field = "assignment__experiment__owner"
    list_display = ("id", "assignment", "trial", "chosen_side", "response_ms", "created")
    list_filter = ("assignment__experiment",)
    raw_id_fields = ("assignment", "item", "trial", "chosen", "left_stimulus")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
