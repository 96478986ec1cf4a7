"""Experiments (what is asked, how many trials, which platform) and their 2AFC trials."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.stimuli.models import ReferenceImage, Stimulus


class Experiment(models.Model):
    MODES = [("triplet", "triplet: which is closer to the reference"), ("pair", "pair: which looks better")]
    PAIRS = [("all", "all pairs"), ("sampled", "sampled pairs")]
    PLATFORMS = [("open", "open link"), ("prolific", "Prolific"), ("mturk", "Amazon MTurk")]
    STATUSES = [("draft", "draft"), ("live", "live"), ("paused", "paused"), ("closed", "closed")]

    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="experiments"
    )
    question = models.CharField(max_length=500, default="Which image is closer to the reference?")
    mode = models.CharField(max_length=10, choices=MODES, default="triplet")
    pairs = models.CharField(max_length=10, choices=PAIRS, default="all")
    pairs_per_reference = models.PositiveIntegerField(null=True, blank=True)
    trials_per_assignment = models.PositiveIntegerField(default=20)
    judgments_per_trial = models.PositiveIntegerField(default=5)
    sentinel_rate = models.FloatField(default=0.1)
    repeat_rate = models.FloatField(default=0.1)
    min_response_ms = models.PositiveIntegerField(default=300)
    practice_trials = models.PositiveIntegerField(default=2)
    consent_text = models.TextField(blank=True)
    instructions_text = models.TextField(blank=True)
    platform = models.CharField(max_length=10, choices=PLATFORMS, default="open")
    completion_code = models.CharField(max_length=100, blank=True)
    completion_url = models.URLField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=STATUSES, default="draft")
    assignment_timeout_minutes = models.PositiveIntegerField(default=60)
    seed = models.BigIntegerField(default=0)
    spec = models.JSONField(default=dict, blank=True)
    references = models.ManyToManyField(ReferenceImage, blank=True, related_name="experiments")
    codec_settings = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "id"]

    def __str__(self) -> str:
        return self.slug


class Trial(models.Model):
    KINDS = [("normal", "normal"), ("sentinel", "sentinel"), ("practice", "practice")]

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="trials")
    reference = models.ForeignKey(ReferenceImage, on_delete=models.PROTECT, related_name="trials")
    stimulus_a = models.ForeignKey(Stimulus, on_delete=models.PROTECT, related_name="+")  # p0
    stimulus_b = models.ForeignKey(Stimulus, on_delete=models.PROTECT, related_name="+")  # p1
    kind = models.CharField(max_length=10, choices=KINDS, default="normal")
    expected = models.ForeignKey(Stimulus, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    target_judgments = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["experiment", "kind"])]

    def __str__(self) -> str:
        return f"trial {self.pk} ({self.kind}) of {self.experiment_id}"


class Membership(models.Model):
    """``user``'s role on ``experiment`` (``webapp.experiments.access`` decides what each role may do). The
    experiment's ``owner`` field is a role too: its user is an owner without a row here."""

    ROLES = [("viewer", "viewer"), ("editor", "editor"), ("owner", "owner")]  # lowest first

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLES)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "user__username"]
        constraints = [models.UniqueConstraint(fields=["experiment", "user"], name="one_role_per_user"),
                       models.CheckConstraint(condition=models.Q(role__in=["viewer", "editor", "owner"]),
                                              name="membership_role_known")]

    def __str__(self) -> str:
        return f"{self.user_id} is {self.role} of {self.experiment_id}"
