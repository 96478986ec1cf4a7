"""Participants, assignments (a fixed ordered list of items), append-only judgments, and erasure records.

Judgments are never changed or deleted, with one explicit exception: a participant's withdrawal or a
researcher's erasure (``erasure.py``) deletes that participant's rows and leaves an ``Erasure`` record."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q

from webapp.experiments.models import Experiment, Trial
from webapp.stimuli.models import Stimulus


class Participant(models.Model):
    """Someone who entered a study; ``platform`` is the experiment's, or ``simulated`` for the observers
    ``simulate_crowd`` drives through the site (left out of exports unless asked for)."""

    SIMULATED = "simulated"
    PLATFORMS = [*Experiment.PLATFORMS, (SIMULATED, "simulated crowd")]

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="participants")
    platform = models.CharField(max_length=10, choices=PLATFORMS)
    platform_id = models.CharField(max_length=200)
    study_id = models.CharField(max_length=200, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    consent_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    # when ``erase_platform_ids`` replaced platform_id by a random value (and emptied study and session id)
    ids_erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        unique_together = [("experiment", "platform", "platform_id")]

    def __str__(self) -> str:
        return f"{self.platform}:{self.platform_id}"


class Assignment(models.Model):
    STATES = [("active", "active"), ("completed", "completed"), ("expired", "expired")]

    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="assignments")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    state = models.CharField(max_length=10, choices=STATES, default="active")
    mturk_assignment_id = models.CharField(max_length=200, blank=True)
    hit_id = models.CharField(max_length=200, blank=True)
    turk_submit_to = models.CharField(max_length=500, blank=True)
    device = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    completion_code = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["experiment", "state"])]

    def __str__(self) -> str:
        return f"assignment {self.pk} ({self.state})"

    # Whether an assignment takes judgments, decided here only: it is active, not past ``expires_at``, and
    # its study is live. The same rule in three forms: ``closed_reason`` (Python, for a row already read),
    # ``open_q`` (a filter for an UPDATE that must not touch a closed one) and ``OPEN_SQL`` (the judging
    # INSERT's WHERE). An active assignment past ``expires_at`` is overdue (``overdue_q``) until ``expire``
    # marks it expired.
    OPEN_SQL = "{a}.state = 'active' AND {a}.expires_at >= %s AND {e}.status = 'live'"

    @staticmethod
    def overdue_q(now: datetime) -> Q:
        """Active assignments past their expiry time at ``now``."""
        return Q(state="active", expires_at__lt=now)

    @staticmethod
    def open_q(now: datetime) -> Q:
        """Assignments that take judgments at ``now``."""
        return Q(state="active", expires_at__gte=now, experiment__status="live")

    @staticmethod
    def is_overdue(state: str, expires_at: datetime, now: datetime) -> bool:
        """Whether an assignment in ``state`` that expires at ``expires_at`` is overdue at ``now``."""
        return state == "active" and expires_at < now

    @staticmethod
    def closed_reason(state: str, expires_at: datetime, study_status: str, now: datetime) -> str | None:
        """Why an assignment (its state, expiry time and study's status) takes no judgments at ``now``;
        None when it does. An overdue one counts as expired."""
        if study_status != "live":
            return f"the study is {study_status}"
        if Assignment.is_overdue(state, expires_at, now):
            state = "expired"
        if state != "active":
            return f"this assignment is {state}"
        return None


# Which stimulus of a trial is on which side, decided here only: the item's ``left_is_a``. ``shown_ids``
# and ``shown_sides`` (Python) and ``SHOWN_ON_SQL`` (the judging INSERT) state the same rule.
SHOWN_ON_SQL = "CASE WHEN {i}.left_is_a = {left} THEN {t}.stimulus_a_id ELSE {t}.stimulus_b_id END"


def _in_order(a, b, left_is_a: bool) -> tuple:
    return (a, b) if left_is_a else (b, a)


def shown_ids(trial: Trial, left_is_a: bool) -> tuple[int, int]:
    """(left, right): the stimulus ids of ``trial`` as an item with ``left_is_a`` shows them (no query)."""
    return _in_order(trial.stimulus_a_id, trial.stimulus_b_id, left_is_a)


def shown_sides(trial: Trial, left_is_a: bool) -> tuple[Stimulus, Stimulus]:
    """(left, right): the stimuli of ``trial`` as an item with ``left_is_a`` shows them."""
    return _in_order(trial.stimulus_a, trial.stimulus_b, left_is_a)


def correct_side(trial: Trial, left_is_a: bool) -> str:
    """``left`` or ``right``: the side where an item with ``left_is_a`` shows ``trial.expected``."""
    return "left" if shown_ids(trial, left_is_a)[0] == trial.expected_id else "right"


class AssignmentItem(models.Model):
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="items")
    is_repeat = models.BooleanField(default=False)
    is_practice = models.BooleanField(default=False)
    left_is_a = models.BooleanField(default=True)

    class Meta:
        ordering = ["assignment", "position"]
        unique_together = [("assignment", "position")]

    def left_stimulus(self) -> Stimulus:
        return shown_sides(self.trial, self.left_is_a)[0]

    def right_stimulus(self) -> Stimulus:
        return shown_sides(self.trial, self.left_is_a)[1]


class Judgment(models.Model):
    """One answer. Append-only: a row is written once by ``judging.insert_new`` and never changed; the one
    exception is ``erasure.erase_participant`` (a withdrawal or a researcher's erasure), which deletes it.

    ``assignment``, ``trial``, ``chosen`` and ``left_stimulus`` are copies of what ``item`` determines
    (written by the same INSERT ... SELECT from the item's rows). All five references are database foreign
    keys (migration 0005 restored the four that 0003 dropped): research data keeps its integrity enforced by
    the database, not only by the ORM's on_delete=PROTECT.
    """

    SIDES = [("left", "left"), ("right", "right")]

    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="judgments")
    item = models.OneToOneField(AssignmentItem, on_delete=models.PROTECT, related_name="judgment")
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="judgments")
    chosen = models.ForeignKey(Stimulus, on_delete=models.PROTECT, related_name="+")
    chosen_side = models.CharField(max_length=5, choices=SIDES)
    left_stimulus = models.ForeignKey(Stimulus, on_delete=models.PROTECT, related_name="+")
    response_ms = models.IntegerField()
    client_uuid = models.UUIDField(unique=True)
    created = models.DateTimeField(auto_now_add=True)
    client_created = models.DateTimeField(null=True, blank=True)
    # what happened while the trial was shown (judging.EVENTS: counts of focus lost, fullscreen left, window
    # below the study's minimum, pixel ratio changed); NULL when the page did not report them
    events = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["id"]  # trial and assignment are indexed as foreign keys (no second index)

    def __str__(self) -> str:
        return f"judgment {self.pk}: {self.chosen_side}"


class TrialSlots(models.Model):
    """How many slots of a normal trial are held: first showings in active or completed assignments plus
    judged ones in expired assignments (what the balancing rule of ``assign.py`` ranks trials by).

    Kept up to date by ``create_assignment`` (+1 per trial taken) and ``expire`` (-1 per unjudged slot
    given back), both under the experiment's row lock, so taking an assignment costs the same whether the
    experiment has ten assignments or a million. ``recount_slots`` recomputes it from the items.
    """

    trial = models.OneToOneField(Trial, primary_key=True, on_delete=models.CASCADE, related_name="slots")
    held = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"trial {self.trial_id}: {self.held} slots held"


class Erasure(models.Model):
    """That a participant's data was erased from ``experiment``: withdrawn by the participant on the task
    page, or erased by a researcher (command, dashboard, API). It keeps nothing personal (no platform id, no
    hash of one, no participant or assignment key): only when, by whom, why and how much was erased."""

    WITHDRAWAL = "withdrawal"
    ERASURE = "erasure"
    KINDS = [(WITHDRAWAL, "withdrawn by the participant"), (ERASURE, "erased by a researcher")]
    VIA = [("participant", "the participant's task page"), ("command", "manage.py erase_participant"),
           ("dashboard", "the study page"), ("api", "the REST API")]

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="erasures")
    kind = models.CharField(max_length=10, choices=KINDS)
    via = models.CharField(max_length=11, choices=VIA)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                           related_name="+")  # the researcher; None for a withdrawal or the command line
    reason = models.TextField(blank=True)
    judgments = models.PositiveIntegerField()
    assignments = models.PositiveIntegerField()
    simulated = models.BooleanField(default=False)  # a simulate_crowd participant (exports count it apart)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} in {self.experiment_id}: {self.judgments} judgments"
