"""Serializers of the researcher API (read-only)."""

from rest_framework import serializers

from webapp.lab import analysis
from webapp.lab.export import opaque_id


class ProgressSerializer(serializers.Serializer):
    trials = serializers.IntegerField()
    target_judgments = serializers.IntegerField()
    collected_judgments = serializers.IntegerField(help_text="judgments counted toward targets (capped)")
    judgments = serializers.IntegerField(help_text="all normal judgments")
    fraction = serializers.FloatField()
    participants = serializers.IntegerField()
    assignments_completed = serializers.IntegerField()
    assignments_active = serializers.IntegerField()


class ExperimentSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    title = serializers.CharField()
    question = serializers.CharField()
    mode = serializers.CharField()
    platform = serializers.CharField()
    status = serializers.CharField()
    trials_per_assignment = serializers.IntegerField()
    judgments_per_trial = serializers.IntegerField()
    created = serializers.DateTimeField()
    role = serializers.ChoiceField(source="user_role", choices=["viewer", "editor", "owner"],
                                   help_text="the caller's role on the experiment (superusers: owner)")
    progress = serializers.SerializerMethodField()

    def get_progress(self, obj) -> ProgressSerializer:
        return analysis.progress(obj)


class ExperimentDetailSerializer(ExperimentSerializer):
    sentinel_rate = serializers.FloatField()
    repeat_rate = serializers.FloatField()
    min_response_ms = serializers.IntegerField()
    practice_trials = serializers.IntegerField()
    spec = serializers.JSONField()
    codec_settings = serializers.JSONField()


class JudgmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    judgment = serializers.UUIDField(source="client_uuid")
    participant = serializers.SerializerMethodField()
    assignment = serializers.SerializerMethodField()
    trial = serializers.IntegerField(source="trial_id")
    kind = serializers.CharField(source="trial.kind")
    position = serializers.IntegerField(source="item.position")
    is_repeat = serializers.BooleanField(source="item.is_repeat")
    is_practice = serializers.BooleanField(source="item.is_practice")
    stimulus_a = serializers.UUIDField(source="trial.stimulus_a.public_id")
    stimulus_b = serializers.UUIDField(source="trial.stimulus_b.public_id")
    chosen = serializers.SerializerMethodField()
    chosen_side = serializers.CharField()
    left_stimulus = serializers.UUIDField(source="left_stimulus.public_id")
    response_ms = serializers.IntegerField()
    created = serializers.DateTimeField()
    client_created = serializers.DateTimeField(allow_null=True)

    def get_participant(self, obj) -> str:
        return opaque_id("participant", str(obj.assignment.participant_id))

    def get_assignment(self, obj) -> str:
        return opaque_id("assignment", str(obj.assignment_id))

    def get_chosen(self, obj) -> str:
        """``a`` when stimulus_a (p0) was chosen, else ``b``."""
        return "a" if obj.chosen_id == obj.trial.stimulus_a_id else "b"


class ParticipantQCSerializer(serializers.Serializer):
    participant = serializers.SerializerMethodField()
    platform = serializers.CharField()
    judgments = serializers.IntegerField()
    sentinels = serializers.IntegerField()
    sentinel_accuracy = serializers.FloatField(allow_null=True)
    repeats = serializers.IntegerField()
    repeat_consistency = serializers.FloatField(allow_null=True)
    fast_share = serializers.FloatField(allow_null=True)
    median_response_ms = serializers.FloatField(allow_null=True)
    flagged = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())

    def get_participant(self, obj) -> str:
        return opaque_id("participant", str(obj.participant_id))


class QCResponseSerializer(serializers.Serializer):
    rules = serializers.DictField(child=serializers.FloatField())
    participants = ParticipantQCSerializer(many=True)
