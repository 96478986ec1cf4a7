from django.contrib import admin

from webapp.experiments.access import OwnedByResearcherAdmin
from webapp.experiments.models import Experiment, Membership, Trial


@admin.register(Experiment)
class ExperimentAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    experiment_field = ""
    list_display = ("slug", "title", "status", "platform", "mode", "owner", "created")
    list_filter = ("status", "platform", "mode")
    filter_horizontal = ("references",)


@admin.register(Trial)
class TrialAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    experiment_field = "experiment"
    list_display = ("id", "experiment", "reference", "kind", "stimulus_a", "stimulus_b", "target_judgments")
    list_filter = ("experiment", "kind")
    raw_id_fields = ("reference", "stimulus_a", "stimulus_b", "expected")


@admin.register(Membership)
class MembershipAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    """Read-only: members are managed on the study page or with ``manage.py share_experiment``, which keep
    the last-owner rule."""

    experiment_field = "experiment"
    list_display = ("experiment", "user", "role", "added_by", "created")
    list_filter = ("role",)
    search_fields = ("experiment__slug", "user__username")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
