from django.contrib import admin

from webapp.experiments.access import OwnedByResearcherAdmin
from webapp.experiments.models import Experiment, Trial


@admin.register(Experiment)
class ExperimentAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    list_display = ("slug", "title", "status", "platform", "mode", "owner", "created")
    list_filter = ("status", "platform", "mode")
    filter_horizontal = ("references",)


@admin.register(Trial)
class TrialAdmin(OwnedByResearcherAdmin, admin.ModelAdmin):
    owner_field = "experiment__owner"
    list_display = ("id", "experiment", "reference", "kind", "stimulus_a", "stimulus_b", "target_judgments")
    list_filter = ("experiment", "kind")
    raw_id_fields = ("reference", "stimulus_a", "stimulus_b", "expected")
