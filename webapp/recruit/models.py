"""What exists on a platform for a study (a HIT, a Prolific study) and every decision sent there.

Nothing here holds credentials. A ``PlatformStudy`` row is written *before* the remote create call (state
``requested``, with the idempotency token sent along) and completed after it, so a create that failed half
way is known here and a retry reuses the token instead of making a second remote object.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.experiments.models import Experiment

PLATFORMS = [("mturk", "Amazon MTurk"), ("prolific", "Prolific")]


class PlatformStudy(models.Model):
    """One remote object recruiting for ``experiment``: an MTurk HIT or a Prolific study."""

    STATES = [("requested", "requested (outcome unknown)"), ("created", "created"), ("failed", "failed")]

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="platform_studies")
    platform = models.CharField(max_length=10, choices=PLATFORMS)
    sandbox = models.BooleanField(default=True)  # MTurk's sandbox; False for Prolific and live HITs
    request_token = models.CharField(max_length=64, unique=True)  # MTurk UniqueRequestToken / our own key
    remote_id = models.CharField(max_length=200, blank=True)  # HITId / Prolific study id
    state = models.CharField(max_length=10, choices=STATES, default="requested")
    details = models.JSONField(default=dict, blank=True)  # what was asked (reward, places, url, ...)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "remote_id"], condition=~models.Q(remote_id=""),
                                    name="recruit_one_row_per_remote_object"),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.remote_id or self.request_token} ({self.state})"


class Decision(models.Model):
    """An approval, rejection, return request or bonus sent to the platform for one submission
    (MTurk assignment id or Prolific submission id). Approve/reject/return are once per submission (the
    unique constraint); bonuses are one row each, keyed by the token sent with them."""

    ACTIONS = [("approve", "approve"), ("reject", "reject"), ("return", "ask to return"), ("bonus", "bonus")]
    STATES = [("sent", "sent"), ("done", "done"), ("failed", "failed")]

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="platform_decisions")
    platform = models.CharField(max_length=10, choices=PLATFORMS)
    submission_id = models.CharField(max_length=200)  # MTurk AssignmentId / Prolific submission id
    worker_id = models.CharField(max_length=200, blank=True)  # MTurk WorkerId / Prolific participant id
    action = models.CharField(max_length=10, choices=ACTIONS)
    reason = models.TextField(blank=True)
    amount = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)  # bonus, USD/GBP
    request_token = models.CharField(max_length=64, unique=True)
    # what the platform made for it, when it has an id of its own: a Prolific bulk bonus payment, set up
    # before it is paid, so a retry pays that one instead of setting up a second
    remote_id = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=10, choices=STATES, default="sent")
    error = models.TextField(blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "submission_id", "action"],
                                    condition=~models.Q(action="bonus"),
                                    name="recruit_one_verdict_per_submission"),
        ]

    def __str__(self) -> str:
        return f"{self.platform} {self.action} {self.submission_id} ({self.state})"
